"""hx_model_init / hx_model_state_size reject damaged or absurd blobs with distinct statuses, and the
API checks its arguments. (tests/csrc/test_csrc_sanitizers.py replays these blobs under ASan+UBSan.)"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from csrc_helpers import BLOCK, recrc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolchain.export import ckernel as ck
from toolchain.export.ckernel.format import OP_BYTES, TENSOR_BYTES

HEADER = {name: 4 * i for i, name in enumerate(
    ("magic", "version", "header_bytes", "blob_bytes", "n_tensors", "n_ops", "tensor_table", "op_table",
     "data_offset", "data_bytes", "block", "input_tensor", "output_tensor", "state_bytes", "scratch_bytes", "act_bits"))}


def put_u32(blob: bytes, offset: int, value: int, *, fix_crc: bool = True) -> bytes:
    b = bytearray(blob)
    struct.pack_into("<I", b, offset, value & 0xFFFFFFFF)
    return recrc(b) if fix_crc else bytes(b)


def header_field(blob: bytes, name: str, value: int) -> bytes:
    return put_u32(blob, HEADER[name], value)


def tensor_field(blob: bytes, index: int, field: int, value: int) -> bytes:
    table = struct.unpack_from("<I", blob, HEADER["tensor_table"])[0]
    return put_u32(blob, table + index * TENSOR_BYTES + 4 * field, value)


def op_word(blob: bytes, index: int, word: int, value: int) -> bytes:
    table = struct.unpack_from("<I", blob, HEADER["op_table"])[0]
    return put_u32(blob, table + index * OP_BYTES + 4 * word, value)


def first_op(blob: bytes, kind: str) -> int:
    return next(i for i, op in enumerate(ck.parse_blob(blob).ops) if op.kind == kind)


def bad_blobs(blob: bytes) -> dict[str, tuple[bytes, str]]:
    """Named damaged blobs and the status each must get (shared with the sanitizer test)."""
    n = len(blob)
    conv, prelu, add, concat, copy = (first_op(blob, k) for k in ("CONV", "PRELU", "ADD", "CONCAT", "COPY"))
    flipped = bytearray(blob)
    flipped[n // 2] ^= 0x40
    cases = {
        "empty": (b"", "HX_E_TRUNCATED"),
        "header_only": (blob[:64], "HX_E_TRUNCATED"),
        "truncated_half": (blob[: n // 2], "HX_E_TRUNCATED"),
        "truncated_one": (blob[:-1], "HX_E_TRUNCATED"),
        "bad_magic": (b"HXKC" + blob[4:], "HX_E_MAGIC"),
        "future_version": (put_u32(blob, 4, ck.FORMAT_VERSION + 1, fix_crc=False), "HX_E_VERSION"),
        "bit_flip": (bytes(flipped), "HX_E_CHECKSUM"),
        "crc_flip": (blob[:-1] + bytes([blob[-1] ^ 1]), "HX_E_CHECKSUM"),
        "blob_bytes_tiny": (put_u32(blob, HEADER["blob_bytes"], 8, fix_crc=False), "HX_E_MALFORMED"),
        "header_bytes": (header_field(blob, "header_bytes", 128), "HX_E_MALFORMED"),
        "n_tensors_huge": (header_field(blob, "n_tensors", 0xFFFFFFFF), "HX_E_MALFORMED"),
        "n_tensors_zero": (header_field(blob, "n_tensors", 0), "HX_E_MALFORMED"),
        "n_ops_huge": (header_field(blob, "n_ops", 0x7FFFFFFF), "HX_E_MALFORMED"),
        "tensor_table_past_end": (header_field(blob, "tensor_table", 0xFFFFFFF0), "HX_E_MALFORMED"),
        "op_table_past_end": (header_field(blob, "op_table", n), "HX_E_MALFORMED"),
        "data_past_end": (header_field(blob, "data_bytes", 0xFFFFFFFF), "HX_E_MALFORMED"),
        "block_zero": (header_field(blob, "block", 0), "HX_E_MALFORMED"),
        "block_wrong": (header_field(blob, "block", BLOCK + 1), "HX_E_MALFORMED"),
        "input_id": (header_field(blob, "input_tensor", 100000), "HX_E_MALFORMED"),
        "state_bytes_huge": (header_field(blob, "state_bytes", 0xFFFFFFFF), "HX_E_MALFORMED"),
        "scratch_bytes_small": (header_field(blob, "scratch_bytes", 8), "HX_E_MALFORMED"),
        "act_bits": (header_field(blob, "act_bits", 1), "HX_E_UNSUPPORTED"),
        "old_version": (header_field(blob, "version", ck.FORMAT_VERSION - 1), "HX_E_VERSION"),
        "tensor_frames_huge": (tensor_field(blob, 3, 2, 0xFFFFFFFF), "HX_E_MALFORMED"),
        "tensor_frames_zero": (tensor_field(blob, 3, 2, 0), "HX_E_MALFORMED"),
        "tensor_channels_2e24": (tensor_field(blob, 3, 3, 1 << 24), "HX_E_MALFORMED"),
        "tensor_offset_huge": (tensor_field(blob, 3, 1, 0xFFFFFFFF), "HX_E_MALFORMED"),
        "tensor_region": (tensor_field(blob, 3, 0, 7), "HX_E_MALFORMED"),
        "tensor_zero_point": (tensor_field(blob, 3, 4, 300), "HX_E_MALFORMED"),
        "op_type_unknown": (op_word(blob, conv, 0, 99), "HX_E_UNSUPPORTED"),
        "op_no_inputs": (op_word(blob, conv, 1, 0), "HX_E_MALFORMED"),
        "op_five_inputs": (op_word(blob, concat, 1, 5), "HX_E_MALFORMED"),
        "op_input_id": (op_word(blob, conv, 2, 0xFFFFFFFF), "HX_E_MALFORMED"),
        "op_output_id": (op_word(blob, conv, 6, 1 << 30), "HX_E_MALFORMED"),
        "op_data_past_end": (op_word(blob, conv, 7, 0xFFFFFF00), "HX_E_MALFORMED"),
        "op_data_bytes": (op_word(blob, conv, 8, 3), "HX_E_MALFORMED"),
        "conv_kernel_zero": (op_word(blob, conv, 9, 0), "HX_E_MALFORMED"),
        "conv_kernel_huge": (op_word(blob, conv, 9, 0xFFFFFFFF), "HX_E_MALFORMED"),
        "conv_stride_zero": (op_word(blob, conv, 10, 0), "HX_E_MALFORMED"),
        "conv_dilation_huge": (op_word(blob, conv, 11, 1 << 31), "HX_E_MALFORMED"),
        "conv_rounding": (op_word(blob, conv, 16, 3), "HX_E_UNSUPPORTED"),
        "conv_act_range": (op_word(blob, conv, 15, 200), "HX_E_MALFORMED"),
        "prelu_alpha_count": (op_word(blob, prelu, 16, 1000), "HX_E_MALFORMED"),
        "prelu_shift": (op_word(blob, prelu, 13, 45), "HX_E_UNSUPPORTED"),
        "add_left_shift": (op_word(blob, add, 12, 31), "HX_E_UNSUPPORTED"),
        "add_multiplier_negative": (op_word(blob, add, 13, 0x80000000), "HX_E_UNSUPPORTED"),
        "copy_range": (op_word(blob, copy, 9, 0xFFFFFFF0), "HX_E_MALFORMED"),
        "concat_into_input": (op_word(blob, concat, 6, struct.unpack_from("<I", blob[
            struct.unpack_from("<I", blob, HEADER["op_table"])[0] + concat * OP_BYTES + 8:], 0)[0]),
            "HX_E_MALFORMED"),
    }
    return cases


@pytest.fixture(scope="module")
def api(cklib):
    return cklib.ffi, cklib.lib


def status(lib, ffi, blob: bytes) -> str:
    size = ffi.new("size_t *", 12345)
    st = lib.hx_model_state_size(blob, len(blob), size)
    if st != lib.HX_OK:
        assert size[0] == 0
    return ffi.string(lib.hx_status_str(st)).decode()


def init(lib, ffi, blob: bytes, arena_len: int | None = None):
    size = ffi.new("size_t *")
    lib.hx_model_state_size(blob, len(blob), size)
    n = size[0] if arena_len is None else arena_len
    arena = ffi.new("uint8_t[]", max(n, 1))
    model = ffi.new("hx_model *")
    st = lib.hx_model_init(model, blob, len(blob), arena, n)
    return st, model, arena


def test_good_blob(api, seanet):
    ffi, lib = api
    assert status(lib, ffi, seanet.blob) == "HX_OK"
    # Trailing bytes after the declared length (flash padding) are ignored.
    assert status(lib, ffi, seanet.blob + b"\xff" * 100) == "HX_OK"


def test_bad_blobs_get_distinct_statuses(api, seanet):
    ffi, lib = api
    cases = bad_blobs(seanet.blob)
    got = {name: status(lib, ffi, blob) for name, (blob, _) in cases.items()}
    want = {name: code for name, (_, code) in cases.items()}
    assert got == want
    assert len(set(want.values())) == 6  # TRUNCATED MAGIC VERSION CHECKSUM MALFORMED UNSUPPORTED
    for name, (blob, code) in cases.items():  # init agrees and leaves the model unusable
        st, model, _ = init(lib, ffi, blob, arena_len=1 << 20)
        assert ffi.string(lib.hx_status_str(st)).decode() == code, name
        assert model.live == 0
        assert lib.hx_model_block(model) == 0


@pytest.mark.parametrize("cut", [0, 1, 4, 63, 64, 67, 68, 100, 1000, -5, -4, -1])
def test_every_truncation_is_reported(api, seanet, cut):
    ffi, lib = api
    assert status(lib, ffi, seanet.blob[:cut] if cut else b"") == "HX_E_TRUNCATED"


def test_checksum_covers_every_region(api, seanet):
    ffi, lib = api
    rng = np.random.default_rng(0)
    for pos in list(rng.integers(16, len(seanet.blob) - 4, 40)) + [8, 16, 64, len(seanet.blob) - 5]:
        b = bytearray(seanet.blob)
        b[int(pos)] ^= 0x01
        assert status(lib, ffi, bytes(b)) == "HX_E_CHECKSUM"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_blobs_never_crash(api, seanet, data):
    """Random structural edits (with a valid CRC) yield a status; an accepted blob still runs a step."""
    ffi, lib = api
    b = bytearray(seanet.blob)
    n_body = len(b) - 4
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, min(n_body, 4096) - 4)) if data.draw(st.booleans()) else \
            data.draw(st.integers(0, n_body - 4))
        val = data.draw(st.sampled_from([0, 1, 0xFF, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 1 << 24, 65536,
                                         data.draw(st.integers(0, 0xFFFFFFFF))]))
        struct.pack_into("<I", b, pos, val)
    blob = recrc(b)
    st_name = status(lib, ffi, blob)
    assert st_name in {"HX_OK", "HX_E_TRUNCATED", "HX_E_MAGIC", "HX_E_VERSION", "HX_E_MALFORMED", "HX_E_UNSUPPORTED"}
    if st_name == "HX_OK":
        st_code, model, arena = init(lib, ffi, blob)
        if st_code == lib.HX_OK:
            io = np.zeros(lib.hx_model_block(model), np.int8)
            assert lib.hx_model_process(model, ffi.from_buffer("int8_t[]", io), ffi.from_buffer("int8_t[]", io),
                                        io.size) == lib.HX_OK


def test_arena_checks(api, seanet):
    ffi, lib = api
    size = ffi.new("size_t *")
    lib.hx_model_state_size(seanet.blob, len(seanet.blob), size)
    need = size[0]
    st, model, _ = init(lib, ffi, seanet.blob, arena_len=need - 1)
    assert st == lib.HX_E_ARENA_TOO_SMALL and model.live == 0
    # Any alignment works, and nothing is written outside [arena, arena + need).
    x = seanet.audio_q[: 64 * BLOCK]
    ref = None
    for skew in range(0, 16, 3):
        raw = ffi.new("uint8_t[]", need + 64)
        ffi.memmove(raw, b"\xa5" * (need + 64), need + 64)
        model = ffi.new("hx_model *")
        assert lib.hx_model_init(model, seanet.blob, len(seanet.blob), raw + 16 + skew, need) == lib.HX_OK
        y = np.zeros_like(x)
        assert lib.hx_model_process(model, ffi.from_buffer("int8_t[]", x), ffi.from_buffer("int8_t[]", y),
                                    x.size) == lib.HX_OK
        buf = bytes(ffi.buffer(raw, need + 64))
        assert buf[:16 + skew] == b"\xa5" * (16 + skew)
        assert buf[16 + skew + need:] == b"\xa5" * (48 - skew)
        ref = y if ref is None else ref
        assert np.array_equal(y, ref)


def test_argument_checks(api, seanet):
    ffi, lib = api
    size = ffi.new("size_t *")
    assert lib.hx_model_state_size(ffi.NULL, 100, size) == lib.HX_E_NULL
    assert lib.hx_model_state_size(seanet.blob, len(seanet.blob), ffi.NULL) == lib.HX_E_NULL
    model = ffi.new("hx_model *")
    arena = ffi.new("uint8_t[]", 1 << 17)
    assert lib.hx_model_init(ffi.NULL, seanet.blob, len(seanet.blob), arena, 1 << 17) == lib.HX_E_NULL
    assert lib.hx_model_init(model, seanet.blob, len(seanet.blob), ffi.NULL, 1 << 17) == lib.HX_E_NULL
    # Not initialised: every call refuses.
    io = np.zeros(BLOCK, np.int8)
    p = ffi.from_buffer("int8_t[]", io)
    q = ffi.new("hx_quant *")
    assert lib.hx_model_process(model, p, p, BLOCK) == lib.HX_E_NOT_INITIALIZED
    assert lib.hx_model_reset(model) == lib.HX_E_NOT_INITIALIZED
    assert lib.hx_model_input_quant(model, q) == lib.HX_E_NOT_INITIALIZED
    assert lib.hx_model_state_bytes(model) == 0 and lib.hx_model_block(model) == 0
    assert lib.hx_model_process(ffi.NULL, p, p, BLOCK) == lib.HX_E_NULL
    # Initialised.
    assert lib.hx_model_init(model, seanet.blob, len(seanet.blob), arena, 1 << 17) == lib.HX_OK
    assert lib.hx_model_process(model, p, p, BLOCK + 1) == lib.HX_E_BAD_LENGTH
    assert lib.hx_model_process(model, p, p, 0) == lib.HX_OK
    assert lib.hx_model_process(model, ffi.NULL, p, BLOCK) == lib.HX_E_NULL
    assert lib.hx_model_input_quant(model, ffi.NULL) == lib.HX_E_NULL
    n = lib.hx_model_state_bytes(model)
    buf = ffi.new("uint8_t[]", n + 1)
    assert lib.hx_model_get_state(model, buf, n + 1) == lib.HX_E_BAD_LENGTH
    assert lib.hx_model_set_state(model, buf, n - 1) == lib.HX_E_BAD_LENGTH
    assert lib.hx_model_get_state(model, ffi.NULL, n) == lib.HX_E_NULL
    assert lib.hx_model_get_state(model, buf, n) == lib.HX_OK
    assert ffi.string(lib.hx_arch()) == b"ref"
    assert ffi.string(lib.hx_status_str(12345)) == b"HX_E_UNKNOWN"


def test_in_place_processing(api, seanet):
    """out_q may be in_q: each block is copied in before anything is written."""
    from runtime.backends.ckernel import CKernelBackend

    ffi, lib = api
    x = seanet.audio_q[: 100 * BLOCK].copy()
    want = CKernelBackend(seanet.blob, arch="ref").process(x)
    st, model, _arena = init(lib, ffi, seanet.blob)
    assert st == lib.HX_OK
    p = ffi.from_buffer("int8_t[]", x)
    assert lib.hx_model_process(model, p, p, x.size) == lib.HX_OK
    assert np.array_equal(x, want)


# ------------------------------------------------------------------------------------ 16x8 blobs
def bad_blobs16(blob: bytes) -> dict[str, tuple[bytes, str]]:
    """Named damaged 16x8 blobs and the status each must get (shared with the sanitizer test)."""
    m = ck.parse_blob(blob)
    conv, leaky, add, copy = (first_op(blob, k) for k in ("CONV", "LEAKY_RELU", "ADD", "COPY"))
    c_out = m.tensors[m.ops[conv].output].channels
    data = struct.unpack_from("<I", blob, struct.unpack_from("<I", blob, HEADER["op_table"])[0] + conv * OP_BYTES + 28)[0]
    arr = data + -(-m.ops[conv].weights.size // 4) * 4     # bias[C_out] int64, multiplier, shift int32
    big = bytearray(blob)
    struct.pack_into("<q", big, arr, (1 << 46) + 1)
    scratch = next(t.index for t in m.tensors if not t.is_state and t.index not in (m.input_tensor, m.output_tensor))
    return {
        "old_version": (header_field(blob, "version", 1), "HX_E_VERSION"),
        "act_bits_32": (header_field(blob, "act_bits", 32), "HX_E_UNSUPPORTED"),
        "act_bits_8": (header_field(blob, "act_bits", 8), "HX_E_MALFORMED"),  # int16 sizes read as int8 ones
        "tensor_zero_point": (tensor_field(blob, scratch, 4, 1), "HX_E_MALFORMED"),
        "tensor_odd_offset": (tensor_field(blob, scratch, 1, m.tensors[scratch].offset + 1), "HX_E_MALFORMED"),
        "conv_bias_huge": (recrc(big), "HX_E_UNSUPPORTED"),
        "conv_shift_8": (put_u32(blob, arr + 12 * c_out, 8), "HX_E_UNSUPPORTED"),
        "conv_rounding": (op_word(blob, conv, 16, 1), "HX_E_UNSUPPORTED"),
        "conv_act_range": (op_word(blob, conv, 15, 40000), "HX_E_MALFORMED"),
        "conv_zero_point": (op_word(blob, conv, 12, 1), "HX_E_MALFORMED"),
        "leaky_as_prelu": (op_word(blob, leaky, 0, 2), "HX_E_UNSUPPORTED"),
        "leaky_shift": (op_word(blob, leaky, 12, 31), "HX_E_UNSUPPORTED"),
        "leaky_multiplier_negative": (op_word(blob, leaky, 11, 0x80000000), "HX_E_UNSUPPORTED"),
        "add_left_shift_16": (op_word(blob, add, 12, 16), "HX_E_UNSUPPORTED"),
        "add_act_range": (op_word(blob, add, 20, 40000), "HX_E_MALFORMED"),
        "copy_odd_offset": (op_word(blob, copy, 9, 1), "HX_E_MALFORMED"),
    }


def test_16x8_bad_blobs_get_their_statuses(api, seanet16):
    ffi, lib = api
    assert status(lib, ffi, seanet16.blob) == "HX_OK"
    cases = bad_blobs16(seanet16.blob)
    got = {name: status(lib, ffi, blob) for name, (blob, _) in cases.items()}
    assert got == {name: code for name, (_, code) in cases.items()}
    # The Python reader refuses the old format too, naming both versions.
    with pytest.raises(ck.BlobError, match=f"version 1; this toolchain reads {ck.FORMAT_VERSION}"):
        ck.parse_blob(cases["old_version"][0])


def test_leaky_relu_op_is_refused_in_an_int8_model(api, seanet):
    ffi, lib = api
    assert status(lib, ffi, op_word(seanet.blob, first_op(seanet.blob, "PRELU"), 0, 6)) == "HX_E_UNSUPPORTED"


def test_sample_type_is_checked(api, seanet, seanet16):
    """hx_model_process runs int8 models only, hx_model_process_s16 16x8 ones: HX_E_TYPE, nothing written."""
    ffi, lib = api
    st, m8, _a8 = init(lib, ffi, seanet.blob)
    st16, m16, _a16 = init(lib, ffi, seanet16.blob)
    assert st == st16 == lib.HX_OK
    assert lib.hx_model_act_bits(m8) == lib.HX_ACT_S8 and lib.hx_model_act_bits(m16) == lib.HX_ACT_S16
    x8, y8 = np.ones(BLOCK, np.int8), np.full(BLOCK, 7, np.int8)
    x16, y16 = np.ones(BLOCK, np.int16), np.full(BLOCK, 7, np.int16)
    p8 = ffi.from_buffer("int8_t[]", x8), ffi.from_buffer("int8_t[]", y8)
    p16 = ffi.from_buffer("int16_t[]", x16), ffi.from_buffer("int16_t[]", y16)
    assert lib.hx_model_process_s16(m8, *p16, BLOCK) == lib.HX_E_TYPE
    assert lib.hx_model_process(m16, *p8, BLOCK) == lib.HX_E_TYPE
    assert (y8 == 7).all() and (y16 == 7).all()
    assert lib.hx_model_process_s16(m16, *p16, BLOCK + 1) == lib.HX_E_BAD_LENGTH
    assert lib.hx_model_process_s16(m16, *p16, BLOCK) == lib.HX_OK
    assert ffi.string(lib.hx_status_str(lib.HX_E_TYPE)) == b"HX_E_TYPE"
    assert lib.hx_model_act_bits(ffi.new("hx_model *")) == 0


def test_16x8_misaligned_io_and_in_place(api, seanet16):
    """The int16 samples may sit at any byte address, and out may be in: the results do not change."""
    from runtime.backends.ckernel import CKernelBackend

    ffi, lib = api
    x = seanet16.audio_q[: 80 * BLOCK]
    want = CKernelBackend(seanet16.blob, arch="ref").process(x)
    st, model, _arena = init(lib, ffi, seanet16.blob)
    assert st == lib.HX_OK
    raw = bytearray(x.nbytes + 1)
    raw[1:] = x.tobytes()
    buf = ffi.from_buffer(raw)
    p = ffi.cast("int16_t *", buf + 1)
    assert lib.hx_model_process_s16(model, p, p, x.size) == lib.HX_OK
    assert np.array_equal(np.frombuffer(bytes(raw[1:]), np.int16), want)
