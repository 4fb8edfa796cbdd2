"""PRELU → a PRELU op (int8 only: LiteRT has no int16 PRELU): csrc's hx_prelu_s8, run through the
lookup tables of hx_lut_s8. Data: alpha[alpha_count] int8."""

from __future__ import annotations

import numpy as np

from toolchain.export.ckernel import numpy_ref as ref
from toolchain.export.ckernel.format import BlobError, Op
from toolchain.export.ckernel.lowering.common import Lowering
from toolchain.export.ckernel.tflite_reader import TFL_INT8, TfliteOperator, flat_shape, not_const

TFLITE_OP = "PRELU"


def lower(g: Lowering, op: TfliteOperator) -> Op:
    where, ins, outs = op.where, op.inputs, op.outputs
    t_out = g.tensors[outs[0]]
    if g.s16:
        raise BlobError(f"{where}: PRELU has no int16 kernel in LiteRT; use LEAKY_RELU in a 16x8 graph")
    if len(ins) != 2:
        raise BlobError(f"{where}: expected input and alpha")
    t_in, t_a = g.tensors[ins[0]], g.tensors[ins[1]]
    not_const(t_in, where)
    f_in, c = flat_shape(t_in)
    if flat_shape(t_out) != (f_in, c) or t_out.dtype != TFL_INT8 or t_in.dtype != TFL_INT8:
        raise BlobError(f"{where}: int8 input and output of equal shape required")
    if t_a.dtype != TFL_INT8 or not t_a.is_const:
        raise BlobError(f"{where}: alpha must be a constant int8 tensor")
    if t_a.data.size not in (1, c) or (t_a.data.size == c and c > 1 and (not t_a.shape or t_a.shape[-1] != c)):
        raise BlobError(f"{where}: alpha of shape {list(t_a.shape)} does not broadcast per channel over {c} channels")
    si, zi = t_in.qparams()
    sa, za = t_a.qparams()
    so, zo = t_out.qparams()
    m1, s1, m2, s2 = ref.prelu_multipliers(si, sa, so)
    return Op("PRELU", [ins[0]], outs[0], dict(input_zp=zi, alpha_zp=za, output_zp=zo, multiplier_pos=m1,
                                               shift_pos=s1, multiplier_neg=m2, shift_neg=s2,
                                               alpha_count=int(t_a.data.size)),
              t_a.data.astype(np.int8).tobytes(), where)
