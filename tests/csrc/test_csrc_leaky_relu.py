"""LEAKY_RELU in the C kernel: the blob writer maps it onto the PRELU op (one alpha code of 1, the slope
in the negative multiplier), which must equal LiteRT's int8 LEAKY_RELU bit for bit on every kernel set."""

from __future__ import annotations

import numpy as np
import pytest
from csrc_helpers import BLOCK, host_archs, litert_stream

from runtime.backends.base import quantize
from runtime.backends.ckernel import CKernelBackend
from runtime.bundle import load_bundle
from tests.helpers import speech_clip
from toolchain.export.ckernel import BlobError, describe_blob, numpy_ref, tflite_to_blob


@pytest.fixture(scope="module")
def leaky(leaky_bundle):
    """The leaky-ReLU bundle's int8 graph and blob, 2.5 s of int8 speech (the last 0.5 s driven into
    saturation) and LiteRT's builtin-kernel output for it."""
    b = load_bundle(leaky_bundle)
    tfl = b.graph_file("int8").read_bytes()
    x = speech_clip("test", 9, seconds=2.0)
    x = np.concatenate([x, np.clip(x[:8000] * 8.0, -1, 1)])
    x = x[: x.size // BLOCK * BLOCK]
    xin = next(t for t in b.manifest.graph("int8").inputs if t.name == "x")
    xq = quantize(x, xin.scale, xin.zero_point)
    return tfl, tflite_to_blob(tfl), xq, litert_stream(tfl, xq, reference=True)


def test_bundle_blob_is_the_leaky_graph(leaky, leaky_bundle):
    tfl, blob, xq, want = leaky
    b = load_bundle(leaky_bundle)   # the bundle's kernel blob is its default (16x8) graph's
    assert b.manifest.default_graph == "int16x8"
    assert b.file("kernel/model.hxb").read_bytes() == tflite_to_blob(b.graph_file("int16x8").read_bytes())
    assert describe_blob(blob)["op_counts"]["PRELU"] == 21          # every LEAKY_RELU of the graph
    n = 160 * BLOCK                                                    # the numpy twin is slow: 0.16 s
    assert np.array_equal(numpy_ref.run_blob(blob, xq[:n]), want[:n])


@pytest.mark.parametrize("arch", host_archs())
def test_c_kernel_equals_litert_leaky_relu(leaky, arch):
    _, blob, xq, want = leaky
    be = CKernelBackend(blob, arch=arch)
    got = np.concatenate([be.process(xq[i:i + BLOCK]) for i in range(0, xq.size, BLOCK)])
    diff = np.flatnonzero(got != want)
    assert diff.size == 0, f"{arch}: first differences at samples {diff[:10]}"
    assert np.ptp(want.astype(int)) > 50


def test_negative_slope_is_refused(leaky):
    """A negative slope would need a negative multiplier, which the PRELU op does not take: refused, one line."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    m = schema.ModelT.InitFromPackedBuf(leaky[0], 0)
    code = next(i for i, c in enumerate(m.operatorCodes)
                if max(c.builtinCode, c.deprecatedBuiltinCode) == schema.BuiltinOperator.LEAKY_RELU)
    op = next(o for o in m.subgraphs[0].operators if o.opcodeIndex == code)
    op.builtinOptions.alpha = -0.1
    b = flatbuffers.Builder(len(leaky[0]) + 1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    with pytest.raises(BlobError, match="LEAKY_RELU .*negative slope -0.1") as e:
        tflite_to_blob(bytes(b.Output()))
    assert "\n" not in str(e.value)
