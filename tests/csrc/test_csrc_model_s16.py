"""Whole 16x8 model: the C kernel against LiteRT's built-in 16x8 kernels and the numpy executor.

The test model is the prescription recipe's architecture (leaky ReLU, 48-tap convs, the NAL-R skip)
with random weights, converted by LiteRT's 16x8 quantiser and finalized as the device runs it
(toolchain/export/quant/int16_graph.finalize_16x8). The C kernel streams ≥ 10 s of speech in noise (plus 2 s
driven into saturation) block by block, carrying its state, and must equal
Interpreter(experimental_op_resolver_type=BUILTIN_WITHOUT_DEFAULT_DELEGATES) bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
from csrc_helpers import BLOCK, host_archs, litert_stream

from runtime.backends.ckernel import CKernelBackend
from toolchain.export.ckernel import describe_blob, numpy_ref, parse_blob, tflite_to_blob


@pytest.fixture(scope="module")
def c_out(seanet16) -> np.ndarray:
    """C kernel output, one block per call (as the runtime engine drives it)."""
    be = CKernelBackend(seanet16.blob, arch="ref")
    x = seanet16.audio_q
    return np.concatenate([be.process(x[i:i + BLOCK]) for i in range(0, x.size, BLOCK)])


@pytest.fixture(scope="module")
def litert_ref_out(seanet16) -> np.ndarray:
    return litert_stream(seanet16.tflite, seanet16.audio_q, reference=True)


def test_graph_is_the_finalized_16x8_device_graph(seanet16):
    info = describe_blob(seanet16.blob)
    assert info["act_bits"] == 16 and info["act_dtype"] == "int16"
    assert info["input_quant"] == {"scale": 1.0 / 32768.0, "zero_point": 0}  # finalize_16x8's PCM scale
    assert info["output_quant"]["zero_point"] == 0
    assert set(info["op_counts"]) == {"CONV", "LEAKY_RELU", "ADD", "CONCAT", "COPY"}
    assert info["target"] == "litert" and info["add_mode"] == ["vector16"]
    assert seanet16.audio_q.dtype == np.int16 and seanet16.seconds >= 10.0
    assert np.abs(seanet16.audio_q.astype(int)).max() >= 32767  # the loud part reaches full scale


def test_bit_exact_with_litert_builtin_16x8_kernels(seanet16, c_out, litert_ref_out):
    diff = np.flatnonzero(c_out != litert_ref_out)
    print(f"C vs LiteRT 16x8 BUILTIN_WITHOUT_DEFAULT_DELEGATES: {c_out.size} samples ({seanet16.seconds:.1f} s), "
          f"{diff.size} differ")
    assert c_out.dtype == np.int16 and c_out.size == seanet16.audio_q.size
    assert diff.size == 0, f"first differences at samples {diff[:10]}"
    # Not a degenerate model: the output moves over most of the int16 range and is not the input.
    assert np.ptp(c_out.astype(int)) > 20000
    assert np.count_nonzero(c_out.astype(int) - seanet16.audio_q) > c_out.size // 2


@pytest.mark.parametrize("arch", host_archs()[1:] or [pytest.param("x86", marks=pytest.mark.skip("no AVX2"))])
def test_other_host_kernel_sets_equal_ref(seanet16, c_out, arch):
    be = CKernelBackend(seanet16.blob, arch=arch)
    assert be.arch == arch
    assert np.array_equal(be.process(seanet16.audio_q), c_out)


def test_one_call_equals_block_by_block(seanet16, c_out):
    be = CKernelBackend(seanet16.blob, arch="ref")
    assert np.array_equal(be.process(seanet16.audio_q), c_out)
    be.reset()
    rng = np.random.default_rng(0)
    pieces, pos, x = [], 0, seanet16.audio_q
    while pos < x.size:
        n = min(int(rng.integers(1, 40)) * BLOCK, x.size - pos)
        pieces.append(be.process(x[pos:pos + n]))
        pos += n
    assert np.array_equal(np.concatenate(pieces), c_out)


def test_numpy_executor_matches_c(seanet16, c_out):
    n = 150 * BLOCK  # the numpy twin is slow
    assert np.array_equal(numpy_ref.run_blob(seanet16.blob, seanet16.audio_q[:n]), c_out[:n])
    be = CKernelBackend(seanet16.blob, arch="ref")
    start = 12 * 16000  # mid-stream, inside the saturating part
    be.process(seanet16.audio_q[:start])
    runner = numpy_ref.BlobRunner(seanet16.blob)
    runner.set_state(be.get_state())
    assert np.array_equal(runner.process(seanet16.audio_q[start:start + 60 * BLOCK]), c_out[start:start + 60 * BLOCK])


def test_state_snapshot_and_reset(seanet16, c_out):
    x = seanet16.audio_q
    be = CKernelBackend(seanet16.blob, arch="ref")
    a = 3 * 16000
    be.process(x[:a])
    snap = be.get_state()
    assert len(snap) == be.state_bytes > 0 and be.state_bytes % 2 == 0
    y1 = be.process(x[a:a + 100 * BLOCK])
    be.set_state(snap)
    assert np.array_equal(be.process(x[a:a + 100 * BLOCK]), y1)
    assert np.array_equal(y1, c_out[a:a + 100 * BLOCK])
    be.reset()
    assert be.get_state() == bytes(be.state_bytes)  # int16 silence is all-zero bytes
    assert np.array_equal(be.process(x[:100 * BLOCK]), c_out[:100 * BLOCK])


def test_float_boundary_matches_litert_backend(seanet16):
    """Float in/out: int16 at the graph's scale on both backends; a 0.99 full-scale sine passes unclipped."""
    from runtime.backends.litert import LiteRTBackend

    lit = LiteRTBackend(seanet16.tflite, reference_kernels=True)
    be = CKernelBackend(seanet16.blob, arch="ref")
    assert be.io_dtype == lit.io_dtype == np.int16
    assert be.input_quant == lit.input_quant and be.output_quant == lit.output_quant
    t = np.arange(40 * BLOCK) / 16000.0
    x = (0.99 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    xq = (x / np.float32(be.input_quant[0])).round()
    assert np.abs(xq).max() < 32767  # the input quantisation does not clip it
    for i in range(0, x.size, BLOCK):
        assert np.array_equal(be.process(x[i:i + BLOCK]), lit.process(x[i:i + BLOCK]))
    with pytest.raises(Exception, match="int16"):
        be.process_raw(np.zeros(BLOCK, np.int8))


def test_describe_blob_matches_the_c_arena(seanet16, cklib):
    info = describe_blob(seanet16.blob)
    size = cklib.ffi.new("size_t *")
    assert cklib.lib.hx_model_state_size(seanet16.blob, len(seanet16.blob), size) == cklib.lib.HX_OK
    assert info["arena_bytes"] == size[0]
    assert info["state_bytes"] == CKernelBackend(seanet16.blob, arch="ref").state_bytes
    m = parse_blob(seanet16.blob)
    assert m.act_bits == 16 and all(t.elem_bytes == 2 and t.zero_point == 0 for t in m.tensors)
    print(f"16x8 blob {info['blob_bytes']} B, arena {info['arena_bytes']} B (state {info['state_bytes']}, scratch "
          f"{info['scratch_bytes']}, tables {info['param_bytes']}), {info['macs_per_block']} MAC/block")


def test_tflite_reference_target_matches_builtin_ref(seanet16):
    """target="tflite-reference" (reference ADD everywhere) equals LiteRT's reference kernels (BUILTIN_REF)."""
    from ai_edge_litert.interpreter import OpResolverType

    blob = tflite_to_blob(seanet16.tflite, target="tflite-reference")
    assert describe_blob(blob)["target"] == "tflite-reference"
    x = seanet16.audio_q[16000:16000 + 300 * BLOCK]
    y = CKernelBackend(blob, arch="ref").process(x)
    want = litert_stream(seanet16.tflite, x, reference=True, resolver=OpResolverType.BUILTIN_REF)
    assert np.array_equal(y, want)


def test_arm_and_x86_targets_write_the_same_16x8_blob(seanet16):
    """LiteRT's 16x8 CONV (int64 bias) and int16 LEAKY_RELU are its reference kernels on every build, and
    its int16 ADD is the same NEON code on ARM and (through NEON_2_SSE) x86: one blob for both."""
    assert tflite_to_blob(seanet16.tflite, target="litert-arm") == seanet16.blob
