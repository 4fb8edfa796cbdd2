"""The blob layout in ckernel/format.py is the C kernel's: every constant, field offset, enum value and
op parameter word checked against csrc's headers and decoder, and the encoder and parser agree."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from toolchain.export.ckernel import format as fmt

REPO = Path(__file__).resolve().parents[4]
CSRC = REPO / "csrc"
CC = shutil.which(os.environ.get("CC", "gcc")) or shutil.which("cc")
#: The enums of hx_types.h that are blob words (op codes, CONV rounding, ADD mode, act_bits).
BLOB_ENUMS = ("hx_op_type", "hx_rounding", "hx_add_mode", "hx_act_bits")


def python_layout() -> dict[str, int]:
    """Every layout value of format.py under the name of its C twin."""
    return {
        "HX_BLOB_FORMAT_VERSION": fmt.FORMAT_VERSION,
        "HX_BLOB_HEADER_BYTES": fmt.HEADER_BYTES,
        "HX_BLOB_TENSOR_BYTES": fmt.TENSOR_BYTES,
        "HX_BLOB_OP_BYTES": fmt.OP_BYTES,
        "HXO_WORDS": fmt.OP_WORDS,
        "HX_MAX_OP_INPUTS": fmt.MAX_OP_INPUTS,
        "HX_OP_SLOT_BYTES": fmt.OP_SLOT_BYTES,
        "HX_ARENA_ALIGN": fmt.ARENA_ALIGN,
        "HX_ADD_TABLE_BYTES": fmt.ADD_TABLE_BYTES,
        "HX_CONV16_PARAM_BYTES": fmt.CONV16_PARAM_BYTES,
        "HX_BIAS64_LIMIT": fmt.BIAS64_LIMIT,
        "HX_REGION_SCRATCH": fmt.REGION_SCRATCH,
        "HX_REGION_STATE": fmt.REGION_STATE,
        **{f"HXB_{name.upper()}": off for name, off in fmt.HEADER_OFFSETS.items()},
        **{f"HXT_{name.upper()}": off for name, off in fmt.TENSOR_OFFSETS.items()},
        **{f"HXO_{name.upper()}": word for name, word in fmt.OP_WORD.items()},
        **{f"HX_OP_{kind}": code for kind, code in fmt.OP_CODES.items()},
        **{f"HX_ROUND_{name.upper()}": code for name, code in fmt.ROUNDING_MODES.items()},
        **{f"HX_ADD_{name.upper()}": code for name, code in fmt.ADD_MODES.items()},
        **{f"HX_ACT_S{bits}": bits for bits in fmt.ACT_ELEM_BYTES},
    }


def c_layout_names() -> set[str]:
    """Names of the C side's blob layout: every HXB_/HXT_/HXO_/HX_REGION_ define, the HX_BLOB_ sizes and the
    members of the blob enums (so a field added in C without a Python twin fails the test)."""
    types = (CSRC / "include" / "hx" / "hx_types.h").read_text()
    internal = (CSRC / "common" / "hx_internal.h").read_text()
    names = set(re.findall(r"^#define (HX[BTO]_\w+|HX_REGION_\w+)\s", internal, re.M))
    names |= set(re.findall(r"^#define (HX_BLOB_\w+)\s", types, re.M))
    for enum in BLOB_ENUMS:
        body = re.search(r"typedef enum %s \{(.*?)\}" % enum, types, re.S)
        assert body, f"enum {enum} not found in hx_types.h"
        names |= set(re.findall(r"^\s*(HX_\w+)\s*=", body.group(1), re.M))
    return names


@pytest.fixture(scope="module")
def c_values(tmp_path_factory) -> dict[str, int]:
    """The value the C compiler gives each name of :func:`python_layout` (through the real headers)."""
    assert CC, "a host C compiler (gcc or cc) is needed to read the C headers"
    d = tmp_path_factory.mktemp("layout")
    prints = "\n".join(f'    printf("%s %lld\\n", "{n}", (long long)({n}));' for n in sorted(python_layout()))
    (d / "layout.c").write_text('#include <stdio.h>\n#include "hx_internal.h"\n\nint main(void) {\n'
                                f"{prints}\n    return 0;\n}}\n")
    subprocess.run([CC, "-std=c99", "-DHX_ARCH_REF", f"-I{CSRC / 'include'}", f"-I{CSRC / 'common'}",
                    str(d / "layout.c"), "-o", str(d / "layout")], check=True, capture_output=True, text=True)
    out = subprocess.run([str(d / "layout")], check=True, capture_output=True, text=True).stdout
    return {name: int(v) for name, v in (line.split() for line in out.splitlines())}


def test_every_layout_constant_equals_the_c_headers(c_values):
    py = python_layout()
    assert {k: v for k, v in py.items() if c_values[k] != v} == {}, "format.py differs from csrc's headers"
    assert c_values == py


def test_every_c_layout_name_has_a_python_twin():
    assert c_layout_names() - set(python_layout()) == set()


def test_magic_and_unused_input_id_are_the_c_kernels():
    src = (CSRC / "common" / "hx_blob.c").read_text()
    magic = re.findall(r'memcmp\(blob \+ HXB_MAGIC, "(\w+)", 4\)', src)
    assert magic == [fmt.MAGIC.decode()]
    internal = (CSRC / "common" / "hx_internal.h").read_text()
    unused = re.findall(r"#define HXO_IN0 \d+ .*unused = (0x[0-9a-fA-F]+)", internal)
    assert [int(v, 16) for v in unused] == [fmt.NO_TENSOR]


def _decoder_param_words() -> dict[str, dict[str, int]]:
    """Op kind → {parameter: word index after HXO_P0} as csrc/common/hx_model.c's decoders read them."""
    src = (CSRC / "common" / "hx_model.c").read_text()
    words: dict[str, dict[str, int]] = {}
    parts = re.split(r"case HX_OP_(\w+):", src)
    for kind, body in zip(parts[1::2], parts[2::2]):
        body = re.split(r"\bcase HX_OP_|\bdefault:", body)[0]
        for field, k in re.findall(r"(?:p->|op->p\.copy\.)(\w+) = (?:\(\w+\))?w\[HXO_P0(?: \+ (\d+))?\]", body):
            field = {"offset": "src_offset"}.get(field, field) if kind == "COPY" else field
            got = words.setdefault(kind, {}).setdefault(field, int(k or 0))
            assert got == int(k or 0), f"{kind}.{field} read from two words in hx_model.c"
    return words


