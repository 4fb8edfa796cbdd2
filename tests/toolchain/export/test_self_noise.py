"""Self-noise and dynamic range of the device graph (round 2 · 1 of 6): the manifest's figures are
re-measured here, silence gives silence on every backend, and full-scale input passes unclipped."""

from __future__ import annotations

import dataclasses
import inspect
import math

import numpy as np
import pytest

from runtime.backends import open_backend
from runtime.backends.litert import LiteRTBackend
from runtime.bundle import load_bundle
from runtime.engine import Engine
from toolchain.audio.levels import DEFAULT_CALIBRATION
from toolchain.export import self_noise
from toolchain.export.pipeline import ExportOptions, measure_self_noise

# Issue targets for the device graph (16x8): per level, and for silence.
SNR_TARGET_DB = {45.0: 35.0, 55.0: 45.0, 65.0: 45.0, 75.0: 45.0, 85.0: 45.0}
SILENCE_TARGET_DB_SPL = 25.0
EIN_TARGET_DB_SPL = 20.0


def test_default_device_graph_is_16x8_with_full_scale_input(default_bundle):
    b = load_bundle(default_bundle)
    m = b.manifest
    assert m.default_graph == "int16x8" and m.graphs["int16x8"].file == "model_16x8.tflite"
    dev = LiteRTBackend(b.graph_file("int16x8"))
    assert dev.io_dtype == np.int16
    scale, zp = dev.input_quant
    assert zp == 0 and scale * 32768 >= 1.0            # the whole ±1.0 full scale, no clipping
    s_out, z_out = dev.output_quant
    assert z_out == 0 and s_out * 32767 >= m.output_limit * 0.999


def test_manifest_self_noise_is_remeasured_and_meets_the_targets(default_bundle):
    b = load_bundle(default_bundle)
    mt = b.manifest.metrics
    dev = LiteRTBackend(b.graph_file(b.manifest.default_graph))
    fp32 = LiteRTBackend(b.graph_file("fp32"))
    again = measure_self_noise(dev, fp32, b.manifest.sample_rate, b.manifest.block, b.manifest.output_limit)
    for key, value in again.items():
        assert key in mt, key
        if isinstance(value, float):
            assert mt[key] == pytest.approx(value, abs=0.05), key
        else:
            assert mt[key] == value, key
    for level, target in SNR_TARGET_DB.items():
        got = mt[f"device_vs_fp32_snr_db_at_{level:g}db_spl"]
        assert got >= target, f"{level:g} dB SPL: {got} dB < {target} dB"
    assert mt["device_silence_output_db_spl"] <= SILENCE_TARGET_DB_SPL
    assert mt["device_equivalent_input_noise_db_spl"] <= EIN_TARGET_DB_SPL
    assert mt["device_silence_block_tone_excess_db"] <= 6.0
    assert mt["device_input_clip_level_db_spl"] >= DEFAULT_CALIBRATION.rms_to_db_spl(1.0 / math.sqrt(2)) - 0.01


def test_self_noise_defaults_are_the_export_defaults():
    """The re-measurement above relies on measure_self_noise's defaults being what export_bundle passes."""
    opts = {f.name: f.default for f in dataclasses.fields(ExportOptions)}
    params = inspect.signature(measure_self_noise).parameters
    passed = {"levels_db_spl": "noise_levels_db_spl", "clips": "noise_clips", "clip_seconds": "clip_seconds",
              "noise_snr_db": "snr_db", "corpus_seed": "corpus_seed", "silence_seconds": "silence_seconds"}
    assert {p.name for p in params.values() if p.kind is p.KEYWORD_ONLY} == set(passed)
    assert {k: params[k].default for k in passed} == {k: opts[v] for k, v in passed.items()}


@pytest.mark.parametrize("backend", ["litert", "ckernel", "litert-fp32", "onnx"])
def test_silence_in_gives_silence_out_on_every_backend(default_bundle, backend):
    eng = Engine(load_bundle(default_bundle), backend=backend)
    y = eng.run(np.zeros(16000, np.float32))
    level = DEFAULT_CALIBRATION.rms_to_db_spl(max(float(np.sqrt(np.mean(y.astype(np.float64) ** 2))), 1e-12))
    assert level <= SILENCE_TARGET_DB_SPL, f"{backend}: {level:.1f} dB SPL for digital silence"


def test_a_near_full_scale_wav_passes_the_device_unclipped(default_bundle):
    b = load_bundle(default_bundle)
    dev = open_backend(b, "litert")
    t = np.arange(8000) / 16000.0
    x = (0.99 * np.sin(2 * np.pi * 250.0 * t)).astype(np.float32)
    s, z = dev.input_quant
    q = np.round(x / s) + z
    assert q.max() < 32767 and q.min() > -32768           # the input tensor holds it
    fp32 = LiteRTBackend(b.graph_file("fp32"))
    from runtime.harness.measure import stream

    ref, got = stream(fp32, x), stream(dev, x)
    lim = b.manifest.output_limit
    inside = np.abs(ref) < lim * 0.98                     # where the fp32 graph itself stays under the limit
    err = float(np.sqrt(np.mean((ref[inside] - got[inside]) ** 2)) / np.sqrt(np.mean(ref[inside] ** 2)))
    assert 20 * np.log10(1.0 / err) >= 35.0


def test_silence_figures_catch_a_buzz():
    """A device that plays a DC offset and a block-rate tone for silence is measured as loud."""

    class Buzz:
        block = 16
        output_quant = (1.0 / 32768, 0)
        io_dtype = np.int16

        def reset(self):
            self.n = 0

        def process(self, x):
            k = np.arange(self.n, self.n + 16)
            self.n += 16
            return (x + 0.05 + 0.02 * np.cos(2 * np.pi * k / 16)).astype(np.float32)

    class Unity(Buzz):
        def process(self, x):
            return np.asarray(x, np.float32)

    f = self_noise.silence_figures(Buzz(), Unity(), 16000, 16, seconds=1.0)
    assert f.output_db_spl > 60 and f.block_tone_excess_db > 20 and abs(f.dc - 0.05) < 1e-3
    q = self_noise.silence_figures(Unity(), Unity(), 16000, 16, seconds=1.0)
    assert q.output_exactly_zero and q.output_db_spl < 5.0    # one 16-bit LSB of rounding noise, 1.9 dB SPL
