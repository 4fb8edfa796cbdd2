"""STRIDED_SLICE along time (whole frames, stride 1) → a COPY op of a contiguous byte range: csrc's
hx_slice_s8 and hx_slice_s16."""

from __future__ import annotations

from typing import Any

from toolchain.export.ckernel.format import BlobError, Op
from toolchain.export.ckernel.lowering.common import Lowering
from toolchain.export.ckernel.tflite_reader import TfliteOperator, not_const, same_quant

TFLITE_OP = "STRIDED_SLICE"


def strided_slice_range(shape: tuple[int, ...], begin: Any, end: Any, strides: Any, opts: Any) -> list[tuple[int, int]]:
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


def lower(g: Lowering, op: TfliteOperator) -> Op:
    where, ins, outs, o = op.where, op.inputs, op.outputs, op.options
    t_out = g.tensors[outs[0]]
    if len(ins) != 4:
        raise BlobError(f"{where}: expected input, begin, end, strides")
    t_in = g.tensors[ins[0]]
    not_const(t_in, where)
    if o is None or o.ellipsisMask or o.newAxisMask or o.shrinkAxisMask or getattr(o, "offset", False):
        raise BlobError(f"{where}: ellipsis/new-axis/shrink-axis masks and offset mode are not supported")
    b, e, s = (g.tensors[i] for i in ins[1:])
    if not (b.is_const and e.is_const and s.is_const):
        raise BlobError(f"{where}: begin/end/strides must be constants")
    f_in, c_in = g.act(t_in, where)
    rng = strided_slice_range(t_in.shape, b.data, e.data, s.data, o)
    if rng[0] != (0, 1) or rng[1] != (0, 1) or rng[3] != (0, c_in):
        raise BlobError(f"{where}: only slices along time (axis 2) over whole frames are supported, got {rng}")
    start, stop = rng[2]
    f_out, c_out = g.act(t_out, where)
    if (f_out, c_out) != (stop - start, c_in) or f_out < 1:
        raise BlobError(f"{where}: output shape {list(t_out.shape)} does not match slice {rng}")
    same_quant(t_in, t_out, where)
    return Op("COPY", [ins[0]], outs[0], dict(src_offset=start * c_in * g.elem, bytes=f_out * c_in * g.elem),
              b"", where)
