"""Reading a full-integer ``.tflite`` flatbuffer into the tensors and operators the lowering works on.

Through the schema module that ships with ``ai-edge-litert`` (no TensorFlow). Also the checks on a
TFLite tensor that the lowering and the memory plan share (activation shape, quantisation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from toolchain.export.ckernel.format import BlobError

# TFLite TensorType codes (schema.fbs).
TFL_FLOAT32, TFL_INT32, TFL_UINT8, TFL_INT64, TFL_INT16, TFL_INT8 = 0, 2, 3, 4, 7, 9
TYPE_NAMES = {TFL_INT8: "int8", TFL_INT16: "int16", TFL_INT32: "int32", TFL_INT64: "int64", TFL_FLOAT32: "float32"}
_NP_TYPES = {TFL_INT8: np.int8, TFL_INT32: np.int32, TFL_FLOAT32: np.float32, TFL_INT16: np.int16,
             TFL_INT64: np.int64, TFL_UINT8: np.uint8}
#: TFLite tensor type of the activations of a blob's ``act_bits`` (format.ACT_ELEM_BYTES).
ACT_TFLITE_TYPES: dict[int, int] = {8: TFL_INT8, 16: TFL_INT16}


@dataclass
class TfliteTensor:
    index: int
    name: str
    dtype: int
    shape: tuple[int, ...]
    scale: np.ndarray | None
    zero_point: np.ndarray | None
    quantized_dimension: int
    data: np.ndarray | None  # constant contents (raw bytes viewed by dtype), else None

    @property
    def is_const(self) -> bool:
        return self.data is not None

    def qparams(self) -> tuple[float, int]:
        if self.scale is None or self.scale.size != 1 or self.zero_point is None:
            raise BlobError(f"tensor {self.name!r} needs per-tensor quantisation (scale, zero point)")
        return float(self.scale[0]), int(self.zero_point[0])


@dataclass
class TfliteOperator:
    index: int
    name: str                 # builtin op name, e.g. "CONV_2D"
    inputs: list[int]
    outputs: list[int]
    options: Any              # the schema's builtin options object (None for ops without)

    @property
    def where(self) -> str:
        return f"{self.name} (operator #{self.index})"


@dataclass
class TfliteGraph:
    """The one subgraph of a step graph, its ``serving_default`` signature names → tensor ids."""

    tensors: list[TfliteTensor]
    operators: list[TfliteOperator]
    sig_in: dict[str, int]
    sig_out: dict[str, int]


def _load(tflite_bytes: bytes) -> Any:
    if not isinstance(tflite_bytes, (bytes, bytearray, memoryview)) or len(tflite_bytes) < 8:
        raise BlobError("expected the bytes of an int8 or 16x8 .tflite model")
    buf = bytes(tflite_bytes)
    try:
        return schema.ModelT.InitFromPackedBuf(buf, 0)
    except Exception as e:
        raise BlobError(f"not a readable .tflite flatbuffer: {e}") from None


def _opname(code: Any) -> str:
    builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
    for k, v in schema.BuiltinOperator.__dict__.items():
        if not k.startswith("_") and v == builtin:
            return k
    return f"BUILTIN_{builtin}"


def _tensors(model: Any, sg: Any) -> list[TfliteTensor]:
    out = []
    for i, t in enumerate(sg.tensors):
        q = t.quantization
        scale = zp = None
        qdim = 0
        if q is not None and q.scale is not None and len(q.scale):
            scale = np.asarray(q.scale, dtype=np.float32)
            zp = np.asarray(q.zeroPoint if q.zeroPoint is not None else np.zeros(len(scale)), dtype=np.int64)
            qdim = int(q.quantizedDimension)
        data = None
        buf = model.buffers[t.buffer] if t.buffer < len(model.buffers) else None
        if buf is not None and buf.data is not None and len(buf.data):
            dt = _NP_TYPES.get(int(t.type))
            if dt is None:
                raise BlobError(f"constant tensor {t.name!r} has unsupported type {t.type}")
            data = np.frombuffer(bytes(bytearray(buf.data)), dtype=np.dtype(dt).newbyteorder("<")).astype(dt)
        name = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
        shape = tuple(int(s) for s in (t.shape if t.shape is not None else ()))
        out.append(TfliteTensor(i, name, int(t.type), shape, scale, zp, qdim, data))
    return out


def _names(items: Any) -> dict[str, int]:
    return {(x.name.decode() if isinstance(x.name, bytes) else x.name): int(x.tensorIndex) for x in items}


def read_tflite(tflite_bytes: bytes) -> TfliteGraph:
    """The graph of a step-graph ``.tflite``; raises :class:`BlobError` if it is not one subgraph with a
    ``serving_default`` signature."""
    model = _load(tflite_bytes)
    if len(model.subgraphs) != 1:
        raise BlobError(f"expected one subgraph, found {len(model.subgraphs)}")
    sg = model.subgraphs[0]
    tensors = _tensors(model, sg)
    sigs = {(s.signatureKey.decode() if isinstance(s.signatureKey, bytes) else s.signatureKey): s
            for s in (model.signatureDefs or [])}
    sig = sigs.get("serving_default")
    if sig is None:
        raise BlobError(f"no 'serving_default' signature (found {sorted(sigs)}); export with toolchain.export.tflite")
    operators = [TfliteOperator(n, _opname(model.operatorCodes[op.opcodeIndex]),
                                [int(i) for i in (op.inputs if op.inputs is not None else [])],
                                [int(i) for i in (op.outputs if op.outputs is not None else [])],
                                op.builtinOptions)
                 for n, op in enumerate(sg.operators)]
    return TfliteGraph(tensors, operators, _names(sig.inputs), _names(sig.outputs))


# ------------------------------------------------------------------ checks on one tensor
def act_shape(t: TfliteTensor, what: str, dtype: int = TFL_INT8) -> tuple[int, int]:
    """(frames, channels) of an NHWC activation of TFLite type ``dtype`` with N = H = 1."""
    if t.dtype != dtype:
        raise BlobError(f"{what}: tensor {t.name!r} is {TYPE_NAMES.get(t.dtype, t.dtype)}, expected "
                        f"{TYPE_NAMES[dtype]} (the graph's activation type)")
    if len(t.shape) != 4 or t.shape[0] != 1 or t.shape[1] != 1 or min(t.shape) < 1:
        raise BlobError(f"{what}: tensor {t.name!r} has shape {list(t.shape)}; expected (1, 1, frames, channels)")
    return t.shape[2], t.shape[3]


def flat_shape(t: TfliteTensor) -> tuple[int, int]:
    """(frames, channels) memory view of any activation: channels = last dim, frames = the rest."""
    if not t.shape or min(t.shape) < 1:
        raise BlobError(f"tensor {t.name!r} has an empty or dynamic shape {list(t.shape)}")
    c = t.shape[-1]
    return int(np.prod(t.shape[:-1], dtype=np.int64)) if len(t.shape) > 1 else 1, c


def same_quant(a: TfliteTensor, b: TfliteTensor, what: str) -> None:
    if a.qparams() != b.qparams():
        raise BlobError(f"{what}: {a.name!r} {a.qparams()} and {b.name!r} {b.qparams()} must share scale and "
                        "zero point (int8 kernels do not rescale here)")


def not_const(t: TfliteTensor, what: str) -> None:
    if t.is_const:
        raise BlobError(f"{what}: constant operand {t.name!r} is not supported")
