"""Full-integer TFLite step graph → C-kernel blob (``csrc/``), C header, and blob inspection.

:func:`tflite_to_blob` reads an int8 or 16x8 ``.tflite`` (:mod:`.tflite_reader`), lowers each op to
the C kernel's (:mod:`.lowering`, one module per op as in csrc/ref/), plans the arena
(:mod:`.memory_plan`) and encodes the versioned binary (:mod:`.format`, which also parses it);
:mod:`.header` writes it as a C array, :mod:`.numpy_ref` runs it in numpy.

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

from toolchain.export.ckernel.format import (
    FORMAT_VERSION,
    MAGIC,
    TARGETS,
    BlobError,
    BlobModel,
    BlobOp,
    BlobTensor,
    describe_blob,
    encode_blob,
    parse_blob,
)
from toolchain.export.ckernel.header import blob_to_c_header
from toolchain.export.ckernel.lowering import SUPPORTED_TFLITE_OPS, lower_graph
from toolchain.export.ckernel.memory_plan import plan
from toolchain.export.ckernel.tflite_reader import read_tflite


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
    graph = read_tflite(tflite_bytes)
    ops, lowered = lower_graph(graph, conv_rounding, add_mode)
    p = plan(ops, graph.tensors, lowered.alias, graph.sig_in, graph.sig_out, lowered.bits)
    return encode_blob(p.ops, p.tensor_records, p.index, block=p.block, input_tensor=p.x, output_tensor=p.y,
                       state_bytes=p.state_bytes, scratch_bytes=p.scratch_bytes, act_bits=lowered.bits)


__all__ = ["BlobError", "BlobModel", "BlobOp", "BlobTensor", "FORMAT_VERSION", "MAGIC", "SUPPORTED_TFLITE_OPS", "TARGETS",
           "blob_to_c_header", "describe_blob", "parse_blob", "tflite_to_blob"]
