"""Full-integer TFLite step graph → C-kernel blob (``csrc/``), C header, and blob inspection.

:func:`tflite_to_blob` reads an int8 or 16x8 ``.tflite`` flatbuffer (through the schema module that
ships with ``ai-edge-litert``; no TensorFlow), checks that every op, option and quantisation is
one the C kernel computes exactly, computes the fixed-point multipliers on the host exactly as
the LiteRT kernels' Prepare does, plans the arena, and writes a versioned binary:

```
header   64 B   "HXKB", format version, header size, blob size, tensor/op counts, table and
                data offsets, block, input/output tensor ids, state and scratch bytes, act_bits
tensors  32 B each   region (0 scratch, 1 state), byte offset, frames, channels, zero point, scale
ops      128 B each  32 little-endian words: type, n_in, 4 input ids, output id, data offset,
                data bytes, op parameters (see csrc/common/hx_blob.c)
data     int8 weights / alphas and int32 (16x8: int64) bias, multiplier, shift arrays, 4-byte aligned
crc32    CRC-32 (zlib) of every byte before it
```

The executor state is explicit: each ``state_in_NN`` is a tensor in the persistent *state*
region; the graph's ``state_out_NN`` (a STRIDED_SLICE of the concatenated history) is written
straight back into it by a COPY op placed after the state's last reader. Everything else lives
in the *scratch* region, planned by lifetime (elementwise ops run in place when their input dies).

Targets: LiteRT builds differ in two places. CONV_2D runs on ruy, whose requantisation rounds
differently on x86 (AVX2: two roundings half up) and ARM (NEON: one rounding); ADD runs TFLite's
NEON kernel (on x86 through NEON_2_SSE) on 16-element chunks, which rounds each operand once,
while the reference kernel rounds twice. ``target`` picks the build a blob reproduces bit for bit
(:data:`TARGETS`): ``"litert-x86"`` (default; the host the tests compare against),
``"litert-arm"`` (a board's LiteRT), ``"tflite-reference"`` (TFLite's reference kernels / TFLM).

16x8 graphs (int16 activations, I/O and state with zero point 0, int8 weights, int64 bias; the
activation type is read off the input ``x`` and recorded in the header's ``act_bits``): every int16
tensor takes two bytes in the arena, LEAKY_RELU is its own op (int8 graphs run it as a PRELU table),
and only ADD depends on the target (CONV_2D with int64 bias and int16 LEAKY_RELU are TFLite's
reference kernels on every LiteRT build; see csrc/README.md).
"""

from __future__ import annotations

import math
import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from toolchain.export import numpy_ref as ref

MAGIC = b"HXKB"
FORMAT_VERSION = 2             # 2: the header names the activation type (int8 or 16x8)
HEADER_BYTES = 64
TENSOR_BYTES = 32
OP_BYTES = 128
OP_WORDS = OP_BYTES // 4
MAX_OP_INPUTS = 4
OP_SLOT_BYTES = 192          # csrc/include/hx/hx_types.h HX_OP_SLOT_BYTES
ADD_TABLE_BYTES = 2048       # csrc/common/hx_internal.h HX_ADD_TABLE_BYTES
BIAS64_LIMIT = 1 << 46       # HX_BIAS64_LIMIT: 16x8 bias magnitude the kernel's int64 requantisation takes exactly
ARENA_ALIGN = 16             # HX_ARENA_ALIGN
SCRATCH_ALIGN = 16
STATE_ALIGN = 4
REGION_SCRATCH, REGION_STATE = 0, 1
NO_TENSOR = 0xFFFFFFFF

OP_CODES = {"CONV": 1, "PRELU": 2, "ADD": 3, "CONCAT": 4, "COPY": 5, "LEAKY_RELU": 6}
OP_NAMES = {v: k for k, v in OP_CODES.items()}
SUPPORTED_TFLITE_OPS = ("CONV_2D", "PRELU", "LEAKY_RELU", "ADD", "CONCATENATION", "STRIDED_SLICE", "RESHAPE")
_FUSED = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}

#: Which LiteRT build a blob reproduces bit for bit: (CONV_2D rounding, ADD arithmetic). PRELU, CONCAT,
#: STRIDED_SLICE and RESHAPE compute the same in all of them.
TARGETS: dict[str, tuple[str, str]] = {
    "litert-x86": ("double_up", "vector16"),        # LiteRT on an x86-64 host (ruy AVX2, NEON_2_SSE)
    "litert-arm": ("single_up", "vector16"),        # LiteRT on an ARM board (ruy NEON, NEON)
    "tflite-reference": ("double_away", "reference"),  # TFLite reference kernels (BUILTIN_REF), TFLM
}
_ADD_LEFT_SHIFT = 20  # TFLite add.cc, 8-bit path
_ADD_LEFT_SHIFT_S16 = 15  # TFLite add.cc, 16-bit general-scale path
#: Activation types a blob can carry (header word ``act_bits``): TFLite tensor type and bytes per element.
ACT_TYPES: dict[int, tuple[int, int]] = {8: (9, 1), 16: (7, 2)}
_TFL_INT8, _TFL_INT16, _TFL_INT32, _TFL_INT64 = 9, 7, 2, 4


class BlobError(ValueError):
    """A graph the C kernel cannot run exactly, or a malformed blob (one-line message)."""


# ============================================================================ flatbuffer view
@dataclass
class _Tensor:
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


_NP_TYPES = {9: np.int8, 2: np.int32, 0: np.float32, 7: np.int16, 4: np.int64, 3: np.uint8}


def _load(int8_tflite: bytes):
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError as e:  # pragma: no cover - ai-edge-litert is a dev dependency
        raise BlobError(f"reading .tflite needs ai-edge-litert's schema module: {e}") from None
    if not isinstance(int8_tflite, (bytes, bytearray, memoryview)) or len(int8_tflite) < 8:
        raise BlobError("expected the bytes of an int8 or 16x8 .tflite model")
    buf = bytes(int8_tflite)
    try:
        model = schema.ModelT.InitFromPackedBuf(buf, 0)
    except Exception as e:
        raise BlobError(f"not a readable .tflite flatbuffer: {e}") from None
    return schema, model


