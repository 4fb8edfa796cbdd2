"""CONCATENATION along time → a CONCAT op (byte concatenation): csrc's hx_concat_s8 and hx_concat_s16."""

from __future__ import annotations

from toolchain.export.ckernel.format import MAX_OP_INPUTS, BlobError, Op
from toolchain.export.ckernel.lowering.common import FUSED, Lowering
from toolchain.export.ckernel.tflite_reader import TfliteOperator, not_const, same_quant

TFLITE_OP = "CONCATENATION"


def lower(g: Lowering, op: TfliteOperator) -> Op:
    where, ins, outs, o = op.where, op.inputs, op.outputs, op.options
    t_out = g.tensors[outs[0]]
    axis = int(o.axis) if o is not None else 0
    rank = len(t_out.shape)
    axis = axis + rank if axis < 0 else axis
    if axis != 2 or rank != 4:
        raise BlobError(f"{where}: only concatenation along time (axis 2 of NHWC) is supported, got axis {axis}")
    if FUSED.get(int(o.fusedActivationFunction)) != "NONE":
        raise BlobError(f"{where}: fused activation on CONCATENATION is not supported")
    if not 1 <= len(ins) <= MAX_OP_INPUTS:
        raise BlobError(f"{where}: {len(ins)} inputs; at most {MAX_OP_INPUTS} supported")
    f_out, c_out = g.act(t_out, where)
    total = 0
    for i in ins:
        ti = g.tensors[i]
        not_const(ti, where)
        f, c = g.act(ti, where)
        if c != c_out:
            raise BlobError(f"{where}: operand {ti.name!r} has {c} channels, output {c_out}")
        same_quant(ti, t_out, where)
        total += f
    if total != f_out:
        raise BlobError(f"{where}: operands sum to {total} frames, output has {f_out}")
    return Op("CONCAT", ins, outs[0], {}, b"", where)
