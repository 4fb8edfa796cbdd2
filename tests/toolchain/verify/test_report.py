"""``toolchain verify``: one-line errors, and the JSON + HTML report with and without weights."""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from toolchain.verify import report as rp
from toolchain.verify.midbrain.icnet import ICNet, ICNetConfig
from toolchain.verify.midbrain.icnet_keras_import import export_legacy_h5, write_config_yaml
from toolchain.verify.report import VerifyError, VerifyOptions, add_verify_arguments, run_verify, verify_main


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_verify_arguments(p)
    return p.parse_args(list(argv))


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert msg and "\n" not in msg
    return msg


@pytest.fixture
def fake_bundle(tmp_path: Path) -> SimpleNamespace:
    """A bundle object as runtime.bundle.load_bundle returns it (the engine runs are injected)."""
    manifest = SimpleNamespace(
        model="seanet-test", target="rpi4", sample_rate=16000, block=16, algorithmic_latency_samples=16,
        algorithmic_latency_ms=1.0,
        audiogram={"name": "moderate-sloping", "thresholds_db_hl": [20, 25, 35, 45, 50, 55, 60, 65],
                   "frequencies_hz": [250, 500, 1000, 2000, 3000, 4000, 6000, 8000]},
        metrics={"int8_vs_fp32_snr_db": 27.5, "algorithmic_latency_measured_samples": 16},
        extra={"board": {"latency_budget_ms": 5.0}})
    path = tmp_path / "bundle-rpi4"
    path.mkdir()
    return SimpleNamespace(path=path, manifest=manifest)


def _speech(n: int = 2, seconds: float = 0.3) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * 16000)) / 16000
    env = np.clip(np.sin(2 * np.pi * 4 * t), 0, None)
    return [(rng.standard_normal(t.size) * env * 0.05).astype(np.float32) for _ in range(n)]


def _int8(x: np.ndarray) -> np.ndarray:
    """A 'compensator' with gain, 3 samples of delay and a little quantisation noise."""
    y = np.zeros_like(x)
    y[3:] = 1.5 * x[:-3]
    return (np.round(y * 256) / 256).astype(np.float32)


def _fp32(x: np.ndarray) -> np.ndarray:
    y = np.zeros_like(x)
    y[3:] = 1.5 * x[:-3]
    return y


# ------------------------------------------------------------------------------ errors
def test_missing_weights_is_a_one_line_error(tmp_path):
    with pytest.raises(VerifyError) as e:
        verify_main(_args(str(tmp_path / "bundle"), "--icnet-weights", str(tmp_path / "absent.hdf5")))
    assert "absent.hdf5" in _one_line(e) and "not found" in str(e.value)


def test_malformed_weights_is_a_one_line_error(tmp_path):
    bad = tmp_path / "model_weights.hdf5"
    bad.write_bytes(b"\x89HDF\r\n garbage")
    with pytest.raises(VerifyError) as e:
        verify_main(_args(str(tmp_path / "bundle"), "--icnet-weights", str(bad)))
    assert str(bad) in _one_line(e)


def test_config_yaml_that_does_not_match_is_a_one_line_error(tmp_path):
    weights = tmp_path / "model_weights.hdf5"
    export_legacy_h5(ICNet(ICNetConfig(n_branches=1)), weights)
    (tmp_path / "config.yaml").write_text("fs_audio: 24414.0625\nds_factor: 32\nbottleneck_channels: 128\nn_decoders: 1\n")
    with pytest.raises(VerifyError) as e:
        verify_main(_args(str(tmp_path / "bundle"), "--icnet-weights", str(weights)))
    assert "config.yaml" in _one_line(e) and "bottleneck" in str(e.value)


