"""The exported bundle: manifest figures are measured, latency by impulse, refusal of tampering."""

import json
import shutil

import numpy as np
import pytest

from runtime.backends.litert import LiteRTBackend
from runtime.bundle import BundleError, load_bundle
from runtime.harness.measure import impulse_latency
from tests.conftest import run_toolchain
from tests.helpers import DEFAULT_DEVICE_SNR_DB, INT8_SNR_FLOOR_DB


def test_manifest_has_the_design_fields(default_bundle):
    d = json.loads((default_bundle / "manifest.json").read_text())
    for key in ("format_version", "model", "target", "sample_rate", "block", "algorithmic_latency_samples",
                "audiogram", "graphs", "files", "metrics", "toolchain_version"):
        assert key in d, key
    assert d["target"] == "rpi4" and d["block"] == 16 and d["sample_rate"] == 16000
    assert set(d["files"]) >= {"model_16x8.tflite", "model_int8.tflite", "model_fp32.tflite", "model.onnx",
                               "kernel/model.hxb", "kernel/model_blob.h"}
    assert d["default_graph"] == "int16x8"
    for key in ("int8_vs_fp32_snr_db", "parameters", "int8_bytes", "macs_per_second", "export_seconds"):
        assert key in d["metrics"], key
    mt = d["metrics"]
    # The device graph (16x8) against fp32 end to end on held-out speech; the int8 graph, which
    # boards that need full integer get, is reported beside it and only kept clear of a broken graph.
    assert mt["device_graph"] == "int16x8" and mt["int16x8_vs_fp32_snr_db"] >= DEFAULT_DEVICE_SNR_DB
    assert mt["int8_vs_fp32_snr_db"] >= INT8_SNR_FLOOR_DB
    # the breakdown is consistent: the end-to-end error cannot be smaller than either part's
    # (the input grid's share is the fp32 model's own response to it: this compensator attenuates
    # it, 27.6 dB at the input and 37 dB at the output)
    assert mt["int8_vs_fp32_snr_db"] <= min(mt["int8_graph_vs_fp32_same_input_snr_db"],
                                            mt["fp32_on_int8_input_snr_db"]) + 3.0
    # ... nor smaller than the int8 output grid's own rounding of the exact fp32 output
    assert mt["int8_vs_fp32_snr_db"] <= mt["int8_output_quantization_snr_db"] + 0.5
    assert d["audiogram"]["thresholds_db_hl"] == [20, 25, 35, 45, 50, 55, 60, 65]


@pytest.mark.parametrize("graph", ["int16x8", "int8", "fp32"])
def test_latency_by_impulse_equals_manifest(default_bundle, graph):
    b = load_bundle(default_bundle)
    measured = impulse_latency(LiteRTBackend(b.graph_file(graph)))
    assert measured == b.manifest.algorithmic_latency_samples == 16


def test_latency_probe_sees_a_delay():
    """The impulse probe is not blind: a backend that delays by 5 samples measures block + 5."""

    class Delayed:
        block = 16

        def reset(self):
            self.buf = np.zeros(5, np.float32)

        def process(self, x):
            full = np.concatenate([self.buf, x])
            self.buf = full[-5:]
            return full[:16]

    assert impulse_latency(Delayed()) == 21


def _copy(src, tmp_path):
    dst = tmp_path / "b"
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("name", ["model_16x8.tflite", "model_int8.tflite", "model_fp32.tflite", "model.onnx", "manifest.json"])
def test_a_changed_byte_is_refused(default_bundle, tmp_path, name):
    b = _copy(default_bundle, tmp_path)
    data = bytearray((b / name).read_bytes())
    i = len(data) // 2
    data[i] = (data[i] + 1) % 256 if name != "manifest.json" else data[i]
    if name == "manifest.json":  # change a number, keep valid JSON
        d = json.loads(data)
        d["output_limit"] = 0.99
        data = bytearray(json.dumps(d).encode())
    (b / name).write_bytes(bytes(data))
    with pytest.raises(BundleError) as e:
        load_bundle(b)
    msg = str(e.value)
    assert name in msg and "\n" not in msg
    r = run_toolchain("inspect", str(b))
    assert r.returncode == 2 and name in r.stderr and r.stderr.count("\n") == 1