def test_op_parameter_words_are_the_ones_the_c_decoder_reads():
    c = _decoder_param_words()
    assert set(c) == {k for k, names in fmt.OP_PARAMS.items() if names}
    py = {kind: {n: i for i, n in enumerate(names)} for kind, names in fmt.OP_PARAMS.items() if names}
    assert {kind: {n: py[kind].get(n) for n in fields} for kind, fields in c.items()} == c
    # Every Python word is read by the decoder, except the zero points of the 16x8 LEAKY_RELU (always 0,
    # checked by the validator).
    unread = {kind: set(names) - set(c[kind]) for kind, names in fmt.OP_PARAMS.items() if names}
    assert {k: v for k, v in unread.items() if v} == {"LEAKY_RELU": {"input_zp", "output_zp"}}


def test_python_layout_is_self_consistent():
    assert 4 + 4 * len(fmt.HEADER_FIELDS) == fmt.HEADER_BYTES
    assert fmt._TENSOR_RECORD.size == fmt.TENSOR_BYTES
    assert fmt.OP_WORD["p0"] + max(len(v) for v in fmt.OP_PARAMS.values()) <= fmt.OP_WORDS
    assert set(fmt.OP_PARAMS) == set(fmt.OP_CODES)


def _roundtrip_ops(bits: int) -> tuple[list[fmt.Op], list[tuple], dict[int, int]]:
    """A schedule using every op kind of an int8 (bits 8) or 16x8 blob, on tensors 0..4 of 2 x 3 elements."""
    rng = np.random.default_rng(bits)
    w = rng.integers(-128, 128, (3, 1, 3), dtype=np.int8)
    bias = np.array([-5, 0, 7], "<i8" if bits == 16 else "<i4")
    conv_data = w.tobytes() + b"\0" * (-w.size % 4) + bias.tobytes() + np.array([1 << 30, 3, 5, -2, 0, 1], "<i4").tobytes()
    conv = fmt.Op("CONV", [0], 1, dict(kernel=1, stride=1, dilation=1, input_zp=0 if bits == 16 else -3,
                                       output_zp=0 if bits == 16 else 4, act_min=-(1 << (bits - 1)),
                                       act_max=(1 << (bits - 1)) - 1,
                                       rounding="double_away" if bits == 16 else "single_up"), conv_data)
    add = fmt.Op("ADD", [1, 0], 2, dict(input1_zp=0, input2_zp=0, output_zp=0, left_shift=15 if bits == 16 else 20,
                                        multiplier1=1 << 30, shift1=-1, multiplier2=(1 << 31) - 1, shift2=-31,
                                        multiplier_out=1 << 30, shift_out=0, act_min=-100, act_max=100,
                                        mode="reference"))
    if bits == 16:
        act = fmt.Op("LEAKY_RELU", [2], 3, dict(input_zp=0, output_zp=0, multiplier_identity=1 << 30, shift_identity=1,
                                                multiplier_alpha=1 << 29, shift_alpha=-3))
    else:
        act = fmt.Op("PRELU", [2], 3, dict(input_zp=-1, alpha_zp=2, output_zp=3, multiplier_pos=1 << 30, shift_pos=0,
                                           multiplier_neg=1 << 29, shift_neg=-7, alpha_count=3),
                     np.array([1, -2, 3], np.int8).tobytes())
    concat = fmt.Op("CONCAT", [3, 1], 4, {})
    copy = fmt.Op("COPY", [4], 0, dict(src_offset=6 * bits // 8, bytes=6 * bits // 8, state=True))
    records = [(fmt.REGION_STATE, 0, 2, 3, 0, 0.5)] + [(fmt.REGION_SCRATCH, 16 * i, 2 * (1 + (i == 4)), 3, 0, 0.25 * i)
                                                      for i in range(1, 5)]
    return [conv, add, act, concat, copy], records, {i: i for i in range(5)}


@pytest.mark.parametrize("bits", [8, 16])
def test_parse_blob_reads_back_what_encode_blob_wrote(bits):
    ops, records, index = _roundtrip_ops(bits)
    blob = fmt.encode_blob(ops, records, index, block=2, input_tensor=1, output_tensor=4, state_bytes=16,
                           scratch_bytes=96, act_bits=bits)
    m = fmt.parse_blob(blob)
    assert (m.version, m.act_bits, m.block, m.input_tensor, m.output_tensor, m.state_bytes, m.scratch_bytes,
            m.blob_bytes) == (fmt.FORMAT_VERSION, bits, 2, 1, 4, 16, 96, len(blob))
    assert [(t.region, t.offset, t.frames, t.channels, t.zero_point, t.scale) for t in m.tensors] == records
    assert all(t.elem_bytes == fmt.ACT_ELEM_BYTES[bits] for t in m.tensors)
    for want, got in zip(ops, m.ops, strict=True):
        assert (got.kind, got.inputs, got.output) == (want.kind, want.inputs, want.output)
        assert got.params == {k: want.params[k] for k in fmt.OP_PARAMS[want.kind]}
    conv = m.ops[0]
    assert conv.weights.shape == (3, 1, 3) and conv.bias.tolist() == [-5, 0, 7]
    assert conv.multiplier.tolist() == [1 << 30, 3, 5] and conv.shift.tolist() == [-2, 0, 1]
    if bits == 8:
        assert m.ops[2].alpha.tolist() == [1, -2, 3]
    # An op's unused input slots hold NO_TENSOR, unused parameter words 0.
    op_table = int.from_bytes(blob[fmt.HEADER_OFFSETS["op_table"]:][:4], "little")
    words = np.frombuffer(blob[op_table:op_table + fmt.OP_BYTES], "<u4")
    assert words[fmt.OP_WORD["in0"] + 1:fmt.OP_WORD["out"]].tolist() == [fmt.NO_TENSOR] * (fmt.MAX_OP_INPUTS - 1)
    assert not words[fmt.OP_WORD["p0"] + len(fmt.OP_PARAMS["CONV"]):].any()