def test_bad_bundle_and_bad_options_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(VerifyError) as e:
        verify_main(_args(str(tmp_path / "no-such-bundle")))
    assert "no-such-bundle" in _one_line(e)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("{ not json")
    with pytest.raises(VerifyError) as e:
        verify_main(_args(str(broken)))
    assert "manifest.json" in _one_line(e)
    with pytest.raises(VerifyError, match="--clips"):
        VerifyOptions(bundle=tmp_path, clips=0)
    with pytest.raises(VerifyError, match="need --psi-icnet"):
        verify_main(_args(str(broken), "--psi", "1,2,3"))
    # The stand-alone entry point prints one line and exits 2, as the CLI does.
    assert rp.main([str(tmp_path / "no-such-bundle"), "--icnet-weights", str(tmp_path / "x.h5")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("toolchain verify: error:")


def _fake_clarity() -> tuple:
    """pyclarity's ``haspi_v2`` and ``NALR`` stand-ins (NAL-R = gain 2 and a delay it removes) + call counts."""
    calls: dict[str, int] = {"haspi": 0, "nalr": 0}

    def haspi_v2(x, fx, y, fy, hl, level1):  # the older pyclarity signature
        calls["haspi"] += 1
        assert len(hl) == 6 and fx == fy == 16000 and level1 == pytest.approx(103.0103, abs=1e-3)
        return float(np.clip(np.corrcoef(x, y)[0, 1], 0, 1)), None

    class NALR:
        def __init__(self, nfir, sample_rate):
            self.nfir = nfir

        def build(self, hl, cfs):
            calls["nalr"] += 1
            h = np.zeros(self.nfir + 1)
            h[self.nfir // 2] = 2.0
            return h, h

        def apply(self, h, x):
            return np.convolve(x, h)

    return haspi_v2, NALR, calls


# ------------------------------------------------------------------------------ reports
def _read(path: Path) -> dict:
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    return json.loads(text)


def test_report_without_weights_says_the_neural_check_did_not_run(tmp_path, fake_bundle, monkeypatch):
    monkeypatch.setattr(rp, "clarity_tools", lambda: (None, None, rp.NOT_INSTALLED))
    opts = VerifyOptions(bundle=fake_bundle.path, device="cpu", timing_seconds=0.3, clips=2)
    rep = run_verify(opts, progress=lambda s: None, bundle=fake_bundle, speech=_speech(), compensate=_int8,
                     fp32=_fp32, latency_probe=lambda: 16)
    json_path = tmp_path / "bundle-rpi4.verify.json"
    html_path = tmp_path / "bundle-rpi4.verify.html"
    assert rep["outputs"] == {"json": str(json_path), "html": str(html_path)}
    data = _read(json_path)
    assert data["format"] == rp.REPORT_FORMAT and data["device"]["used"] == "cpu"
    s = data["int8_vs_fp32"]
    assert s["manifest_snr_db"] == 27.5 and 20 < s["measured_snr_db"] < 80 and len(s["per_clip_snr_db"]) == 2
    lat = data["latency"]
    assert lat["impulse_samples"] == 16 and lat["impulse_matches_manifest"] and lat["within_budget"]
    assert data["haspi"]["status"] == "not available" and data["haspi"]["reason"] == "pyclarity not installed"
    assert data["nal_r"]["status"] == "not available"
    # Issue 17: every section judged against its baseline; a section without numbers is never "ok".
    assert s["verdict"]["level"] == ("ok" if s["measured_snr_db"] >= 27.5 - 3 else "warn")
    assert lat["verdict"] == {"level": "ok", "text": "1.00 ms algorithmic against the board's budget of 5 ms (within)"}
    for key in ("haspi", "nal_r", "midbrain", "self_noise"):
        assert data[key]["verdict"]["level"] == "none", (key, data[key]["verdict"])
    assert "pyclarity not installed" in data["haspi"]["verdict"]["text"]
    assert data["verdict"]["level"] == "ok" and sorted(data["verdict"]["judged"]) == ["int8_vs_fp32", "latency"]
    assert sorted(data["verdict"]["not_judged"]) == ["haspi", "midbrain", "nal_r", "self_noise"]
    mb = data["midbrain"]
    assert mb["status"] == "not run" and "no ICNet weights" in mb["reason"] and "no ψ-ICNet checkpoint" in mb["reason"]
    # No fidelity numbers without weights: the impaired comparison says what is missing, with no number.
    assert mb["comparisons"] == {"impaired": {"status": "not run", "reason": rp._NO_PSI_CHECKPOINT}}
    assert "no ψ-ICNet checkpoint (--psi-icnet FILE)" in mb["comparisons"]["impaired"]["reason"]
    assert mb["timing"]["seconds_per_second"] > 0 and "random" in mb["timing"]["weights"]
    assert "architecture" not in mb  # no ICNet layer table for random weights
    assert mb["alignment_lag_samples"] == [3, 3]
    page = html_path.read_text()
    assert "not judged" in page and "pyclarity not installed" in page and "ICNet architecture" not in page
    assert "seed 00" not in page and "Eq. " not in page
    assert len(re.findall(r"data:image/png;base64,", page)) >= 2
    lines = rp.summary_lines(rep)
    assert any(line.startswith("midbrain: not run") for line in lines)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temp files


def _random_icnet_weights(tmp_path):
    """A randomly initialised one-branch ICNet saved in the released layout (config.yaml + legacy .h5)."""
    wdir = tmp_path / "DNN"
    wdir.mkdir()
    net = ICNet(ICNetConfig(n_branches=1))
    export_legacy_h5(net, wdir / "model_weights.hdf5")
    write_config_yaml(wdir / "config.yaml", net.config)
    return wdir


def test_report_with_weights_and_pyclarity(tmp_path, fake_bundle, monkeypatch):
    """Given weights the midbrain comparison runs; with pyclarity present HASPI and NAL-R are computed."""
    torch.manual_seed(0)
    wdir = _random_icnet_weights(tmp_path)

    haspi_v2, NALR, calls = _fake_clarity()
    monkeypatch.setattr(rp, "clarity_tools", lambda: (haspi_v2, NALR, None))
    opts = VerifyOptions(bundle=fake_bundle.path, icnet_weights=wdir / "model_weights.hdf5", device="cpu", clips=1,
                         json_path=tmp_path / "r.json", html_path=tmp_path / "r.html")
    rep = run_verify(opts, progress=lambda s: None, bundle=fake_bundle, speech=_speech(1, 0.25), compensate=_int8,
                     fp32=_fp32, latency_probe=lambda: 16)
    data = _read(tmp_path / "r.json")
    assert data["haspi"]["status"] == "ok"
    assert set(data["haspi"]["scores"]) == {"unprocessed", "compensated", "nal-r", "fp32"}
    assert data["haspi"]["scores"]["nal-r"]["mean"] == pytest.approx(1.0)  # a pure delay, removed
    assert data["nal_r"]["status"] == "ok" and calls["nalr"] == 1
    mb = data["midbrain"]
    assert mb["status"] == "partial" and "ψ-ICNet" in mb["reason"]
    assert mb["comparisons"]["impaired"]["status"] == "not run"
    nh = mb["comparisons"]["normal_hearing_icnet"]
    assert nh["status"] == "ok" and nh["impaired_model"] is False
    assert set(nh["conditions"]) == {"normal hearing (ceiling)", "unprocessed", "compensated", "nal-r"}
    assert nh["conditions"]["unprocessed"] == nh["conditions"]["normal hearing (ceiling)"]
    assert mb["icnet_import"]["layout"] == "keras-legacy-h5"
    assert mb["timing"]["seconds_per_second"] > 0 and mb["timing"]["weights"] == "given"
    assert "examples" not in json.dumps(data)
    assert "normal_hearing_icnet" in (tmp_path / "r.html").read_text()
    assert rep["outputs"]["json"] == str(tmp_path / "r.json")


@pytest.mark.parametrize("case", ["device", "fifo", "same"])
def test_report_paths_that_are_not_ours_are_refused_before_any_work(tmp_path, fake_bundle, case):
    """Issue 17: a device node (made here with mknod), a FIFO, or --json = --html: one line before the run."""
    import stat

    from tests.conftest import make_char_device

    if case == "device":
        target, test = make_char_device(tmp_path / "null"), stat.S_ISCHR
    elif case == "fifo":
        os.mkfifo(tmp_path / "fifo")
        target, test = tmp_path / "fifo", stat.S_ISFIFO
    else:
        target, test = tmp_path / "same.out", None
    html_path = target if case == "same" else tmp_path / "r.html"
    opts = VerifyOptions(bundle=fake_bundle.path, device="cpu", json_path=target, html_path=html_path)
    ran = []
    with pytest.raises(VerifyError) as e:
        run_verify(opts, progress=ran.append, bundle=fake_bundle, speech=_speech(), compensate=_int8, fp32=_fp32,
                   latency_probe=lambda: 16)
    msg = _one_line(e)
    assert msg.startswith(str(target)) and ran == []
    assert {"device": "is a character device", "fifo": "is a FIFO", "same": "--json and --html name the same file"}[case] in msg
    if test is not None:
        assert test(os.lstat(target).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, "bundle-rpi4"] if case != "same" else ["bundle-rpi4"])


def test_report_is_red_where_the_device_does_harm(tmp_path, fake_bundle, monkeypatch):
    """Issue 17: a device that scores below unprocessed speech (and below its own float graph and
    NAL-R) is judged "HARM" in red, never "ok" in green; the overall verdict is the worst section."""
    haspi_v2, NALR, _ = _fake_clarity()
    monkeypatch.setattr(rp, "clarity_tools", lambda: (haspi_v2, NALR, None))
    rng = np.random.default_rng(1)

    def noisy_device(x: np.ndarray) -> np.ndarray:  # the float graph plus noise at the signal's own level
        y = _fp32(x)
        return (y + rng.standard_normal(y.size) * float(np.std(y))).astype(np.float32)

    opts = VerifyOptions(bundle=fake_bundle.path, device="cpu", clips=2, timing_seconds=0.2,
                         json_path=tmp_path / "r.json", html_path=tmp_path / "r.html")
    rep = run_verify(opts, progress=lambda s: None, bundle=fake_bundle, speech=_speech(2, 0.3), compensate=noisy_device,
                     fp32=_fp32, latency_probe=lambda: 16)
    data = _read(tmp_path / "r.json")
    scores = {k: v["mean"] for k, v in data["haspi"]["scores"].items()}
    assert scores["compensated"] < scores["unprocessed"] - 0.1
    assert data["haspi"]["verdict"]["level"] == "harm" and "LESS with the device" in data["haspi"]["verdict"]["text"]
    assert data["int8_vs_fp32"]["verdict"]["level"] == "harm"  # worse than its own float graph
    assert data["nal_r"]["verdict"]["level"] == "warn" and "less than the classic fitting" in data["nal_r"]["verdict"]["text"]
    assert data["verdict"]["level"] == "harm"
    page = (tmp_path / "r.html").read_text()
    assert '<p class="status harm"><b>HARM</b>' in page and "Kates &amp; Arehart 2021" in page
    lines = rp.summary_lines(rep)
    assert any(line.startswith("  verdict (device vs unprocessed): HARM") for line in lines), lines
    assert lines[-2].startswith("overall: HARM")


def test_psi_icnet_checkpoint_round_trip_and_errors(tmp_path):
    from toolchain.verify.midbrain.icnet import PsiICNet, PsiICNetConfig, load_psi_icnet, save_psi_icnet

    torch.manual_seed(0)
    m = PsiICNet(PsiICNetConfig(n_psi=3, fusion_channels=(70, 66, 64, 64)))
    path = tmp_path / "psi.pt"
    save_psi_icnet(m, path, audiogram_to_psi={"weight": np.ones((3, 8)), "bias": np.zeros(3)})
    got, mapping = load_psi_icnet(path)
    assert got.config == m.config and np.asarray(mapping["weight"]).shape == (3, 8)
    for k, v in m.state_dict().items():
        assert torch.equal(got.state_dict()[k], v), k
    with pytest.raises(VerifyError) as e:
        verify_main(_args(str(tmp_path / "bundle"), "--psi-icnet", str(path), "--psi", "1,2"))
    assert "3 ψ parameters" in _one_line(e)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(VerifyError) as e:
        verify_main(_args(str(tmp_path / "bundle"), "--psi-icnet", str(junk)))
    assert "not a ψ-ICNet checkpoint" in _one_line(e)


def test_midbrain_section_end_to_end_with_psi_icnet_and_icnet(tmp_path, fake_bundle, monkeypatch):
    """A random ψ-ICNet checkpoint with explicit ψ (``--psi``) and a random ICNet: both comparisons run
    through the real models, each condition has finite FEVE / KL_W / correlation and a gap closed."""
    from toolchain.verify.midbrain.icnet import PsiICNet, PsiICNetConfig, save_psi_icnet

    torch.manual_seed(0)
    wdir = _random_icnet_weights(tmp_path)
    psi_net = PsiICNet(PsiICNetConfig(n_psi=3, fusion_channels=(70, 66, 64, 64)))
    with torch.no_grad():  # at its random initialisation ψ barely moves the output; make it matter
        for conv in psi_net.expand:
            conv.conv.conv.weight.mul_(20.0)
    psi_ckpt = tmp_path / "psi.pt"
    save_psi_icnet(psi_net, psi_ckpt)  # no audiogram → ψ map: ψ comes from --psi / --psi-normal
    haspi_v2, NALR, _ = _fake_clarity()
    monkeypatch.setattr(rp, "clarity_tools", lambda: (haspi_v2, NALR, None))
    argv = [str(fake_bundle.path), "--icnet-weights", str(wdir / "model_weights.hdf5"), "--psi-icnet", str(psi_ckpt),
            "--psi", "4,-3,6", "--psi-normal=-4,-4,-4", "--device", "cpu", "--clips", "1",
            "--json", str(tmp_path / "r.json"), "--html", str(tmp_path / "r.html")]
    opts = rp.options_from_args(_args(*argv))
    assert opts.psi == (4.0, -3.0, 6.0) and opts.psi_normal == (-4.0, -4.0, -4.0)
    run_verify(opts, progress=lambda s: None, bundle=fake_bundle, speech=_speech(1, 0.5), compensate=_int8,
               fp32=_fp32, latency_probe=lambda: 16)
    mb = _read(tmp_path / "r.json")["midbrain"]
    assert mb["status"] == "ok" and "reason" not in mb
    imp = mb["comparisons"]["impaired"]
    assert imp["status"] == "ok" and imp["impaired_model"] is True
    assert imp["psi"]["impaired"] == [4.0, -3.0, 6.0] and imp["psi"]["normal"] == [-4.0, -4.0, -4.0]
    assert imp["psi"]["source"] == {"impaired": "--psi", "normal": "--psi-normal"}
    nh = mb["comparisons"]["normal_hearing_icnet"]
    assert nh["status"] == "ok" and nh["impaired_model"] is False
    for cmp in (imp, nh):
        conds = cmp["conditions"]
        assert set(conds) == {"normal hearing (ceiling)", "unprocessed", "compensated", "nal-r"}
        for name, row in conds.items():
            for k in ("feve", "kl_w", "correlation_median"):
                assert isinstance(row[k], float) and np.isfinite(row[k]), (name, k, row[k])
    # The impaired model differs from the reference, so the gap is non-zero and its closed fraction exists.
    conds = imp["conditions"]
    ceiling, unprocessed = conds["normal hearing (ceiling)"], conds["unprocessed"]
    assert abs(ceiling["feve"] - unprocessed["feve"]) > 1e-2 and abs(ceiling["kl_w"] - unprocessed["kl_w"]) > 1e-3
    for name in ("compensated", "nal-r"):
        for k in ("feve_gap_closed", "kl_w_gap_closed"):
            assert isinstance(conds[name][k], float) and np.isfinite(conds[name][k]), (name, k)
    assert mb["timing"]["seconds_per_second"] > 0 and mb["timing"]["weights"] == "given"
    page = (tmp_path / "r.html").read_text()
    assert "from --psi" in page and "gap closed" in page


def test_impaired_comparison_without_psi_says_what_is_missing(tmp_path, fake_bundle, monkeypatch):
    """A ψ-ICNet checkpoint without an audiogram → ψ map and no --psi: "not run", naming what is missing."""
    from toolchain.verify.midbrain.icnet import PsiICNet, PsiICNetConfig, save_psi_icnet

    torch.manual_seed(0)
    psi_ckpt = tmp_path / "psi.pt"
    save_psi_icnet(PsiICNet(PsiICNetConfig(n_psi=3, fusion_channels=(70, 66, 64, 64))), psi_ckpt)
    monkeypatch.setattr(rp, "clarity_tools", lambda: (None, None, rp.NOT_INSTALLED))
    common = dict(bundle=fake_bundle.path, psi_icnet=psi_ckpt, device="cpu", clips=1,
                  json_path=tmp_path / "r.json", html_path=tmp_path / "r.html")
    kw = dict(progress=lambda s: None, bundle=fake_bundle, speech=_speech(1, 0.25), compensate=_int8, fp32=_fp32,
              latency_probe=lambda: 16)
    rep = run_verify(VerifyOptions(**common), **kw)
    mb = _read(tmp_path / "r.json")["midbrain"]
    assert mb["status"] == "not run" and mb["reason"] == "impaired comparison not run (no ψ for this audiogram)"
    imp = mb["comparisons"]["impaired"]
    assert set(imp) == {"status", "reason"} and imp["status"] == "not run"
    assert imp["reason"].startswith("no ψ for this audiogram: no --psi was given and the ψ-ICNet checkpoint has no "
                                    "audiogram → ψ map")
    assert "Pellatt et al. 2025, learns ψ per animal" in imp["reason"] and "--psi-normal" in imp["reason"]
    assert any("impaired: not run (no ψ for this audiogram" in line for line in rp.summary_lines(rep))
    # --psi alone: the listener's ψ is there, the normal-hearing reference's is not.
    run_verify(VerifyOptions(**common, psi=(1.0, 2.0, 3.0)), **kw)
    imp = _read(tmp_path / "r.json")["midbrain"]["comparisons"]["impaired"]
    assert imp["status"] == "not run" and imp["reason"].startswith("no normal-hearing ψ for the reference: no "
                                                                   "--psi-normal was given")



def test_psi_from_the_users_map_is_labelled_as_such():
    """With the audiogram → ψ map stored in a user's checkpoint, ψ comes from it (at the audiogram and at
    0 dB HL) and the report says where it came from; a map of the wrong shape is named as the reason."""
    from toolchain.verify.midbrain.icnet import PsiICNet, PsiICNetConfig

    net = PsiICNet(PsiICNetConfig(n_psi=3, fusion_channels=(70, 66, 64, 64)))
    w = np.zeros((3, 8))
    w[0] = 1.0
    ag = {"thresholds_db_hl": [20, 25, 35, 45, 50, 55, 60, 65]}
    models = rp._Models(psi=net, psi_map={"weight": w, "bias": [0.0, 1.0, 0.0]})
    hi, nh, src, why = rp._resolve_psi(VerifyOptions(bundle=Path(".")), models, ag)
    assert why is None and np.allclose(hi, [3.55, 1.0, 0.0]) and np.allclose(nh, [0.0, 1.0, 0.0])
    assert "user-supplied" in src["impaired"] and "not from audiograms" in src["normal"] and "0 dB HL" in src["normal"]
    hi, nh, src, why = rp._resolve_psi(VerifyOptions(bundle=Path("."), psi=(1.0, 2.0, 3.0)), models, ag)
    assert src["impaired"] == "--psi" and np.allclose(hi, [1, 2, 3]) and np.allclose(nh, [0.0, 1.0, 0.0])
    bad = rp._Models(psi=net, psi_map={"weight": np.zeros((6, 8))})
    hi, nh, _, why = rp._resolve_psi(VerifyOptions(bundle=Path(".")), bad, ag)
    assert hi is None and nh is None and why.startswith("no ψ for this audiogram: the checkpoint's audiogram → ψ map "
                                                        "is unusable")


@pytest.mark.slow
def test_cli_verify_on_the_default_bundle_with_real_pyclarity(default_bundle, tmp_path):
    """``toolchain verify`` as a user runs it on the shipped default bundle (real pyclarity, no weights):
    exit 0, HASPI computed, the midbrain section and its impaired comparison marked "not run"."""
    from tests.conftest import run_toolchain

    js, page = tmp_path / "v.json", tmp_path / "v.html"
    r = run_toolchain("verify", str(default_bundle), "--clips", "1", "--seconds", "0.5", "--device", "cpu",
                      "--json", str(js), "--html", str(page), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    data = _read(js)
    h = data["haspi"]
    assert h["status"] == "ok" and set(h["scores"]) == {"unprocessed", "compensated", "nal-r", "fp32"}
    for name, s in h["scores"].items():
        assert len(s["per_clip"]) == 1 and 0.0 <= s["mean"] <= 1.0 and np.isfinite(s["mean"]), name
    assert data["nal_r"]["status"] == "ok"
    s = data["int8_vs_fp32"]
    assert s["status"] == "ok" and np.isfinite(s["measured_snr_db"])
    assert data["latency"]["impulse_matches_manifest"] is True
    mb = data["midbrain"]
    assert mb["status"] == "not run" and "no ICNet weights" in mb["reason"]
    assert mb["comparisons"] == {"impaired": {"status": "not run", "reason": rp._NO_PSI_CHECKPOINT}}
    assert "random" in mb["timing"]["weights"] and mb["timing"]["seconds_per_second"] > 0
    assert "HASPI v2: unprocessed" in r.stdout and "midbrain: not run" in r.stdout
    assert "not run" in page.read_text()