def _opname(schema, code) -> str:
    builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
    for k, v in schema.BuiltinOperator.__dict__.items():
        if not k.startswith("_") and v == builtin:
            return k
    return f"BUILTIN_{builtin}"


def _tensors(model, sg) -> list[_Tensor]:
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
        out.append(_Tensor(i, name, int(t.type), shape, scale, zp, qdim, data))
    return out


# ============================================================================== graph → IR
@dataclass
class _Op:
    kind: str                         # CONV PRELU ADD CONCAT COPY
    inputs: list[int]                 # tflite tensor ids
    output: int
    params: dict[str, Any]
    data: bytes = b""
    source: str = ""                  # "CONV_2D #3" for messages


_TYPE_NAMES = {9: "int8", 7: "int16", 2: "int32", 4: "int64", 0: "float32"}


def _act_shape(t: _Tensor, what: str, dtype: int = _TFL_INT8) -> tuple[int, int]:
    """(frames, channels) of an NHWC activation of TFLite type ``dtype`` with N = H = 1."""
    if t.dtype != dtype:
        raise BlobError(f"{what}: tensor {t.name!r} is {_TYPE_NAMES.get(t.dtype, t.dtype)}, expected "
                        f"{_TYPE_NAMES[dtype]} (the graph's activation type)")
    if len(t.shape) != 4 or t.shape[0] != 1 or t.shape[1] != 1 or min(t.shape) < 1:
        raise BlobError(f"{what}: tensor {t.name!r} has shape {list(t.shape)}; expected (1, 1, frames, channels)")
    return t.shape[2], t.shape[3]


def _flat_shape(t: _Tensor) -> tuple[int, int]:
    """(frames, channels) memory view of any activation: channels = last dim, frames = the rest."""
    if not t.shape or min(t.shape) < 1:
        raise BlobError(f"tensor {t.name!r} has an empty or dynamic shape {list(t.shape)}")
    c = t.shape[-1]
    return int(np.prod(t.shape[:-1], dtype=np.int64)) if len(t.shape) > 1 else 1, c


def _same_quant(a: _Tensor, b: _Tensor, what: str) -> None:
    if a.qparams() != b.qparams():
        raise BlobError(f"{what}: {a.name!r} {a.qparams()} and {b.name!r} {b.qparams()} must share scale and "
                        "zero point (int8 kernels do not rescale here)")


def _not_const(t: _Tensor, what: str) -> None:
    if t.is_const:
        raise BlobError(f"{what}: constant operand {t.name!r} is not supported")


def _strided_slice_range(shape: tuple[int, ...], begin, end, strides, opts) -> list[tuple[int, int]]:
    """Per-axis [start, stop) of a TFLite STRIDED_SLICE with positive strides (strided_slice_logic.h)."""
    out = []
    for ax, size in enumerate(shape):
        if int(strides[ax]) != 1:
            raise BlobError(f"STRIDED_SLICE with stride {int(strides[ax])} on axis {ax} is not supported")
        if opts.beginMask & (1 << ax):
            start = 0
        else:
            start = int(begin[ax])
            start = start + size if start < 0 else start
            start = min(max(start, 0), size)
        if opts.endMask & (1 << ax):
            stop = size
        else:
            stop = int(end[ax])
            stop = stop + size if stop < 0 else stop
            stop = min(max(stop, 0), size)
        out.append((start, max(stop, start)))
    return out


def _is_pot(scale: float) -> bool:
    """TFLite's CheckedLog2: a scale within 1e-3 (in log2) of a power of two."""
    v = math.log2(float(scale))
    return abs(v - round(v)) < 1e-3


