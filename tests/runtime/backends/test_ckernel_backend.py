"""CKernelBackend (runtime/backends/ckernel.py) on a small hand-built int8 step graph.

The graph is written directly with the TFLite schema (no TensorFlow): x ⧺ state → CONV_2D (K=3,
per-channel weights) → PRELU → CONV_2D (1×1) → ADD x → y, state' = last 2 frames of the history.
LiteRT runs the same flatbuffer, so the backend is checked bit for bit against the interpreter.
"""

from __future__ import annotations

import numpy as np
import pytest

BLOCK = 16


def tiny_step_tflite(seed: int = 0) -> bytes:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    rng = np.random.default_rng(seed)
    model = s.ModelT()
    model.version = 3
    model.buffers = [s.BufferT()]  # buffer 0: empty (activations)
    sg = s.SubGraphT()
    sg.tensors, sg.operators = [], []

    def tensor(name, shape, ttype, scale=None, zp=None, data=None, qdim=0):
        t = s.TensorT()
        t.name, t.shape, t.type = name.encode(), list(shape), ttype
        if scale is not None:
            q = s.QuantizationParametersT()
            q.scale = list(np.atleast_1d(np.asarray(scale, np.float32)).tolist())
            q.zeroPoint = list(np.atleast_1d(np.asarray(zp, np.int64)).tolist())
            q.quantizedDimension = qdim
            t.quantization = q
        if data is not None:
            b = s.BufferT()
            b.data = list(np.ascontiguousarray(data).view(np.uint8).reshape(-1).tolist())
            model.buffers.append(b)
            t.buffer = len(model.buffers) - 1
        else:
            t.buffer = 0
        sg.tensors.append(t)
        return len(sg.tensors) - 1

    I8, I32 = s.TensorType.INT8, s.TensorType.INT32
    x = tensor("x", (1, 1, BLOCK, 1), I8, 0.01, 3)
    st_in = tensor("state_in_00", (1, 1, 2, 1), I8, 0.01, 3)
    hist = tensor("hist", (1, 1, BLOCK + 2, 1), I8, 0.01, 3)
    w1s = rng.uniform(0.002, 0.01, 4)
    w1 = tensor("w1", (4, 1, 3, 1), I8, w1s, np.zeros(4), rng.integers(-127, 128, (4, 1, 3, 1)).astype(np.int8))
    b1 = tensor("b1", (4,), I32, w1s * 0.01, np.zeros(4), rng.integers(-3000, 3000, 4).astype(np.int32))
    c1 = tensor("c1", (1, 1, BLOCK, 4), I8, 0.02, -5)
    alpha = tensor("alpha", (1, 1, 4), I8, 0.002, 0, rng.integers(-127, 128, 4).astype(np.int8))
    p1 = tensor("p1", (1, 1, BLOCK, 4), I8, 0.015, -20)
    w2s = rng.uniform(0.002, 0.01, 1)
    w2 = tensor("w2", (1, 1, 1, 4), I8, w2s, [0], rng.integers(-127, 128, (1, 1, 1, 4)).astype(np.int8))
    b2 = tensor("b2", (1,), I32, w2s * 0.015, [0], np.array([123], np.int32))
    c2 = tensor("c2", (1, 1, BLOCK, 1), I8, 0.012, 2)
    y = tensor("y", (1, 1, BLOCK, 1), I8, 0.02, 1)
    begin = tensor("begin", (4,), I32, data=np.array([0, 0, -2, 0], np.int32))
    end = tensor("end", (4,), I32, data=np.array([0, 0, 0, 0], np.int32))
    strides = tensor("strides", (4,), I32, data=np.array([1, 1, 1, 1], np.int32))
    st_out = tensor("state_out_00", (1, 1, 2, 1), I8, 0.01, 3)

    codes = {}

    def op(name, version, ins, outs, opt_type=0, opt=None):
        code = getattr(s.BuiltinOperator, name)
        if code not in codes:
            c = s.OperatorCodeT()
            c.builtinCode, c.deprecatedBuiltinCode, c.version = code, min(code, 127), version
            codes[code] = len(codes)
            model.operatorCodes = [None] * len(codes) if not model.operatorCodes else model.operatorCodes + [None]
            model.operatorCodes[codes[code]] = c
        o = s.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = codes[code], list(ins), list(outs)
        o.builtinOptionsType, o.builtinOptions = opt_type, opt
        sg.operators.append(o)

    model.operatorCodes = []
    cat = s.ConcatenationOptionsT()
    cat.axis = 2
    op("CONCATENATION", 2, [st_in, x], [hist], s.BuiltinOptions.ConcatenationOptions, cat)
    conv = s.Conv2DOptionsT()
    conv.padding, conv.strideW, conv.strideH, conv.dilationWFactor, conv.dilationHFactor = s.Padding.VALID, 1, 1, 1, 1
    op("CONV_2D", 3, [hist, w1, b1], [c1], s.BuiltinOptions.Conv2DOptions, conv)
    op("PRELU", 1, [c1, alpha], [p1])
    conv2 = s.Conv2DOptionsT()
    conv2.padding, conv2.strideW, conv2.strideH, conv2.dilationWFactor, conv2.dilationHFactor = s.Padding.VALID, 1, 1, 1, 1
    op("CONV_2D", 3, [p1, w2, b2], [c2], s.BuiltinOptions.Conv2DOptions, conv2)
    op("ADD", 2, [c2, x], [y], s.BuiltinOptions.AddOptions, s.AddOptionsT())
    ss = s.StridedSliceOptionsT()
    ss.beginMask, ss.endMask = 0b1011, 0b1111
    op("STRIDED_SLICE", 2, [hist, begin, end, strides], [st_out], s.BuiltinOptions.StridedSliceOptions, ss)
    sg.inputs, sg.outputs = [x, st_in], [y, st_out]
    model.subgraphs = [sg]

    def tmap(name, idx):
        m = s.TensorMapT()
        m.name, m.tensorIndex = name.encode(), idx
        return m

    sig = s.SignatureDefT()
    sig.signatureKey = b"serving_default"
    sig.inputs = [tmap("x", x), tmap("state_in_00", st_in)]
    sig.outputs = [tmap("y", y), tmap("state_out_00", st_out)]
    sig.subgraphIndex = 0
    model.signatureDefs = [sig]
    b = flatbuffers.Builder(4096)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


