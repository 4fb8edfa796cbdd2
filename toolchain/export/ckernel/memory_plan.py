"""Arena planning: where every tensor of a lowered graph lives, and the final op schedule.

The executor state is explicit: each ``state_in_NN`` is a tensor in the persistent *state*
region; the graph's ``state_out_NN`` (a STRIDED_SLICE of the concatenated history) is written
straight back into it by a COPY op placed after the state's last reader. Everything else lives
in the *scratch* region, planned by lifetime (elementwise ops run in place when their input dies,
then first-fit placement, biggest buffers first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from toolchain.export.ckernel.format import ACT_ELEM_BYTES, REGION_SCRATCH, REGION_STATE, BlobError, Op
from toolchain.export.ckernel.tflite_reader import ACT_TFLITE_TYPES, TfliteTensor, act_shape, flat_shape, same_quant

SCRATCH_ALIGN = 16
STATE_ALIGN = 4


@dataclass
class MemoryPlan:
    """The planned schedule: ``ops`` with tensor ids of the .tflite, ``index`` renumbering them into the
    blob's tensor table ``tensor_records`` (region, offset, frames, channels, zero point, scale)."""

    ops: list[Op]
    tensor_records: list[tuple[int, int, int, int, int, float]]
    index: dict[int, int]
    x: int
    y: int
    block: int
    state_bytes: int
    scratch_bytes: int
    names: list[str]


def readers(ops: list[Op | None], t: int, root: Callable[[int], int]) -> list[int]:
    """Schedule positions of the ops reading tensor ``t``'s bytes (through any RESHAPE alias)."""
    return [i for i, op in enumerate(ops) if op is not None and any(root(a) == root(t) for a in op.inputs)]


def plan(ops: list[Op], tensors: list[TfliteTensor], alias: dict[int, int], sig_in: dict[str, int],
         sig_out: dict[str, int], bits: int = 8) -> MemoryPlan:
    """Schedule, tensor table and region sizes of a lowered graph (see the module docstring)."""
    dtype, elem = ACT_TFLITE_TYPES[bits], ACT_ELEM_BYTES[bits]
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
    fx, cx = act_shape(tensors[x], "input x", dtype)
    fy, cy = act_shape(tensors[y], "output y", dtype)
    if cx != 1 or cy != 1 or fx != fy:
        raise BlobError(f"x {list(tensors[x].shape)} and y {list(tensors[y].shape)} must both be (1, 1, block, 1)")
    producers = {op.output: i for i, op in enumerate(ops)}
    if root(y) not in producers and y not in producers:
        raise BlobError("output y is not computed by any op")

    state_in = [sig_in[f"state_in_{k:02d}"] for k in range(n_states)]
    state_out = [sig_out[f"state_out_{k:02d}"] for k in range(n_states)]
    for si, so in zip(state_in, state_out):
        fi, ci = act_shape(tensors[si], "state input", dtype)
        if flat_shape(tensors[so]) != (fi, ci):
            raise BlobError(f"state {tensors[si].name!r} {list(tensors[si].shape)} and its output "
                            f"{tensors[so].name!r} {list(tensors[so].shape)} differ in shape")
        same_quant(tensors[si], tensors[so], "state feedback")

    # Write each new state straight into its state_in tensor.
    tail: list[Op] = []
    for si, so in zip(state_in, state_out):
        p = producers.get(so)
        if p is not None and ops[p] is not None and ops[p].kind == "COPY" and not readers(ops, so, root) \
                and so != y and so not in alias.values():
            op = ops[p]
            if all(r < p for r in readers(ops, si, root)):
                op.output = si
                op.params = dict(op.params, state=True)
            else:
                op.output = si
                tail.append(op)
                ops[p] = None  # type: ignore[call-overload]
        else:
            f, c = flat_shape(tensors[si])
            tail.append(Op("COPY", [so], si, dict(src_offset=0, bytes=f * c * elem), b"", "state feedback"))
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
        f, c = flat_shape(tensors[t])
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
        f, c = flat_shape(tensors[t])
        s, z = tensors[t].qparams()
        if r in state_set:
            records.append((REGION_STATE, state_off[r], f, c, z, s))
        else:
            records.append((REGION_SCRATCH, offset_of[buf_of[r]], f, c, z, s))
    return MemoryPlan(ops=ops, tensor_records=records, index=index, x=index[x], y=index[y], block=fx,
                      state_bytes=state_bytes, scratch_bytes=scratch_bytes, names=[tensors[t].name for t in used])
