"""LEAKY_RELU → csrc's hx_leaky_relu_s16 (16x8), or, in an int8 graph, a PRELU op (hx_prelu_s8).

LiteRT's LEAKY_RELU: two multipliers (LeakyReluPrepare: float32 s_in / s_out and s_in·alpha / s_out,
QuantizeMultiplier) applied by the reference kernel's MultiplyByQuantizedMultiplier. int8: a PRELU op
with one alpha code of 1 (the slope in the negative multiplier), run through lookup tables; int16:
its own op.
"""

from __future__ import annotations

import numpy as np

from toolchain.export.ckernel import numpy_ref as ref
from toolchain.export.ckernel.format import BlobError, Op
from toolchain.export.ckernel.lowering.common import Lowering
from toolchain.export.ckernel.tflite_reader import TfliteOperator, flat_shape, not_const

TFLITE_OP = "LEAKY_RELU"


def lower(g: Lowering, op: TfliteOperator) -> Op:
    where, ins, outs, o = op.where, op.inputs, op.outputs, op.options
    t_out = g.tensors[outs[0]]
    if len(ins) != 1:
        raise BlobError(f"{where}: expected one input")
    t_in = g.tensors[ins[0]]
    not_const(t_in, where)
    f_in, c = flat_shape(t_in)
    if flat_shape(t_out) != (f_in, c) or t_out.dtype != g.act_dtype or t_in.dtype != g.act_dtype:
        raise BlobError(f"{where}: {g.tname} input and output of equal shape required")
    g.symmetric(where, t_in, t_out)
    alpha = float(getattr(o, "alpha", float("nan")))
    if not alpha >= 0:
        raise BlobError(f"{where}: negative slope {alpha} is not supported")
    si, zi = t_in.qparams()
    so, zo = t_out.qparams()
    m1, s1, m2, s2 = ref.prelu_multipliers(si, alpha, so)
    if g.s16:
        return Op("LEAKY_RELU", [ins[0]], outs[0], dict(input_zp=0, output_zp=0, multiplier_identity=m1,
                                                        shift_identity=s1, multiplier_alpha=m2, shift_alpha=s2),
                  b"", where)
    return Op("PRELU", [ins[0]], outs[0], dict(input_zp=zi, alpha_zp=0, output_zp=zo, multiplier_pos=m1,
                                               shift_pos=s1, multiplier_neg=m2, shift_neg=s2, alpha_count=1),
              np.ones(1, np.int8).tobytes(), where)