@pytest.fixture(scope="module")
def tiny():
    from toolchain.export.ckernel import tflite_to_blob

    tfl = tiny_step_tflite()
    return tfl, tflite_to_blob(tfl)


@pytest.fixture(scope="module")
def signal():
    rng = np.random.default_rng(11)
    t = np.arange(BLOCK * 300) / 16000.0
    x = 0.5 * np.sin(2 * np.pi * 440 * t) * np.sin(2 * np.pi * 3 * t) + 0.05 * rng.standard_normal(t.size)
    return x.astype(np.float32)


def litert_raw(tfl: bytes, x_q: np.ndarray) -> np.ndarray:
    from runtime.backends.litert import LiteRTBackend

    lit = LiteRTBackend(tfl, reference_kernels=True)
    return np.concatenate([lit.process_raw(x_q[i:i + BLOCK]) for i in range(0, x_q.size, BLOCK)])


def test_backend_matches_litert_bit_exact(tiny, signal):
    from runtime.backends.base import quantize
    from runtime.backends.ckernel import CKernelBackend

    tfl, blob = tiny
    be = CKernelBackend(blob)
    assert be.name == "ckernel" and be.block == BLOCK
    assert be.input_quant == (pytest.approx(0.01), 3) and be.output_quant == (pytest.approx(0.02), 1)
    x_q = quantize(signal, *be.input_quant)
    y = be.process(x_q)
    assert y.dtype == np.int8 and y.shape == x_q.shape
    want = litert_raw(tfl, x_q)
    assert np.array_equal(y, want)
    assert np.count_nonzero(y.astype(int) - want) == 0 and np.ptp(y.astype(int)) > 20


def test_float_interface_and_engine_contract(tiny, signal):
    from runtime.backends.base import Backend, dequantize, quantize
    from runtime.backends.ckernel import CKernelBackend
    from runtime.backends.litert import LiteRTBackend

    tfl, blob = tiny
    be = CKernelBackend(blob)
    lit = LiteRTBackend(tfl, reference_kernels=True)
    assert isinstance(be, Backend)
    for i in range(0, 60 * BLOCK, BLOCK):
        blk = signal[i:i + BLOCK]
        y = be.process(blk)
        assert y.dtype == np.float32
        assert np.array_equal(y, lit.process(blk))
    assert np.array_equal(dequantize(quantize(signal[:BLOCK], *be.input_quant), *be.input_quant).dtype,
                          np.dtype(np.float32))


def test_state_snapshot_reset(tiny, signal):
    from runtime.backends.base import quantize
    from runtime.backends.ckernel import CKernelBackend

    _, blob = tiny
    be = CKernelBackend(blob)
    x = quantize(signal, *be.input_quant)
    y_full = be.process(x)
    be.reset()
    be.process(x[:100 * BLOCK])
    snap = be.get_state()
    assert isinstance(snap, bytes) and len(snap) == be.state_bytes == 4  # 2 frames, 4-byte aligned
    a = be.process(x[100 * BLOCK:])
    be.set_state(snap)
    b = be.process(x[100 * BLOCK:])
    assert np.array_equal(a, b) and np.array_equal(a, y_full[100 * BLOCK:])
    be.set_state(np.frombuffer(snap, np.uint8))  # an array works too
    be.reset()
    assert np.array_equal(be.process(x), y_full)


def test_errors(tiny):
    from runtime.backends.base import BackendError
    from runtime.backends.ckernel import CKernelBackend

    _, blob = tiny
    be = CKernelBackend(blob)
    with pytest.raises(BackendError, match="multiple of the block"):
        be.process(np.zeros(BLOCK + 1, np.int8))
    with pytest.raises(BackendError, match="int8 or float"):
        be.process(np.zeros(BLOCK, np.int32))
    with pytest.raises(BackendError, match="state snapshot"):
        be.set_state(b"\0" * 3)
    with pytest.raises(BackendError, match="HX_E_CHECKSUM"):
        CKernelBackend(blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(BackendError, match="HX_E_TRUNCATED"):
        CKernelBackend(blob[:40])
    with pytest.raises(BackendError, match="unknown HX_ARCH"):
        CKernelBackend(blob, arch="sse9")


def test_runtime_imports_only_numpy_and_cffi():
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[3] / "runtime" / "backends"
    allowed = {"numpy", "cffi", "runtime", "__future__"}
    import sys

    stdlib = set(sys.stdlib_module_names)
    for name in ("ckernel.py", "ckernel_build.py"):
        tree = ast.parse((root / name).read_text())
        for node in ast.walk(tree):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            for m in mods:
                top = m.split(".")[0]
                assert top in allowed or top in stdlib, f"{name} imports {m}"