def test_a_missing_file_is_refused(default_bundle, tmp_path):
    b = _copy(default_bundle, tmp_path)
    (b / "model.onnx").unlink()
    r = run_toolchain("inspect", str(b))
    assert r.returncode == 2 and "model.onnx" in r.stderr and "missing" in r.stderr


def test_a_wrong_format_version_is_refused(default_bundle, tmp_path):
    b = _copy(default_bundle, tmp_path)
    d = json.loads((b / "manifest.json").read_text())
    d["format_version"] = 0
    (b / "manifest.json").write_text(json.dumps(d))
    r = run_toolchain("inspect", str(b))
    assert r.returncode == 2 and "manifest.json" in r.stderr and "format_version" in r.stderr


def test_inspect_prints_the_manifest(default_bundle):
    r = run_toolchain("inspect", str(default_bundle))
    assert r.returncode == 0, r.stderr
    for word in ("rpi4", "state_in_00", "int8_vs_fp32_snr_db", "model_int8.tflite", "moderate-sloping",
                 "default graph", "int16x8", "model_16x8.tflite", "device_equivalent_input_noise_db_spl"):
        assert word in r.stdout


def test_16x8_bundle_lists_its_graph_and_figures(leaky_bundle):
    d = json.loads((leaky_bundle / "manifest.json").read_text())
    assert d["graphs"]["int16x8"]["file"] == "model_16x8.tflite" and "model_16x8.tflite" in d["files"]
    assert d["graphs"]["int8"]["file"] == "model_int8.tflite"       # the int8 graph still ships beside it
    mt = d["metrics"]
    assert "LEAKY_RELU" in mt["int8_ops"] and "LEAKY_RELU" in mt["int16x8_ops"]
    assert d["extra"]["drift_16x8"]["quant_dtype"] == "int16"
    assert mt["drift_16x8_worst_layer_snr_db"] > mt["drift_worst_layer_snr_db"]
    assert "kernel/model.hxb" in d["files"]                         # LEAKY_RELU runs in the C kernel too


def test_16x8_of_a_prelu_model_is_refused_in_one_line(tmp_path, capsys):
    from tests.helpers import randomised_seanet
    from toolchain.cli import main
    from toolchain.models.compensators.seanet import save_seanet

    save_seanet(randomised_seanet(0), str(tmp_path / "prelu.pt"))   # SEANetConfig's activation: prelu
    assert main(["export", "--target", "rpi", "--checkpoint", str(tmp_path / "prelu.pt"), "--out", str(tmp_path / "b"),
                 "--quiet"]) == 2   # rpi's device graph is 16x8
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "PReLU" in err and "16x8" in err and "leaky_relu" in err
    assert not (tmp_path / "b").exists()


def test_negative_qat_steps_are_refused_in_one_line(tmp_path, capsys):
    from toolchain.cli import main

    with pytest.raises(SystemExit) as e:
        main(["export", "--target", "rpi", "--qat-steps", "-3", "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "-3" in err


def test_qat_export_ships_the_best_int8_graph(leaky_bundle):
    mt = load_bundle(leaky_bundle).manifest.metrics
    snrs = {"ptq": mt["int8_vs_fp32_snr_db_ptq"], "qat": mt["int8_vs_fp32_snr_db_qat"],
            "qat-recalibrated": mt["int8_vs_fp32_snr_db_qat_recalibrated"]}
    assert mt["qat_steps"] == 2 and mt["qat_seconds"] > 0
    assert mt["int8_graph"] == max(snrs, key=snrs.get)
    assert mt["int8_vs_fp32_snr_db"] == snrs[mt["int8_graph"]]


def test_a_quiet_export_prints_nothing_on_stderr(tmp_path):
    """TensorFlow's and LiteRT's own lines (the converter's calibrator, its deprecated interpreter,
    XNNPACK) stay off the terminal, also on the path that converts the per-process cached SavedModel."""
    r = run_toolchain("export", "--target", "cortex-m55", "--out", str(tmp_path / "b"), "--quiet")
    assert r.returncode == 0 and r.stderr == "", r.stderr[-2000:]