def _build_ir(schema, model, conv_rounding: str, add_mode: str) -> tuple[list[_Op], list[_Tensor], dict[int, int], dict[str, int], dict[str, int], int]:
    """The graph as C-kernel ops; also the activation width (8 or 16 bits) read off the input ``x``."""
    if len(model.subgraphs) != 1:
        raise BlobError(f"expected one subgraph, found {len(model.subgraphs)}")
    sg = model.subgraphs[0]
    tensors = _tensors(model, sg)
    alias: dict[int, int] = {}   # RESHAPE output → input (same bytes)
    ops: list[_Op] = []
    sigs = {(s.signatureKey.decode() if isinstance(s.signatureKey, bytes) else s.signatureKey): s
            for s in (model.signatureDefs or [])}
    sig = sigs.get("serving_default")
    if sig is None:
        raise BlobError(f"no 'serving_default' signature (found {sorted(sigs)}); export with toolchain.export.tflite")

    def names(items) -> dict[str, int]:
        return {(x.name.decode() if isinstance(x.name, bytes) else x.name): int(x.tensorIndex) for x in items}

    sig_in, sig_out = names(sig.inputs), names(sig.outputs)
    if "x" not in sig_in:
        raise BlobError(f"signature needs input 'x' (has {sorted(sig_in)})")
    act_dtype = tensors[sig_in["x"]].dtype
    bits = {v[0]: k for k, v in ACT_TYPES.items()}.get(act_dtype)
    if bits is None:
        raise BlobError(f"input x is {_TYPE_NAMES.get(act_dtype, act_dtype)}; the C kernel runs int8 and 16x8 "
                        "(int16 activations) graphs")
    s16 = bits == 16
    elem = ACT_TYPES[bits][1]
    tname = _TYPE_NAMES[act_dtype]

    def act(t: _Tensor, what: str) -> tuple[int, int]:
        return _act_shape(t, what, act_dtype)

    def symmetric(where: str, *ts: _Tensor) -> None:
        """TFLite's 16x8 kernels require zero point 0 on every int16 tensor."""
        for t in ts:
            if s16 and t.qparams()[1] != 0:
                raise BlobError(f"{where}: int16 tensor {t.name!r} has zero point {t.qparams()[1]}; 16x8 needs 0")

    for n, op in enumerate(sg.operators):
        name = _opname(schema, model.operatorCodes[op.opcodeIndex])
        where = f"{name} (operator #{n})"
        ins = [int(i) for i in (op.inputs if op.inputs is not None else [])]
        outs = [int(i) for i in (op.outputs if op.outputs is not None else [])]
        o = op.builtinOptions
        if name not in SUPPORTED_TFLITE_OPS:
            raise BlobError(f"{where}: op {name} is not supported by the C kernel "
                            f"(supported: {', '.join(SUPPORTED_TFLITE_OPS)})")
        if len(outs) != 1:
            raise BlobError(f"{where}: expected one output, got {len(outs)}")
        t_out = tensors[outs[0]]

        if name == "CONV_2D":
            if len(ins) not in (2, 3):
                raise BlobError(f"{where}: expected input, filter[, bias]")
            t_in, t_w = tensors[ins[0]], tensors[ins[1]]
            t_b = tensors[ins[2]] if len(ins) == 3 and ins[2] >= 0 else None
            _not_const(t_in, where)
            w_in, c_in = act(t_in, where)
            w_out, c_out = act(t_out, where)
            symmetric(where, t_in, t_out)
            if o is None or int(o.padding) != schema.Padding.VALID:
                raise BlobError(f"{where}: only VALID padding is supported")
            fused = _FUSED.get(int(o.fusedActivationFunction))
            if fused is None:
                raise BlobError(f"{where}: fused activation {int(o.fusedActivationFunction)} is not supported")
            qbt = getattr(o, "quantizedBiasType", 0)
            if qbt not in ((0, schema.TensorType.INT64) if s16 else (0, schema.TensorType.INT32)):
                raise BlobError(f"{where}: quantized bias type {qbt} is not supported")
            if t_w.dtype != _TFL_INT8 or not t_w.is_const or len(t_w.shape) != 4 or t_w.shape[1] != 1:
                raise BlobError(f"{where}: filter must be a constant int8 (C_out, 1, K, C_in) tensor, got "
                                f"type {t_w.dtype} shape {list(t_w.shape)}")
            if t_w.shape[0] != c_out or t_w.shape[3] != c_in:
                raise BlobError(f"{where}: filter shape {list(t_w.shape)} does not match {c_in} → {c_out} channels")
            k = t_w.shape[2]
            if t_w.scale is None or t_w.zero_point is None or np.any(t_w.zero_point != 0):
                raise BlobError(f"{where}: filter must be symmetrically quantised (zero points 0)")
            if t_w.scale.size not in (1, c_out) or (t_w.scale.size > 1 and t_w.quantized_dimension != 0):
                raise BlobError(f"{where}: filter scales must be per tensor or per output channel")
            stride, dil = int(o.strideW), int(o.dilationWFactor)
            if stride < 1 or dil < 1:
                raise BlobError(f"{where}: stride {stride} / dilation {dil} must be >= 1")
            if ref.conv_out_frames(w_in, k, stride, dil) != w_out:
                raise BlobError(f"{where}: output frames {w_out} != VALID conv of {w_in} frames (K={k}, s={stride}, d={dil})")
            si, zi = t_in.qparams()
            so, zo = t_out.qparams()
            fscales = np.broadcast_to(t_w.scale, (c_out,))
            mult, shift = ref.conv_multipliers(si, fscales, so)
            # The int64 requantisation (16x8) takes shifts up to 7 only (TFLite common.cc).
            if any(s > (7 if s16 else 30) or s < -31 for s in shift):
                raise BlobError(f"{where}: requantisation exponent out of range")
            bias_dtype = _TFL_INT64 if s16 else _TFL_INT32
            if t_b is not None:
                if t_b.dtype != bias_dtype or not t_b.is_const or t_b.data.size != c_out:
                    raise BlobError(f"{where}: bias must be a constant {_TYPE_NAMES[bias_dtype]} tensor of {c_out} "
                                    "values" + (" (LiteRT runs 16x8 convs with int32 bias through another kernel)"
                                                if s16 else ""))
                bias = t_b.data.astype(np.int64)
            else:
                bias = np.zeros(c_out, dtype=np.int64)
            amin, amax = ref.activation_range(fused, so, zo, bits)
            w = t_w.data.astype(np.int8).reshape(c_out, k, c_in)
            wb = w.tobytes()
            wb += b"\0" * (-len(wb) % 4)
            if s16:
                # |Σ x·w| <= K·C_in·2^22 and the int64 requantisation needs |acc| < 2^47 (TFLite's stated range).
                if np.any(np.abs(bias) > BIAS64_LIMIT):
                    raise BlobError(f"{where}: int64 bias beyond ±2^46 (the exact requantisation range)")
                bias_bytes = bias.astype("<i8").tobytes()
            else:
                bias_bytes = bias.astype("<i4").tobytes()
            data = wb + bias_bytes + np.asarray(mult, "<i4").tobytes() + np.asarray(shift, "<i4").tobytes()
            ops.append(_Op("CONV", [ins[0]], outs[0], dict(kernel=k, stride=stride, dilation=dil, input_zp=zi,
                                                            output_zp=zo, act_min=amin, act_max=amax,
                                                            rounding="double_away" if s16 else conv_rounding),
                           data, where))

        elif name == "PRELU":
            if s16:
                raise BlobError(f"{where}: PRELU has no int16 kernel in LiteRT; use LEAKY_RELU in a 16x8 graph")
            if len(ins) != 2:
                raise BlobError(f"{where}: expected input and alpha")
            t_in, t_a = tensors[ins[0]], tensors[ins[1]]
            _not_const(t_in, where)
            f_in, c = _flat_shape(t_in)
            if _flat_shape(t_out) != (f_in, c) or t_out.dtype != _TFL_INT8 or t_in.dtype != _TFL_INT8:
                raise BlobError(f"{where}: int8 input and output of equal shape required")
            if t_a.dtype != _TFL_INT8 or not t_a.is_const:
                raise BlobError(f"{where}: alpha must be a constant int8 tensor")
            if t_a.data.size not in (1, c) or (t_a.data.size == c and c > 1 and (not t_a.shape or t_a.shape[-1] != c)):
                raise BlobError(f"{where}: alpha of shape {list(t_a.shape)} does not broadcast per channel over {c} channels")
            si, zi = t_in.qparams()
            sa, za = t_a.qparams()
            so, zo = t_out.qparams()
            m1, s1, m2, s2 = ref.prelu_multipliers(si, sa, so)
            ops.append(_Op("PRELU", [ins[0]], outs[0], dict(input_zp=zi, alpha_zp=za, output_zp=zo, multiplier_pos=m1,
                                                             shift_pos=s1, multiplier_neg=m2, shift_neg=s2,
                                                             alpha_count=int(t_a.data.size)),
                           t_a.data.astype(np.int8).tobytes(), where))

        elif name == "LEAKY_RELU":
            # LiteRT's LEAKY_RELU: two multipliers (LeakyReluPrepare: float32 s_in / s_out and
            # s_in·alpha / s_out, QuantizeMultiplier) applied by the reference kernel's
            # MultiplyByQuantizedMultiplier. int8: a PRELU op with one alpha code of 1 (the slope in the
            # negative multiplier), run through lookup tables; int16: its own op.
            if len(ins) != 1:
                raise BlobError(f"{where}: expected one input")
            t_in = tensors[ins[0]]
            _not_const(t_in, where)
            f_in, c = _flat_shape(t_in)
            if _flat_shape(t_out) != (f_in, c) or t_out.dtype != act_dtype or t_in.dtype != act_dtype:
                raise BlobError(f"{where}: {tname} input and output of equal shape required")
            symmetric(where, t_in, t_out)
            alpha = float(getattr(o, "alpha", float("nan")))
            if not alpha >= 0:
                raise BlobError(f"{where}: negative slope {alpha} is not supported")
            si, zi = t_in.qparams()
            so, zo = t_out.qparams()
            m1, s1, m2, s2 = ref.prelu_multipliers(si, alpha, so)
            if s16:
                ops.append(_Op("LEAKY_RELU", [ins[0]], outs[0], dict(input_zp=0, output_zp=0, multiplier_identity=m1,
                                                                      shift_identity=s1, multiplier_alpha=m2,
                                                                      shift_alpha=s2), b"", where))
            else:
                ops.append(_Op("PRELU", [ins[0]], outs[0], dict(input_zp=zi, alpha_zp=0, output_zp=zo, multiplier_pos=m1,
                                                                 shift_pos=s1, multiplier_neg=m2, shift_neg=s2,
                                                                 alpha_count=1),
                               np.ones(1, np.int8).tobytes(), where))

        elif name == "ADD":
            if len(ins) != 2:
                raise BlobError(f"{where}: expected two inputs")
            t1, t2 = tensors[ins[0]], tensors[ins[1]]
            _not_const(t1, where)
            _not_const(t2, where)
            if t1.shape != t2.shape or _flat_shape(t1) != _flat_shape(t_out):
                raise BlobError(f"{where}: broadcasting ADD ({list(t1.shape)} + {list(t2.shape)}) is not supported")
            if not (t1.dtype == t2.dtype == t_out.dtype == act_dtype):
                raise BlobError(f"{where}: {tname} operands required")
            symmetric(where, t1, t2, t_out)
            fused = _FUSED.get(int(o.fusedActivationFunction)) if o is not None else "NONE"
            if fused is None:
                raise BlobError(f"{where}: fused activation {int(o.fusedActivationFunction)} is not supported")
            s1, z1 = t1.qparams()
            s2, z2 = t2.qparams()
            so, zo = t_out.qparams()
            if s16 and o is not None and getattr(o, "potScaleInt16", False) and all(_is_pot(v) for v in (s1, s2, so)):
                raise BlobError(f"{where}: int16 ADD with pot_scale_int16 and power-of-two scales takes TFLite's "
                                "shift-only kernel, which the C kernel does not implement")
            ls = _ADD_LEFT_SHIFT_S16 if s16 else _ADD_LEFT_SHIFT
            m1, e1, m2, e2, mo, eo = ref.add_multipliers(s1, s2, so, ls)
            amin, amax = ref.activation_range(fused, so, zo, bits)
            ops.append(_Op("ADD", [ins[0], ins[1]], outs[0], dict(input1_zp=z1, input2_zp=z2, output_zp=zo,
                                                                  left_shift=ls, multiplier1=m1, shift1=e1,
                                                                  multiplier2=m2, shift2=e2, multiplier_out=mo,
                                                                  shift_out=eo, act_min=amin, act_max=amax,
                                                                  mode=add_mode),
                           b"", where))

        elif name == "CONCATENATION":
            axis = int(o.axis) if o is not None else 0
            rank = len(t_out.shape)
            axis = axis + rank if axis < 0 else axis
            if axis != 2 or rank != 4:
                raise BlobError(f"{where}: only concatenation along time (axis 2 of NHWC) is supported, got axis {axis}")
            if _FUSED.get(int(o.fusedActivationFunction)) != "NONE":
                raise BlobError(f"{where}: fused activation on CONCATENATION is not supported")
            if not 1 <= len(ins) <= MAX_OP_INPUTS:
                raise BlobError(f"{where}: {len(ins)} inputs; at most {MAX_OP_INPUTS} supported")
            f_out, c_out = act(t_out, where)
            total = 0
            for i in ins:
                ti = tensors[i]
                _not_const(ti, where)
                f, c = act(ti, where)
                if c != c_out:
                    raise BlobError(f"{where}: operand {ti.name!r} has {c} channels, output {c_out}")
                _same_quant(ti, t_out, where)
                total += f
            if total != f_out:
                raise BlobError(f"{where}: operands sum to {total} frames, output has {f_out}")
            ops.append(_Op("CONCAT", ins, outs[0], {}, b"", where))

        elif name == "STRIDED_SLICE":
            if len(ins) != 4:
                raise BlobError(f"{where}: expected input, begin, end, strides")
            t_in = tensors[ins[0]]
            _not_const(t_in, where)
            if o is None or o.ellipsisMask or o.newAxisMask or o.shrinkAxisMask or getattr(o, "offset", False):
                raise BlobError(f"{where}: ellipsis/new-axis/shrink-axis masks and offset mode are not supported")
            b, e, s = (tensors[i] for i in ins[1:])
            if not (b.is_const and e.is_const and s.is_const):
                raise BlobError(f"{where}: begin/end/strides must be constants")
            f_in, c_in = act(t_in, where)
            rng = _strided_slice_range(t_in.shape, b.data, e.data, s.data, o)
            if rng[0] != (0, 1) or rng[1] != (0, 1) or rng[3] != (0, c_in):
                raise BlobError(f"{where}: only slices along time (axis 2) over whole frames are supported, got {rng}")
            start, stop = rng[2]
            f_out, c_out = act(t_out, where)
            if (f_out, c_out) != (stop - start, c_in) or f_out < 1:
                raise BlobError(f"{where}: output shape {list(t_out.shape)} does not match slice {rng}")
            _same_quant(t_in, t_out, where)
            ops.append(_Op("COPY", [ins[0]], outs[0], dict(src_offset=start * c_in * elem, bytes=f_out * c_in * elem),
                           b"", where))

        elif name == "RESHAPE":
            t_in = tensors[ins[0]]
            _not_const(t_in, where)
            if t_in.dtype != act_dtype or t_out.dtype != act_dtype:
                raise BlobError(f"{where}: {tname} tensors required")
            if int(np.prod(t_in.shape)) != int(np.prod(t_out.shape)):
                raise BlobError(f"{where}: element counts differ")
            _same_quant(t_in, t_out, where)
            alias[outs[0]] = alias.get(ins[0], ins[0])

    return ops, tensors, alias, sig_in, sig_out, bits


