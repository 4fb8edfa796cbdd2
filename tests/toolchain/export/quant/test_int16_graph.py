"""finalize_16x8: the converter's 16x8 graph made requantise-free, with a full-scale int16 input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from runtime.backends.litert import LiteRTBackend
from runtime.harness.measure import stream
from tests.helpers import randomised_seanet, speech_clip
from toolchain.export import tflite
from toolchain.export.pipeline import _count_int8_ops
from toolchain.export.quant.int16_graph import PCM16_SCALE, Int16GraphError, finalize_16x8
from toolchain.models.compensators.seanet import SEANetConfig

BLOCK = 16


@pytest.fixture(scope="module")
def raw_16x8() -> bytes:
    """A small leaky-ReLU SEANet with a filter skip, converted by LiteRT's 16x8 quantiser as is."""
    cfg = SEANetConfig(activation="leaky_relu", channels=4, max_channels=16, kernel_size=7, skip_taps=7, skip_channels=2)
    fitted = randomised_seanet(3, cfg).fit(np.array([20, 25, 35, 45, 50, 55, 60, 65], np.float32))
    graph = fitted.streaming()
    clip = speech_clip("calib", 0, seconds=1.0)
    n = len(clip) // BLOCK * BLOCK
    xb, states = graph.states_at(torch.from_numpy(clip[:n]).reshape(1, 1, n), BLOCK, list(range(0, n // BLOCK, 5)))
    nhwc = lambda t: t.permute(0, 2, 1).unsqueeze(1).numpy().astype(np.float32)  # noqa: E731
    xs, st = nhwc(xb), [nhwc(s) for s in states]
    reps = [[xs[k:k + 1]] + [s[k:k + 1] for s in st] for k in range(len(xs))]
    keras_model = tflite.build_keras_step(graph, BLOCK)
    return tflite.convert(keras_model, len(graph.slots), lambda: iter(reps), int16x8=True, fp32=False).int8


def test_finalized_graph_has_no_requantise_and_a_pcm16_input(raw_16x8):
    out = finalize_16x8(raw_16x8, min_output_reach=0.891)
    ops = _count_int8_ops(out, ("int16", "int8", "int32", "int64"))["ops"]
    assert "QUANTIZE" not in ops and "DEQUANTIZE" not in ops
    b = LiteRTBackend(out)
    assert b.io_dtype == np.int16
    assert b.input_quant == (pytest.approx(PCM16_SCALE, rel=1e-6), 0)
    assert b.output_quant[0] * 32767 >= 0.891 * 0.9999 and b.output_quant[1] == 0
    # every state tensor keeps its input's scale on its output, so it feeds straight back
    for si, so in b.state_pairs:
        assert b._ins[si]["quantization"] == b._outs[so]["quantization"]


def test_finalized_graph_computes_what_the_converter_graph_computes(raw_16x8):
    """Only scales moved: the same audio (inside the converter's input range) gives the same output
    to within int16 rounding."""
    raw, fin = LiteRTBackend(raw_16x8), LiteRTBackend(finalize_16x8(raw_16x8))
    x = 0.3 * speech_clip("test", 1, seconds=1.0) / np.abs(speech_clip("test", 1, seconds=1.0)).max()
    a, b = stream(raw, x), stream(fin, x)
    snr = 10 * np.log10(np.sum(a.astype(np.float64) ** 2) / np.sum((a - b).astype(np.float64) ** 2))
    assert snr > 40.0, snr


def test_a_full_scale_input_is_not_clipped_at_the_first_tensor(raw_16x8):
    raw, fin = LiteRTBackend(raw_16x8), LiteRTBackend(finalize_16x8(raw_16x8))
    assert raw.input_quant[0] * 32767 < 0.99          # the converter's own scale would clip a loud input
    assert fin.input_quant[0] * 32768 == pytest.approx(1.0)


def test_an_int8_graph_is_refused_in_one_line():
    from tests.helpers import randomised_seanet as rs

    fitted = rs(0, SEANetConfig(activation="leaky_relu", channels=4, max_channels=8)).fit(np.zeros(8, np.float32))
    g = fitted.streaming()
    km = tflite.build_keras_step(g, BLOCK)
    reps = [[np.zeros((1, 1, BLOCK, 1), np.float32)] + [np.zeros((1, 1, s.frames, s.channels), np.float32) for s in g.slots]]
    int8 = tflite.convert(km, len(g.slots), lambda: iter(reps), fp32=False).int8
    with pytest.raises(Int16GraphError) as e:
        finalize_16x8(int8)
    assert "not a 16x8 graph" in str(e.value) and "\n" not in str(e.value)
