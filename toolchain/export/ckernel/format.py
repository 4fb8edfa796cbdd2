"""The C-kernel blob format: layout constants, encoder and parser (the one Python description of it).

The C side of the same layout is ``csrc/include/hx/hx_types.h`` (sizes, op codes, enums) and
``csrc/common/hx_internal.h`` (field offsets); ``tests/toolchain/export/ckernel/test_format.py``
compiles a program against those headers and checks every constant below against them.

```
header   64 B   "HXKB", format version, header size, blob size, tensor/op counts, table and
                data offsets, block, input/output tensor ids, state and scratch bytes, act_bits
tensors  32 B each   region (0 scratch, 1 state), byte offset, frames, channels, zero point, scale
ops      128 B each  32 little-endian words: type, n_in, 4 input ids, output id, data offset,
                data bytes, op parameters (:data:`OP_PARAMS`; see csrc/common/hx_blob.c)
data     int8 weights / alphas and int32 (16x8: int64) bias, multiplier, shift arrays, 4-byte aligned
crc32    CRC-32 (zlib) of every byte before it
```
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAGIC = b"HXKB"
FORMAT_VERSION = 2             # 2: the header names the activation type (int8 or 16x8)
HEADER_BYTES = 64
TENSOR_BYTES = 32
OP_BYTES = 128
OP_WORDS = OP_BYTES // 4
MAX_OP_INPUTS = 4
OP_SLOT_BYTES = 192          # csrc/include/hx/hx_types.h HX_OP_SLOT_BYTES
ADD_TABLE_BYTES = 2048       # csrc/common/hx_internal.h HX_ADD_TABLE_BYTES
CONV16_PARAM_BYTES = 16      # HX_CONV16_PARAM_BYTES: arena bytes per output channel of a 16x8 CONV
BIAS64_LIMIT = 1 << 46       # HX_BIAS64_LIMIT: 16x8 bias magnitude the kernel's int64 requantisation takes exactly
ARENA_ALIGN = 16             # HX_ARENA_ALIGN
REGION_SCRATCH, REGION_STATE = 0, 1
NO_TENSOR = 0xFFFFFFFF       # an unused input slot of an op record

#: Header fields after the magic: little-endian u32 each, in this order (``HXB_*`` offsets in C).
HEADER_FIELDS = ("version", "header_bytes", "blob_bytes", "n_tensors", "n_ops", "tensor_table", "op_table",
                 "data_offset", "data_bytes", "block", "input_tensor", "output_tensor", "state_bytes",
                 "scratch_bytes", "act_bits")
HEADER_OFFSETS: dict[str, int] = {"magic": 0, **{n: 4 + 4 * i for i, n in enumerate(HEADER_FIELDS)}}
_HEADER = struct.Struct(f"<{len(HEADER_FIELDS)}I")
#: A tensor record: (name, struct code) in order (``HXT_*`` offsets in C), then 8 reserved bytes.
TENSOR_FIELDS = (("region", "I"), ("offset", "I"), ("frames", "I"), ("channels", "I"), ("zero_point", "i"),
                 ("scale", "f"))
TENSOR_OFFSETS: dict[str, int] = {n: 4 * i for i, (n, _) in enumerate(TENSOR_FIELDS)}
_TENSOR = struct.Struct("<" + "".join(c for _, c in TENSOR_FIELDS))
_TENSOR_RECORD = struct.Struct(_TENSOR.format + f"{TENSOR_BYTES - _TENSOR.size}x")
#: Word index of each fixed field of an op record (``HXO_*`` in C); the op's parameters start at ``p0``.
OP_WORD: dict[str, int] = {"type": 0, "n_in": 1, "in0": 2, "out": 2 + MAX_OP_INPUTS, "data_offset": 3 + MAX_OP_INPUTS,
                           "data_bytes": 4 + MAX_OP_INPUTS, "p0": 5 + MAX_OP_INPUTS}

OP_CODES = {"CONV": 1, "PRELU": 2, "ADD": 3, "CONCAT": 4, "COPY": 5, "LEAKY_RELU": 6}
OP_NAMES = {v: k for k, v in OP_CODES.items()}
#: Parameter words of each op, from word ``OP_WORD["p0"]`` on (csrc/common/hx_blob.c lists the same).
OP_PARAMS: dict[str, tuple[str, ...]] = {
    "CONV": ("kernel", "stride", "dilation", "input_zp", "output_zp", "act_min", "act_max", "rounding"),
    "PRELU": ("input_zp", "alpha_zp", "output_zp", "multiplier_pos", "shift_pos", "multiplier_neg", "shift_neg",
              "alpha_count"),
    "ADD": ("input1_zp", "input2_zp", "output_zp", "left_shift", "multiplier1", "shift1", "multiplier2", "shift2",
            "multiplier_out", "shift_out", "act_min", "act_max", "mode"),
    "CONCAT": (),
    "COPY": ("src_offset", "bytes"),
    "LEAKY_RELU": ("input_zp", "output_zp", "multiplier_identity", "shift_identity", "multiplier_alpha", "shift_alpha"),
}

#: Requantisation rounding schemes, by blob code (``hx_rounding``; see numpy_ref's docstring).
ROUNDING_MODES: dict[str, int] = {"double_away": 0, "double_up": 1, "single_up": 2}
#: ADD arithmetic variants, by blob code (``hx_add_mode``; see numpy_ref.add_s8): LiteRT's optimized kernel
#: (NEON on ARM, NEON_2_SSE on x86 builds with SSE4.1) and TFLite's reference kernel.
ADD_MODES: dict[str, int] = {"vector16": 0, "reference": 1}
#: Coded parameter words: the name a param dict holds ↔ the word the blob holds.
_CODED = {"rounding": ROUNDING_MODES, "mode": ADD_MODES}
_DECODE = {k: {v: n for n, v in m.items()} for k, m in _CODED.items()}
#: Activation types a blob can carry (header word ``act_bits``, ``hx_act_bits``) and bytes per element.
ACT_ELEM_BYTES: dict[int, int] = {8: 1, 16: 2}

#: Which LiteRT build a blob reproduces bit for bit: (CONV_2D rounding, ADD arithmetic). PRELU, CONCAT,
#: STRIDED_SLICE and RESHAPE compute the same in all of them.
TARGETS: dict[str, tuple[str, str]] = {
    "litert-x86": ("double_up", "vector16"),        # LiteRT on an x86-64 host (ruy AVX2, NEON_2_SSE)
    "litert-arm": ("single_up", "vector16"),        # LiteRT on an ARM board (ruy NEON, NEON)
    "tflite-reference": ("double_away", "reference"),  # TFLite reference kernels (BUILTIN_REF), TFLM
}


class BlobError(ValueError):
    """A graph the C kernel cannot run exactly, or a malformed blob (one-line message)."""


# ================================================================================ writing
@dataclass
class Op:
    """One op of the schedule before encoding: the lowering's output, the planner's input."""

    kind: str                         # a key of OP_CODES
    inputs: list[int]                 # tensor ids (the .tflite's until the planner renumbers them)
    output: int
    params: dict[str, Any]            # OP_PARAMS[kind] (extra keys are not encoded)
    data: bytes = b""
    source: str = ""                  # "CONV_2D (operator #3)" for messages


def _op_words(op: Op, index: dict[int, int], data_offset: int) -> list[int]:
    words = [0] * OP_WORDS
    ins = [index[i] for i in op.inputs] + [NO_TENSOR] * (MAX_OP_INPUTS - len(op.inputs))
    words[OP_WORD["type"]] = OP_CODES[op.kind]
    words[OP_WORD["n_in"]] = len(op.inputs)
    words[OP_WORD["in0"]:OP_WORD["in0"] + MAX_OP_INPUTS] = ins
    words[OP_WORD["out"]] = index[op.output]
    words[OP_WORD["data_offset"]] = data_offset if op.data else 0
    words[OP_WORD["data_bytes"]] = len(op.data)
    for k, name in enumerate(OP_PARAMS[op.kind]):
        v = op.params[name]
        words[OP_WORD["p0"] + k] = _CODED[name][v] if name in _CODED else v
    return words


def encode_blob(ops: list[Op], records: list[tuple[int, int, int, int, int, float]], index: dict[int, int], *,
                block: int, input_tensor: int, output_tensor: int, state_bytes: int, scratch_bytes: int,
                act_bits: int) -> bytes:
    """The blob of a planned schedule: ``records`` are the tensor table rows (:data:`TENSOR_FIELDS`),
    ``index`` maps the ops' tensor ids to rows."""
    tensor_table = HEADER_BYTES
    op_table = tensor_table + TENSOR_BYTES * len(records)
    data_offset = op_table + OP_BYTES * len(ops)
    data = bytearray()
    op_blobs = []
    for op in ops:
        off = data_offset + len(data)
        op_blobs.append(struct.pack(f"<{OP_WORDS}I", *(w & 0xFFFFFFFF for w in _op_words(op, index, off))))
        data += op.data
        data += b"\0" * (-len(data) % 4)
    total = data_offset + len(data) + 4
    if total >= 1 << 32:
        raise BlobError("model too large for the blob format (4 GiB)")
    fields = dict(version=FORMAT_VERSION, header_bytes=HEADER_BYTES, blob_bytes=total, n_tensors=len(records),
                  n_ops=len(ops), tensor_table=tensor_table, op_table=op_table, data_offset=data_offset,
                  data_bytes=len(data), block=block, input_tensor=input_tensor, output_tensor=output_tensor,
                  state_bytes=state_bytes, scratch_bytes=scratch_bytes, act_bits=act_bits)
    header = MAGIC + _HEADER.pack(*(fields[n] for n in HEADER_FIELDS))
    tbl = b"".join(_TENSOR_RECORD.pack(*r) for r in records)
    body = header + tbl + b"".join(op_blobs) + bytes(data)
    assert len(body) == total - 4
    return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)