# =============================================================================== planning
def _readers(ops: list[_Op | None], t: int, root) -> list[int]:
    """Schedule positions of the ops reading tensor ``t``'s bytes (through any RESHAPE alias)."""
    return [i for i, op in enumerate(ops) if op is not None and any(root(a) == root(t) for a in op.inputs)]


def _plan(ops: list[_Op], tensors: list[_Tensor], alias: dict[int, int], sig_in: dict[str, int],
          sig_out: dict[str, int], bits: int = 8) -> dict[str, Any]:
    dtype, elem = ACT_TYPES[bits]
    if "x" not in sig_in or "y" not in sig_out:
        raise BlobError(f"signature needs input 'x' and output 'y' (has {sorted(sig_in)} → {sorted(sig_out)})")
    n_states = len([k for k in sig_in if k.startswith("state_in_")])
    for k in range(n_states):
        if f"state_in_{k:02d}" not in sig_in or f"state_out_{k:02d}" not in sig_out:
            raise BlobError(f"state pair {k:02d} is incomplete in the signature")
    if len(sig_in) != n_states + 1 or len(sig_out) != n_states + 1:
        raise BlobError(f"unexpected signature tensors: inputs {sorted(sig_in)}, outputs {sorted(sig_out)}")

    def root(t: int) -> int:
        return alias.get(t, t)

    x, y = sig_in["x"], sig_out["y"]
    fx, cx = _act_shape(tensors[x], "input x", dtype)
    fy, cy = _act_shape(tensors[y], "output y", dtype)
    if cx != 1 or cy != 1 or fx != fy:
        raise BlobError(f"x {list(tensors[x].shape)} and y {list(tensors[y].shape)} must both be (1, 1, block, 1)")
    producers = {op.output: i for i, op in enumerate(ops)}
    if root(y) not in producers and y not in producers:
        raise BlobError("output y is not computed by any op")

    state_in = [sig_in[f"state_in_{k:02d}"] for k in range(n_states)]
    state_out = [sig_out[f"state_out_{k:02d}"] for k in range(n_states)]
    for si, so in zip(state_in, state_out):
        fi, ci = _act_shape(tensors[si], "state input", dtype)
        if _flat_shape(tensors[so]) != (fi, ci):
            raise BlobError(f"state {tensors[si].name!r} {list(tensors[si].shape)} and its output "
                            f"{tensors[so].name!r} {list(tensors[so].shape)} differ in shape")
        _same_quant(tensors[si], tensors[so], "state feedback")

    # Write each new state straight into its state_in tensor.
    tail: list[_Op] = []
    for si, so in zip(state_in, state_out):
        p = producers.get(so)
        if p is not None and ops[p] is not None and ops[p].kind == "COPY" and not _readers(ops, so, root) \
                and so != y and so not in alias.values():
            op = ops[p]
            if all(r < p for r in _readers(ops, si, root)):
                op.output = si
                op.params = dict(op.params, state=True)
            else:
                op.output = si
                tail.append(op)
                ops[p] = None  # type: ignore[call-overload]
        else:
            f, c = _flat_shape(tensors[si])
            tail.append(_Op("COPY", [so], si, dict(src_offset=0, bytes=f * c * elem), b"", "state feedback"))
    ops = [op for op in ops if op is not None] + tail

    # Tensors used, renumbered: x, y, then in order of appearance.
    used: list[int] = [x, y]
    for op in ops:
        for t in [*op.inputs, op.output]:
            if t not in used:
                used.append(t)
    state_set = set(state_in)
    for t in used:
        if root(t) in state_set and t not in state_set:
            raise BlobError(f"tensor {tensors[t].name!r} aliases a state input; not supported")
    for op in ops:
        if root(op.output) in state_set and op.kind != "COPY":
            raise BlobError(f"{op.source}: writes a state input")

    def nbytes(t: int) -> int:
        f, c = _flat_shape(tensors[t])
        return f * c * elem

    # Lifetimes of scratch buffers (roots), in schedule positions; x defined at -1, y kept to the end.
    n = len(ops)
    start: dict[int, int] = {}
    end: dict[int, int] = {}
    size: dict[int, int] = {}
    for t in used:
        r = root(t)
        if r in state_set:
            continue
        size[r] = max(size.get(r, 0), nbytes(t))
    start[root(x)] = -1
    for i, op in enumerate(ops):
        r = root(op.output)
        if r not in state_set:
            start.setdefault(r, i)
        for a in op.inputs:
            ra = root(a)
            if ra not in state_set:
                end[ra] = max(end.get(ra, -1), i)
    end[root(y)] = n
    for r in size:
        if r not in start:
            raise BlobError(f"tensor {tensors[r].name!r} is read but never written")
        end.setdefault(r, start[r])

    # In-place elementwise ops: output joins the buffer of an input that dies there.
    buf_of: dict[int, int] = {r: r for r in size}
    members: dict[int, list[int]] = {r: [r] for r in size}
    b_start = dict(start)
    b_end = dict(end)
    for i, op in enumerate(ops):
        if op.kind not in ("PRELU", "ADD", "LEAKY_RELU"):
            continue
        ro = root(op.output)
        if ro in state_set or buf_of[ro] != ro or len(members[ro]) != 1:
            continue
        for a in op.inputs:
            ra = root(a)
            if ra in state_set:
                continue
            b = buf_of[ra]
            if b_end[b] == i and size[b] == size[ro] and b != ro:
                buf_of[ro] = b
                members[b].append(ro)
                del members[ro]
                b_end[b] = max(b_end[b], b_end.pop(ro))
                b_start.pop(ro)
                break

    # First-fit placement, biggest buffers first.
    placed: list[tuple[int, int, int, int]] = []  # (offset, size, start, end)
    offset_of: dict[int, int] = {}
    for b in sorted(members, key=lambda b: (-size[b], b_start[b])):
        lo, hi, sz = b_start[b], b_end[b], size[b]
        conflicts = sorted((o, s) for o, s, st, en in placed if not (en < lo or hi < st))
        off = 0
        for o, s in conflicts:
            if off + sz <= o:
                break
            off = max(off, -(-(o + s) // SCRATCH_ALIGN) * SCRATCH_ALIGN)
        offset_of[b] = off
        placed.append((off, sz, lo, hi))
    scratch_bytes = max((o + s for o, s, _, _ in placed), default=0)

    state_off: dict[int, int] = {}
    pos = 0
    for si in state_in:
        state_off[si] = pos
        pos = -(-(pos + nbytes(si)) // STATE_ALIGN) * STATE_ALIGN
    state_bytes = pos

    records = []
    index = {t: i for i, t in enumerate(used)}
    for t in used:
        r = root(t)
        f, c = _flat_shape(tensors[t])
        s, z = tensors[t].qparams()
        if r in state_set:
            records.append((REGION_STATE, state_off[r], f, c, z, s))
        else:
            records.append((REGION_SCRATCH, offset_of[buf_of[r]], f, c, z, s))
    return dict(ops=ops, tensor_records=records, index=index, x=index[x], y=index[y], block=fx,
                state_bytes=state_bytes, scratch_bytes=scratch_bytes,
                names=[tensors[t].name for t in used])


# ============================================================================ serialisation
def _op_words(op: _Op, index: dict[int, int], data_offset: int) -> list[int]:
    p = op.params
    words = [OP_CODES[op.kind], len(op.inputs)]
    ins = [index[i] for i in op.inputs] + [NO_TENSOR] * (MAX_OP_INPUTS - len(op.inputs))
    words += ins + [index[op.output], data_offset if op.data else 0, len(op.data)]
    if op.kind == "CONV":
        words += [p["kernel"], p["stride"], p["dilation"], p["input_zp"], p["output_zp"], p["act_min"], p["act_max"],
                  ref.ROUNDING_MODES[p["rounding"]]]
    elif op.kind == "PRELU":
        words += [p["input_zp"], p["alpha_zp"], p["output_zp"], p["multiplier_pos"], p["shift_pos"],
                  p["multiplier_neg"], p["shift_neg"], p["alpha_count"]]
    elif op.kind == "ADD":
        words += [p["input1_zp"], p["input2_zp"], p["output_zp"], p["left_shift"], p["multiplier1"], p["shift1"],
                  p["multiplier2"], p["shift2"], p["multiplier_out"], p["shift_out"], p["act_min"], p["act_max"],
                  ref.ADD_MODES[p["mode"]]]
    elif op.kind == "LEAKY_RELU":
        words += [p["input_zp"], p["output_zp"], p["multiplier_identity"], p["shift_identity"], p["multiplier_alpha"],
                  p["shift_alpha"]]
    elif op.kind == "COPY":
        words += [p["src_offset"], p["bytes"]]
    words += [0] * (OP_WORDS - len(words))
    return words


def _pack_words(words: list[int]) -> bytes:
    return b"".join(struct.pack("<I", w & 0xFFFFFFFF) for w in words)


def tflite_to_blob(tflite_bytes: bytes, *, target: str = "litert-x86") -> bytes:
    """The C-kernel blob of a full-integer step graph (``serving_default``: ``x``, ``state_in_NN`` → ``y``, ``state_out_NN``).

    The activation type is read off the graph: int8 (full-integer int8) or int16 (16x8: int16
    activations with zero point 0, int8 weights, int64 bias); the blob header records it.
    ``target`` names the LiteRT build whose arithmetic the blob reproduces bit for bit (:data:`TARGETS`;
    in a 16x8 graph only ADD differs between them: LiteRT's CONV_2D with int64 bias and its int16
    LEAKY_RELU are the reference kernels on every build). Raises :class:`BlobError` naming the op for
    anything the kernel cannot compute exactly.
    """
    if target not in TARGETS:
        raise BlobError(f"target {target!r}; expected one of {sorted(TARGETS)}")
    conv_rounding, add_mode = TARGETS[target]
    schema, model = _load(tflite_bytes)
    ops, tensors, alias, sig_in, sig_out, bits = _build_ir(schema, model, conv_rounding, add_mode)
    plan = _plan(ops, tensors, alias, sig_in, sig_out, bits)
    ops = plan["ops"]
    records = plan["tensor_records"]

    tensor_table = HEADER_BYTES
    op_table = tensor_table + TENSOR_BYTES * len(records)
    data_offset = op_table + OP_BYTES * len(ops)
    data = bytearray()
    op_blobs = []
    for op in ops:
        off = data_offset + len(data)
        op_blobs.append(_pack_words(_op_words(op, plan["index"], off)))
        data += op.data
        data += b"\0" * (-len(data) % 4)
    total = data_offset + len(data) + 4
    if total >= 1 << 32:
        raise BlobError("model too large for the blob format (4 GiB)")
    header = MAGIC + struct.pack("<15I", FORMAT_VERSION, HEADER_BYTES, total, len(records), len(ops), tensor_table,
                                 op_table, data_offset, len(data), plan["block"], plan["x"], plan["y"],
                                 plan["state_bytes"], plan["scratch_bytes"], bits)
    tbl = b"".join(struct.pack("<IIIIif8x", *r) for r in records)
    body = header + tbl + b"".join(op_blobs) + bytes(data)
    assert len(body) == total - 4
    return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)


# ================================================================================ reading
@dataclass
class BlobTensor:
    index: int
    region: int
    offset: int
    frames: int
    channels: int
    zero_point: int
    scale: float
    elem_bytes: int = 1       # 1 (int8) or 2 (int16), the blob's activation type

    @property
    def bytes(self) -> int:
        return self.frames * self.channels * self.elem_bytes

    @property
    def is_state(self) -> bool:
        return self.region == REGION_STATE


@dataclass
class BlobOp:
    kind: str
    inputs: list[int]
    output: int
    params: dict[str, Any]
    weights: np.ndarray | None = None     # CONV (C_out, K, C_in)
    bias: np.ndarray | None = None
    multiplier: np.ndarray | None = None
    shift: np.ndarray | None = None
    alpha: np.ndarray | None = None       # PRELU


@dataclass
class BlobModel:
    version: int
    block: int
    input_tensor: int
    output_tensor: int
    state_bytes: int
    scratch_bytes: int
    tensors: list[BlobTensor]
    ops: list[BlobOp]
    data_bytes: int
    blob_bytes: int
    crc32: int
    act_bits: int = 8         # activation type: 8 (int8) or 16 (16x8)
    extra: dict[str, Any] = field(default_factory=dict)

    def state_tensors(self) -> list[BlobTensor]:
        return [t for t in self.tensors if t.is_state]

    @property
    def param_bytes(self) -> int:
        """Arena bytes of the set-up tables (csrc/common/hx_blob.c): CONV 12 x C_out, ADD 2 x 256 int32,
        PRELU one byte per channel (4-aligned) + 256 bytes per distinct alpha value; in a 16x8 blob CONV
        16 x C_out (int64 bias, reduced multiplier, shift) and nothing else."""
        total = 0
        for op in self.ops:
            if self.act_bits == 16:
                total += 16 * self.tensors[op.output].channels if op.kind == "CONV" else 0
            elif op.kind == "CONV":
                total += 12 * self.tensors[op.output].channels
            elif op.kind == "ADD":
                total += ADD_TABLE_BYTES
            elif op.kind == "PRELU":
                c = self.tensors[op.inputs[0]].channels
                total += -(-c // 4) * 4 + 256 * len(set(op.alpha.tolist()))
        return total

    @property
    def arena_bytes(self) -> int:
        """What ``hx_model_state_size`` reports (same formula as csrc/common/hx_blob.c)."""
        a = lambda v: -(-v // ARENA_ALIGN) * ARENA_ALIGN  # noqa: E731
        return ARENA_ALIGN + a(self.state_bytes) + a(self.scratch_bytes) + a(self.param_bytes) + OP_SLOT_BYTES * len(self.ops)


def parse_blob(blob: bytes) -> BlobModel:
    """Decode (and check magic, version, length, CRC, table bounds of) a blob."""
    b = bytes(blob)
    if len(b) < HEADER_BYTES + 4:
        raise BlobError(f"blob truncated: {len(b)} bytes")
    if b[:4] != MAGIC:
        raise BlobError(f"bad magic {b[:4]!r}; not an hx kernel blob")
    h = struct.unpack_from("<15I", b, 4)
    (version, header_bytes, total, n_t, n_o, t_tab, o_tab, d_off, d_len, block, x, y, st_b, sc_b, bits) = h
    if version != FORMAT_VERSION:
        raise BlobError(f"blob format version {version}; this toolchain reads {FORMAT_VERSION}")
    if bits not in ACT_TYPES:
        raise BlobError(f"blob activation type {bits} bits; expected one of {sorted(ACT_TYPES)}")
    elem = ACT_TYPES[bits][1]
    if total > len(b):
        raise BlobError(f"blob truncated: header says {total} bytes, have {len(b)}")
    if header_bytes != HEADER_BYTES or total < HEADER_BYTES + 4:
        raise BlobError("malformed blob header")
    crc = struct.unpack_from("<I", b, total - 4)[0]
    if zlib.crc32(b[:total - 4]) & 0xFFFFFFFF != crc:
        raise BlobError("blob checksum mismatch")
    if t_tab + n_t * TENSOR_BYTES > total - 4 or o_tab + n_o * OP_BYTES > total - 4 or d_off + d_len > total - 4:
        raise BlobError("malformed blob: tables outside the blob")
    tensors = []
    for i in range(n_t):
        region, off, f, c, z, s = struct.unpack_from("<IIIIif", b, t_tab + i * TENSOR_BYTES)
        tensors.append(BlobTensor(i, region, off, f, c, z, float(s), elem))
    ops = []
    for i in range(n_o):
        w = struct.unpack_from(f"<{OP_WORDS}i", b, o_tab + i * OP_BYTES)
        kind = OP_NAMES.get(w[0])
        if kind is None:
            raise BlobError(f"op {i}: unknown type {w[0]}")
        n_in = w[1]
        if not 1 <= n_in <= MAX_OP_INPUTS:
            raise BlobError(f"op {i}: {n_in} inputs")
        ins = [int(v) & 0xFFFFFFFF for v in w[2:2 + n_in]]
        out = int(w[6]) & 0xFFFFFFFF
        if any(t >= n_t for t in [*ins, out]):
            raise BlobError(f"op {i}: tensor id out of range")
        doff, dlen = int(w[7]) & 0xFFFFFFFF, int(w[8]) & 0xFFFFFFFF
        data = b[doff:doff + dlen]
        P = w[9:]
        op = BlobOp(kind, ins, out, {})
        if kind == "CONV":
            names = ("kernel", "stride", "dilation", "input_zp", "output_zp", "act_min", "act_max", "rounding")
            op.params = dict(zip(names, P[:8]))
            op.params["rounding"] = {v: k for k, v in ref.ROUNDING_MODES.items()}[op.params["rounding"]]
            c_in, c_out, k = tensors[ins[0]].channels, tensors[out].channels, op.params["kernel"]
            wb = c_out * k * c_in
            op.weights = np.frombuffer(data[:wb], dtype=np.int8).reshape(c_out, k, c_in)
            a = -(-wb // 4) * 4
            if bits == 16:
                op.bias = np.frombuffer(data[a:a + 8 * c_out], dtype="<i8").astype(np.int64)
                a += 8 * c_out
            else:
                op.bias = np.frombuffer(data[a:a + 4 * c_out], dtype="<i4").astype(np.int64)
                a += 4 * c_out
            arr = np.frombuffer(data[a:a + 8 * c_out], dtype="<i4").astype(np.int64)
            op.multiplier, op.shift = arr[:c_out], arr[c_out:]
        elif kind == "PRELU":
            names = ("input_zp", "alpha_zp", "output_zp", "multiplier_pos", "shift_pos", "multiplier_neg", "shift_neg",
                     "alpha_count")
            op.params = dict(zip(names, P[:8]))
            op.alpha = np.frombuffer(data[:op.params["alpha_count"]], dtype=np.int8)
        elif kind == "ADD":
            names = ("input1_zp", "input2_zp", "output_zp", "left_shift", "multiplier1", "shift1", "multiplier2",
                     "shift2", "multiplier_out", "shift_out", "act_min", "act_max", "mode")
            op.params = dict(zip(names, P[:13]))
            op.params["mode"] = {v: k for k, v in ref.ADD_MODES.items()}[op.params["mode"]]
        elif kind == "LEAKY_RELU":
            names = ("input_zp", "output_zp", "multiplier_identity", "shift_identity", "multiplier_alpha", "shift_alpha")
            op.params = dict(zip(names, P[:6]))
        elif kind == "COPY":
            op.params = dict(src_offset=P[0], bytes=P[1])
        ops.append(op)
    return BlobModel(version, block, x, y, st_b, sc_b, tensors, ops, d_len, total, crc, bits)


def describe_blob(blob: bytes) -> dict[str, Any]:
    """Summary of a blob: sizes (arena, state, scratch, weights), op counts, I/O quantisation."""
    m = parse_blob(blob)
    counts: dict[str, int] = {}
    for op in m.ops:
        counts[op.kind] = counts.get(op.kind, 0) + 1
    int8_weights = sum(op.weights.size for op in m.ops if op.weights is not None) + \
        sum(op.alpha.size for op in m.ops if op.alpha is not None)
    macs = sum(m.tensors[op.output].frames * op.weights.size for op in m.ops if op.kind == "CONV")
    tin, tout = m.tensors[m.input_tensor], m.tensors[m.output_tensor]
    rounding = sorted({op.params["rounding"] for op in m.ops if op.kind == "CONV"})
    add_modes = sorted({op.params["mode"] for op in m.ops if op.kind == "ADD"})
    if m.act_bits == 16:
        # One CONV arithmetic on every LiteRT build, and the same ADD on x86 and ARM: a 16x8 blob is
        # either "litert" (any LiteRT build) or "tflite-reference".
        rounding = []
        target = {(): ["litert"], ("vector16",): ["litert"], ("reference",): ["tflite-reference"]}.get(tuple(add_modes), [])
    else:
        target = [t for t, (c, a) in TARGETS.items() if [c] == rounding and [a] == add_modes]
    return {
        "format_version": m.version,
        "act_bits": m.act_bits,
        "act_dtype": "int16" if m.act_bits == 16 else "int8",
        "blob_bytes": m.blob_bytes,
        "crc32": f"{m.crc32:08x}",
        "block": m.block,
        "arena_bytes": m.arena_bytes,
        "state_bytes": m.state_bytes,
        "scratch_bytes": m.scratch_bytes,
        "param_bytes": m.param_bytes,
        "weight_bytes": m.data_bytes,
        "int8_weight_bytes": int(int8_weights),
        "macs_per_block": int(macs),
        "n_tensors": len(m.tensors),
        "n_states": len(m.state_tensors()),
        "op_counts": counts,
        "target": target[0] if target else None,
        "conv_rounding": rounding,
        "add_mode": add_modes,
        "input_quant": {"scale": tin.scale, "zero_point": tin.zero_point},
        "output_quant": {"scale": tout.scale, "zero_point": tout.zero_point},
    }


_C_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def blob_to_c_header(blob: bytes, name: str) -> str:
    """A C header defining ``const uint8_t <name>[]`` (16-byte aligned on GCC/Clang) and ``<NAME>_LEN``."""
    if not _C_IDENT.match(name or ""):
        raise ValueError(f"{name!r} is not a C identifier")
    m = parse_blob(blob)
    data = bytes(blob)[:m.blob_bytes]
    guard = f"HX_BLOB_{name.upper()}_H"
    lines = [
        f"/* Generated by toolchain.export.ckernel: hx kernel blob, format {m.version}, {len(data)} bytes,",
        f" * crc32 {m.crc32:08x}, block {m.block}, arena {m.arena_bytes} bytes. Do not edit. */",
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        "#include <stdint.h>",
        "",
        f"#define {name.upper()}_LEN {len(data)}u",
        f"#define {name.upper()}_ARENA_BYTES {m.arena_bytes}u",
        "",
        "#if defined(__GNUC__) || defined(__clang__)",
        f"static const uint8_t {name}[{name.upper()}_LEN] __attribute__((aligned(16))) = {{",
        "#else",
        f"static const uint8_t {name}[{name.upper()}_LEN] = {{",
        "#endif",
    ]
    for i in range(0, len(data), 16):
        lines.append("    " + ", ".join(f"0x{v:02x}" for v in data[i:i + 16]) + ",")
    lines += ["};", "", f"#endif /* {guard} */", ""]
    return "\n".join(lines)


__all__ = ["BlobError", "BlobModel", "BlobOp", "BlobTensor", "FORMAT_VERSION", "MAGIC", "SUPPORTED_TFLITE_OPS", "TARGETS",
           "blob_to_c_header", "describe_blob", "parse_blob", "tflite_to_blob"]
