"""ADD (equal shapes, general rescaling) → an ADD op: csrc's hx_add_s8 and hx_add_s16.

The target picks the arithmetic (format.ADD_MODES): LiteRT's optimized kernel on 16-element chunks
or TFLite's reference kernel.
"""

from __future__ import annotations

import math

from toolchain.export.ckernel import numpy_ref as ref
from toolchain.export.ckernel.format import BlobError, Op
from toolchain.export.ckernel.lowering.common import FUSED, Lowering
from toolchain.export.ckernel.tflite_reader import TfliteOperator, flat_shape, not_const

TFLITE_OP = "ADD"
LEFT_SHIFT_S8 = 20  # TFLite add.cc, 8-bit path
LEFT_SHIFT_S16 = 15  # TFLite add.cc, 16-bit general-scale path


def _is_pot(scale: float) -> bool:
    """TFLite's CheckedLog2: a scale within 1e-3 (in log2) of a power of two."""
    v = math.log2(float(scale))
    return abs(v - round(v)) < 1e-3


def lower(g: Lowering, op: TfliteOperator) -> Op:
    where, ins, outs, o = op.where, op.inputs, op.outputs, op.options
    t_out = g.tensors[outs[0]]
    if len(ins) != 2:
        raise BlobError(f"{where}: expected two inputs")
    t1, t2 = g.tensors[ins[0]], g.tensors[ins[1]]
    not_const(t1, where)
    not_const(t2, where)
    if t1.shape != t2.shape or flat_shape(t1) != flat_shape(t_out):
        raise BlobError(f"{where}: broadcasting ADD ({list(t1.shape)} + {list(t2.shape)}) is not supported")
    if not (t1.dtype == t2.dtype == t_out.dtype == g.act_dtype):
        raise BlobError(f"{where}: {g.tname} operands required")
    g.symmetric(where, t1, t2, t_out)
    fused = FUSED.get(int(o.fusedActivationFunction)) if o is not None else "NONE"
    if fused is None:
        raise BlobError(f"{where}: fused activation {int(o.fusedActivationFunction)} is not supported")
    s1, z1 = t1.qparams()
    s2, z2 = t2.qparams()
    so, zo = t_out.qparams()
    if g.s16 and o is not None and getattr(o, "potScaleInt16", False) and all(_is_pot(v) for v in (s1, s2, so)):
        raise BlobError(f"{where}: int16 ADD with pot_scale_int16 and power-of-two scales takes TFLite's "
                        "shift-only kernel, which the C kernel does not implement")
    ls = LEFT_SHIFT_S16 if g.s16 else LEFT_SHIFT_S8
    m1, e1, m2, e2, mo, eo = ref.add_multipliers(s1, s2, so, ls)
    amin, amax = ref.activation_range(fused, so, zo, g.bits)
    return Op("ADD", [ins[0], ins[1]], outs[0], dict(input1_zp=z1, input2_zp=z2, output_zp=zo, left_shift=ls,
                                                     multiplier1=m1, shift1=e1, multiplier2=m2, shift2=e2,
                                                     multiplier_out=mo, shift_out=eo, act_min=amin, act_max=amax,
                                                     mode=g.add_mode),
              b"", where)