# ================================================================================ reading
@dataclass
class BlobTensor:
    index: int
    region: int
    offset: int
    frames: int
    channels: int
    zero_point: int
    scale: float
    elem_bytes: int = 1       # 1 (int8) or 2 (int16), the blob's activation type

    @property
    def bytes(self) -> int:
        return self.frames * self.channels * self.elem_bytes

    @property
    def is_state(self) -> bool:
        return self.region == REGION_STATE


@dataclass
class BlobOp:
    kind: str
    inputs: list[int]
    output: int
    params: dict[str, Any]
    weights: np.ndarray | None = None     # CONV (C_out, K, C_in)
    bias: np.ndarray | None = None
    multiplier: np.ndarray | None = None
    shift: np.ndarray | None = None
    alpha: np.ndarray | None = None       # PRELU


@dataclass
class BlobModel:
    version: int
    block: int
    input_tensor: int
    output_tensor: int
    state_bytes: int
    scratch_bytes: int
    tensors: list[BlobTensor]
    ops: list[BlobOp]
    data_bytes: int
    blob_bytes: int
    crc32: int
    act_bits: int = 8         # activation type: 8 (int8) or 16 (16x8)
    extra: dict[str, Any] = field(default_factory=dict)

    def state_tensors(self) -> list[BlobTensor]:
        return [t for t in self.tensors if t.is_state]

    @property
    def param_bytes(self) -> int:
        """Arena bytes of the set-up tables (csrc/common/hx_blob.c): CONV 12 x C_out, ADD 2 x 256 int32,
        PRELU one byte per channel (4-aligned) + 256 bytes per distinct alpha value; in a 16x8 blob CONV
        16 x C_out (int64 bias, reduced multiplier, shift) and nothing else."""
        total = 0
        for op in self.ops:
            if self.act_bits == 16:
                total += CONV16_PARAM_BYTES * self.tensors[op.output].channels if op.kind == "CONV" else 0
            elif op.kind == "CONV":
                total += 12 * self.tensors[op.output].channels
            elif op.kind == "ADD":
                total += ADD_TABLE_BYTES
            elif op.kind == "PRELU":
                c = self.tensors[op.inputs[0]].channels
                total += -(-c // 4) * 4 + 256 * len(set(op.alpha.tolist()))
        return total

    @property
    def arena_bytes(self) -> int:
        """What ``hx_model_state_size`` reports (same formula as csrc/common/hx_blob.c)."""
        a = lambda v: -(-v // ARENA_ALIGN) * ARENA_ALIGN  # noqa: E731
        return ARENA_ALIGN + a(self.state_bytes) + a(self.scratch_bytes) + a(self.param_bytes) + OP_SLOT_BYTES * len(self.ops)


def _op_data(op: BlobOp, data: bytes, tensors: list[BlobTensor], bits: int) -> None:
    """Decode an op's data section into ``op``'s arrays (CONV weights and per-channel arrays, PRELU alphas)."""
    if op.kind == "CONV":
        c_in, c_out, k = tensors[op.inputs[0]].channels, tensors[op.output].channels, op.params["kernel"]
        wb = c_out * k * c_in
        op.weights = np.frombuffer(data[:wb], dtype=np.int8).reshape(c_out, k, c_in)
        a = -(-wb // 4) * 4
        if bits == 16:
            op.bias = np.frombuffer(data[a:a + 8 * c_out], dtype="<i8").astype(np.int64)
            a += 8 * c_out
        else:
            op.bias = np.frombuffer(data[a:a + 4 * c_out], dtype="<i4").astype(np.int64)
            a += 4 * c_out
        arr = np.frombuffer(data[a:a + 8 * c_out], dtype="<i4").astype(np.int64)
        op.multiplier, op.shift = arr[:c_out], arr[c_out:]
    elif op.kind == "PRELU":
        op.alpha = np.frombuffer(data[:op.params["alpha_count"]], dtype=np.int8)


def parse_blob(blob: bytes) -> BlobModel:
    """Decode (and check magic, version, length, CRC, table bounds of) a blob."""
    b = bytes(blob)
    if len(b) < HEADER_BYTES + 4:
        raise BlobError(f"blob truncated: {len(b)} bytes")
    if b[:4] != MAGIC:
        raise BlobError(f"bad magic {b[:4]!r}; not an hx kernel blob")
    h = dict(zip(HEADER_FIELDS, _HEADER.unpack_from(b, HEADER_OFFSETS["version"])))
    version, total, bits = h["version"], h["blob_bytes"], h["act_bits"]
    n_t, n_o, t_tab, o_tab = h["n_tensors"], h["n_ops"], h["tensor_table"], h["op_table"]
    d_off, d_len = h["data_offset"], h["data_bytes"]
    if version != FORMAT_VERSION:
        raise BlobError(f"blob format version {version}; this toolchain reads {FORMAT_VERSION}")
    if bits not in ACT_ELEM_BYTES:
        raise BlobError(f"blob activation type {bits} bits; expected one of {sorted(ACT_ELEM_BYTES)}")
    elem = ACT_ELEM_BYTES[bits]
    if total > len(b):
        raise BlobError(f"blob truncated: header says {total} bytes, have {len(b)}")
    if h["header_bytes"] != HEADER_BYTES or total < HEADER_BYTES + 4:
        raise BlobError("malformed blob header")
    crc = struct.unpack_from("<I", b, total - 4)[0]
    if zlib.crc32(b[:total - 4]) & 0xFFFFFFFF != crc:
        raise BlobError("blob checksum mismatch")
    if t_tab + n_t * TENSOR_BYTES > total - 4 or o_tab + n_o * OP_BYTES > total - 4 or d_off + d_len > total - 4:
        raise BlobError("malformed blob: tables outside the blob")
    tensors = []
    for i in range(n_t):
        region, off, f, c, z, s = _TENSOR.unpack_from(b, t_tab + i * TENSOR_BYTES)
        tensors.append(BlobTensor(i, region, off, f, c, z, float(s), elem))
    ops = []
    for i in range(n_o):
        w = struct.unpack_from(f"<{OP_WORDS}i", b, o_tab + i * OP_BYTES)
        kind = OP_NAMES.get(w[OP_WORD["type"]])
        if kind is None:
            raise BlobError(f"op {i}: unknown type {w[OP_WORD['type']]}")
        n_in = w[OP_WORD["n_in"]]
        if not 1 <= n_in <= MAX_OP_INPUTS:
            raise BlobError(f"op {i}: {n_in} inputs")
        ins = [int(v) & 0xFFFFFFFF for v in w[OP_WORD["in0"]:OP_WORD["in0"] + n_in]]
        out = int(w[OP_WORD["out"]]) & 0xFFFFFFFF
        if any(t >= n_t for t in [*ins, out]):
            raise BlobError(f"op {i}: tensor id out of range")
        doff, dlen = int(w[OP_WORD["data_offset"]]) & 0xFFFFFFFF, int(w[OP_WORD["data_bytes"]]) & 0xFFFFFFFF
        params = dict(zip(OP_PARAMS[kind], w[OP_WORD["p0"]:]))
        for name, codes in _DECODE.items():
            if name in params:
                params[name] = codes[params[name]]
        op = BlobOp(kind, ins, out, params)
        _op_data(op, b[doff:doff + dlen], tensors, bits)
        ops.append(op)
    return BlobModel(version, h["block"], h["input_tensor"], h["output_tensor"], h["state_bytes"], h["scratch_bytes"],
                     tensors, ops, d_len, total, crc, bits)


def describe_blob(blob: bytes) -> dict[str, Any]:
    """Summary of a blob: sizes (arena, state, scratch, weights), op counts, I/O quantisation."""
    m = parse_blob(blob)
    counts: dict[str, int] = {}
    for op in m.ops:
        counts[op.kind] = counts.get(op.kind, 0) + 1
    int8_weights = sum(op.weights.size for op in m.ops if op.weights is not None) + \
        sum(op.alpha.size for op in m.ops if op.alpha is not None)
    macs = sum(m.tensors[op.output].frames * op.weights.size for op in m.ops if op.kind == "CONV")
    tin, tout = m.tensors[m.input_tensor], m.tensors[m.output_tensor]
    rounding = sorted({op.params["rounding"] for op in m.ops if op.kind == "CONV"})
    add_modes = sorted({op.params["mode"] for op in m.ops if op.kind == "ADD"})
    if m.act_bits == 16:
        # One CONV arithmetic on every LiteRT build, and the same ADD on x86 and ARM: a 16x8 blob is
        # either "litert" (any LiteRT build) or "tflite-reference".
        rounding = []
        target = {(): ["litert"], ("vector16",): ["litert"], ("reference",): ["tflite-reference"]}.get(tuple(add_modes), [])
    else:
        target = [t for t, (c, a) in TARGETS.items() if [c] == rounding and [a] == add_modes]
    return {
        "format_version": m.version,
        "act_bits": m.act_bits,
        "act_dtype": "int16" if m.act_bits == 16 else "int8",
        "blob_bytes": m.blob_bytes,
        "crc32": f"{m.crc32:08x}",
        "block": m.block,
        "arena_bytes": m.arena_bytes,
        "state_bytes": m.state_bytes,
        "scratch_bytes": m.scratch_bytes,
        "param_bytes": m.param_bytes,
        "weight_bytes": m.data_bytes,
        "int8_weight_bytes": int(int8_weights),
        "macs_per_block": int(macs),
        "n_tensors": len(m.tensors),
        "n_states": len(m.state_tensors()),
        "op_counts": counts,
        "target": target[0] if target else None,
        "conv_rounding": rounding,
        "add_mode": add_modes,
        "input_quant": {"scale": tin.scale, "zero_point": tin.zero_point},
        "output_quant": {"scale": tout.scale, "zero_point": tout.zero_point},
    }
