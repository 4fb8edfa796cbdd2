"""RESHAPE → no op: its output is an alias of its input's bytes (csrc has no reshape kernel)."""

from __future__ import annotations

import numpy as np

from toolchain.export.ckernel.format import BlobError, Op
from toolchain.export.ckernel.lowering.common import Lowering
from toolchain.export.ckernel.tflite_reader import TfliteOperator, not_const, same_quant

TFLITE_OP = "RESHAPE"


def lower(g: Lowering, op: TfliteOperator) -> Op | None:
    where, ins, outs = op.where, op.inputs, op.outputs
    t_out = g.tensors[outs[0]]
    t_in = g.tensors[ins[0]]
    not_const(t_in, where)
    if t_in.dtype != g.act_dtype or t_out.dtype != g.act_dtype:
        raise BlobError(f"{where}: {g.tname} tensors required")
    if int(np.prod(t_in.shape)) != int(np.prod(t_out.shape)):
        raise BlobError(f"{where}: element counts differ")
    same_quant(t_in, t_out, where)
    g.alias[outs[0]] = g.alias.get(ins[0], ins[0])
    return None
