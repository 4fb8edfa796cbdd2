"""CONV_2D (1-D VALID, H = 1) → a CONV op: csrc's hx_conv_s8 (int8) and hx_conv_s16 (16x8).

The fixed-point multipliers are computed on the host exactly as LiteRT's Prepare does. Data:
weights[C_out][K][C_in] int8, zero pad to 4, bias[C_out] (int32; 16x8: int64), multiplier[C_out],
shift[C_out] int32.
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from toolchain.export.ckernel import numpy_ref as ref
from toolchain.export.ckernel.format import BIAS64_LIMIT, BlobError, Op
from toolchain.export.ckernel.lowering.common import FUSED, Lowering
from toolchain.export.ckernel.tflite_reader import TFL_INT8, TFL_INT32, TFL_INT64, TYPE_NAMES, TfliteOperator, not_const

TFLITE_OP = "CONV_2D"


def lower(g: Lowering, op: TfliteOperator) -> Op:
    where, ins, outs, o = op.where, op.inputs, op.outputs, op.options
    t_out = g.tensors[outs[0]]
    if len(ins) not in (2, 3):
        raise BlobError(f"{where}: expected input, filter[, bias]")
    t_in, t_w = g.tensors[ins[0]], g.tensors[ins[1]]
    t_b = g.tensors[ins[2]] if len(ins) == 3 and ins[2] >= 0 else None
    not_const(t_in, where)
    w_in, c_in = g.act(t_in, where)
    w_out, c_out = g.act(t_out, where)
    g.symmetric(where, t_in, t_out)
    if o is None or int(o.padding) != schema.Padding.VALID:
        raise BlobError(f"{where}: only VALID padding is supported")
    fused = FUSED.get(int(o.fusedActivationFunction))
    if fused is None:
        raise BlobError(f"{where}: fused activation {int(o.fusedActivationFunction)} is not supported")
    qbt = getattr(o, "quantizedBiasType", 0)
    if qbt not in ((0, schema.TensorType.INT64) if g.s16 else (0, schema.TensorType.INT32)):
        raise BlobError(f"{where}: quantized bias type {qbt} is not supported")
    if t_w.dtype != TFL_INT8 or not t_w.is_const or len(t_w.shape) != 4 or t_w.shape[1] != 1:
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
    if any(s > (7 if g.s16 else 30) or s < -31 for s in shift):
        raise BlobError(f"{where}: requantisation exponent out of range")
    bias_dtype = TFL_INT64 if g.s16 else TFL_INT32
    if t_b is not None:
        if t_b.dtype != bias_dtype or not t_b.is_const or t_b.data.size != c_out:
            raise BlobError(f"{where}: bias must be a constant {TYPE_NAMES[bias_dtype]} tensor of {c_out} "
                            "values" + (" (LiteRT runs 16x8 convs with int32 bias through another kernel)"
                                        if g.s16 else ""))
        bias = t_b.data.astype(np.int64)
    else:
        bias = np.zeros(c_out, dtype=np.int64)
    amin, amax = ref.activation_range(fused, so, zo, g.bits)
    w = t_w.data.astype(np.int8).reshape(c_out, k, c_in)
    wb = w.tobytes()
    wb += b"\0" * (-len(wb) % 4)
    if g.s16:
        # |Σ x·w| <= K·C_in·2^22 and the int64 requantisation needs |acc| < 2^47 (TFLite's stated range).
        if np.any(np.abs(bias) > BIAS64_LIMIT):
            raise BlobError(f"{where}: int64 bias beyond ±2^46 (the exact requantisation range)")
        bias_bytes = bias.astype("<i8").tobytes()
    else:
        bias_bytes = bias.astype("<i4").tobytes()
    data = wb + bias_bytes + np.asarray(mult, "<i4").tobytes() + np.asarray(shift, "<i4").tobytes()
    return Op("CONV", [ins[0]], outs[0], dict(kernel=k, stride=stride, dilation=dil, input_zp=zi, output_zp=zo,
                                              act_min=amin, act_max=amax,
                                              rounding="double_away" if g.s16 else g.conv_rounding),
              data, where)
