"""TFLite ops → C-kernel ops, one module per op mirroring csrc/ref's files (conv, prelu, leaky_relu,
add, concat, slice; reshape is an alias, no kernel). Each module's ``lower`` checks that the op, its
options and quantisation are ones the C kernel computes exactly (raising :class:`BlobError` naming the
op otherwise) and returns the :class:`Op` to encode; the int8 and 16x8 forms of an op live together.
"""

from __future__ import annotations

from typing import Callable

from toolchain.export.ckernel.format import ACT_ELEM_BYTES, BlobError, Op
from toolchain.export.ckernel.lowering import add, concat, conv, leaky_relu, prelu, reshape
from toolchain.export.ckernel.lowering import slice as strided_slice
from toolchain.export.ckernel.lowering.common import Lowering
from toolchain.export.ckernel.tflite_reader import ACT_TFLITE_TYPES, TYPE_NAMES, TfliteGraph, TfliteOperator

#: Lowering of each supported TFLite op, in the order error messages list them.
LOWERINGS: dict[str, Callable[[Lowering, TfliteOperator], Op | None]] = {
    m.TFLITE_OP: m.lower for m in (conv, prelu, leaky_relu, add, concat, strided_slice, reshape)
}
SUPPORTED_TFLITE_OPS = tuple(LOWERINGS)


def lower_graph(graph: TfliteGraph, conv_rounding: str, add_mode: str) -> tuple[list[Op], Lowering]:
    """The graph as C-kernel ops (in TFLite's order) and the lowering state (activation width read off
    the input ``x``, RESHAPE aliases)."""
    sig_in = graph.sig_in
    if "x" not in sig_in:
        raise BlobError(f"signature needs input 'x' (has {sorted(sig_in)})")
    act_dtype = graph.tensors[sig_in["x"]].dtype
    bits = {v: k for k, v in ACT_TFLITE_TYPES.items()}.get(act_dtype)
    if bits is None:
        raise BlobError(f"input x is {TYPE_NAMES.get(act_dtype, act_dtype)}; the C kernel runs int8 and 16x8 "
                        "(int16 activations) graphs")
    g = Lowering(graph.tensors, act_dtype, bits, ACT_ELEM_BYTES[bits], conv_rounding, add_mode)
    ops: list[Op] = []
    for op in graph.operators:
        if op.name not in LOWERINGS:
            raise BlobError(f"{op.where}: op {op.name} is not supported by the C kernel "
                            f"(supported: {', '.join(SUPPORTED_TFLITE_OPS)})")
        if len(op.outputs) != 1:
            raise BlobError(f"{op.where}: expected one output, got {len(op.outputs)}")
        lowered = LOWERINGS[op.name](g, op)
        if lowered is not None:
            ops.append(lowered)
    return ops, g
