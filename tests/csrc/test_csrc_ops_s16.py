"""Op by op, 16x8: each s16 C kernel (every host kernel set) equals its numpy reference bit for bit over
randomised shapes and quantisation parameters, and the numpy int64 requantisation equals a literal
big-integer transcription of TFLite's MultiplyByQuantizedMultiplier(int64)."""

from __future__ import annotations

import numpy as np
from csrc_helpers import numpy_case, random_add16_case, random_conv16_case, random_leaky16_case
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolchain.export.ckernel import numpy_ref as R

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _i16(ffi, a: np.ndarray):
    return ffi.from_buffer("int16_t[]", np.ascontiguousarray(a, dtype=np.int16))


def c_conv16(ck, case: dict) -> np.ndarray:
    ffi, lib = ck.ffi, ck.lib
    p = ffi.new("hx_conv_s16_params *", {k: case[k] for k in (
        "in_frames", "in_channels", "out_frames", "out_channels", "kernel", "stride", "dilation", "act_min", "act_max")})
    bias = ffi.new("int64_t[]", [int(v) for v in case["bias"]])
    shift = ffi.new("int32_t[]", case["shift"].tolist())
    rm = ffi.new("int32_t[]", case["out_channels"])
    assert lib.hx_conv_s16_reduce(p, bias, ffi.new("int32_t[]", case["mult"].tolist()), shift, rm) == lib.HX_OK
    assert list(rm) == R.reduced_multiplier(case["mult"]).tolist()
    out = np.zeros(case["out_frames"] * case["out_channels"], np.int16)
    lib.hx_conv_s16(p, _i16(ffi, case["x"]), ffi.from_buffer("int8_t[]", np.ascontiguousarray(case["w"])), bias, rm,
                    shift, ffi.from_buffer("int16_t[]", out))
    return out


def c_leaky16(ck, case: dict, *, in_place: bool = False) -> np.ndarray:
    ffi, lib = ck.ffi, ck.lib
    p = ffi.new("hx_leaky_relu_s16_params *", {k: case[k] for k in (
        "count", "multiplier_identity", "shift_identity", "multiplier_alpha", "shift_alpha")})
    x = case["x"].copy()
    out = x if in_place else np.zeros_like(x)
    lib.hx_leaky_relu_s16(p, _i16(ffi, x), ffi.from_buffer("int16_t[]", out))
    return out


def c_add16(ck, case: dict, *, in_place: bool = False) -> np.ndarray:
    ffi, lib = ck.ffi, ck.lib
    p = ffi.new("hx_add_s16_params *", {k: case[k] for k in (
        "count", "left_shift", "multiplier1", "shift1", "multiplier2", "shift2", "multiplier_out", "shift_out",
        "act_min", "act_max", "mode")})
    a = case["a"].copy()
    out = a if in_place else np.zeros_like(a)
    lib.hx_add_s16(p, _i16(ffi, a), _i16(ffi, case["b"]), ffi.from_buffer("int16_t[]", out))
    return out


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), c_in=st.integers(1, 40), c_out=st.integers(1, 40), kernel=st.integers(1, 8),
       stride=st.integers(1, 4), dilation=st.sampled_from([1, 1, 1, 2, 3]), frames=st.integers(1, 6))
def test_conv16_matches_numpy(cklib_arch, seed, c_in, c_out, kernel, stride, dilation, frames):
    case = random_conv16_case(np.random.default_rng(seed), c_in=c_in, c_out=c_out, kernel=kernel, stride=stride,
                              dilation=dilation, out_frames=frames)
    assert np.array_equal(c_conv16(cklib_arch, case), numpy_case(case)[0])


def test_conv16_long_rows_and_extremes(cklib_arch):
    """Rows longer than one int32 run (256 products) and every product at its extreme (-32768 x -128)."""
    rng = np.random.default_rng(3)
    for c_in, k in ((300, 1), (48, 8), (1, 48), (7, 77)):
        case = random_conv16_case(rng, c_in=c_in, kernel=k, c_out=9, stride=1, dilation=1, out_frames=3)
        case["x"][:] = -32768
        case["w"][:] = -128
        assert np.array_equal(c_conv16(cklib_arch, case), numpy_case(case)[0])
        case = random_conv16_case(rng, c_in=c_in, kernel=k, c_out=9, stride=1, dilation=1, out_frames=3)
        assert np.array_equal(c_conv16(cklib_arch, case), numpy_case(case)[0])


def test_conv16_reduce_refuses_inexact_ranges(cklib):
    ffi, lib = cklib.ffi, cklib.lib
    p = ffi.new("hx_conv_s16_params *", dict(in_frames=1, in_channels=4, out_frames=1, out_channels=1, kernel=1,
                                             stride=1, dilation=1, act_min=-32768, act_max=32767))
    rm = ffi.new("int32_t[1]")
    ok = dict(b=0, m=1 << 30, s=0)
    for bad in (dict(b=(1 << 46) + 1), dict(b=-(1 << 46) - 1), dict(m=-1), dict(s=8), dict(s=-32)):
        v = {**ok, **bad}
        st = lib.hx_conv_s16_reduce(p, ffi.new("int64_t[]", [v["b"]]), ffi.new("int32_t[]", [v["m"]]),
                                    ffi.new("int32_t[]", [v["s"]]), rm)
        assert st == lib.HX_E_UNSUPPORTED, bad
    assert lib.hx_conv_s16_reduce(p, ffi.NULL, ffi.new("int32_t[]", [0x7FFF8000]), ffi.new("int32_t[]", [7]), rm) == lib.HX_OK
    assert rm[0] == 0x7FFF  # TFLite saturates multipliers whose rounding would reach 2^15


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), count=st.integers(1, 300), in_place=st.booleans())
def test_leaky16_matches_numpy(cklib_arch, seed, count, in_place):
    case = random_leaky16_case(np.random.default_rng(seed), count=count)
    assert np.array_equal(c_leaky16(cklib_arch, case, in_place=in_place), numpy_case(case)[0])


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), count=st.integers(1, 300), in_place=st.booleans(), mode=st.integers(0, 1))
def test_add16_matches_numpy(cklib_arch, seed, count, in_place, mode):
    case = random_add16_case(np.random.default_rng(seed), count=count, mode=mode)
    assert np.array_equal(c_add16(cklib_arch, case, in_place=in_place), numpy_case(case)[0])


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 4), channels=st.integers(1, 16))
def test_concat16_and_slice16_match_numpy(cklib_arch, seed, n, channels):
    ffi, lib = cklib_arch.ffi, cklib_arch.lib
    rng = np.random.default_rng(seed)
    parts = [rng.integers(-32768, 32768, size=(int(rng.integers(1, 9)), channels)).astype(np.int16) for _ in range(n)]
    want = np.concatenate(parts, axis=0)
    out = np.zeros(want.size, np.int16)
    keep = [_i16(ffi, p) for p in parts]
    lib.hx_concat_s16(ffi.new("const int16_t *[]", keep), ffi.new("uint32_t[]", [p.size for p in parts]), n,
                      ffi.from_buffer("int16_t[]", out))
    assert np.array_equal(out, want.reshape(-1))
    begin = int(rng.integers(0, want.shape[0]))
    length = int(rng.integers(1, want.shape[0] - begin + 1))
    sl = np.zeros(length * channels, np.int16)
    lib.hx_slice_s16(_i16(ffi, want), begin * channels, length * channels, ffi.from_buffer("int16_t[]", sl))
    assert np.array_equal(sl, want[begin:begin + length].reshape(-1))


def test_add16_modes_differ_only_at_rounding_ties():
    """vector16 rounds each operand once, reference twice: on a million random pairs they differ by one
    LSB a few hundred times (the output rounding hides most operand differences), never by more."""
    rng = np.random.default_rng(1)
    m1, e1, m2, e2, mo, eo = R.add_multipliers(1e-4, 0.55e-4, 0.6e-4, 15)
    a = rng.integers(-32768, 32768, 1 << 20)
    b = rng.integers(-32768, 32768, 1 << 20)
    y = {m: R.add_s16(a, b, left_shift=15, multiplier1=m1, shift1=e1, multiplier2=m2, shift2=e2, multiplier_out=mo,
                      shift_out=eo, mode=m).astype(int) for m in R.ADD_MODES}
    d = np.abs(y["vector16"] - y["reference"])
    assert d.max() == 1 and 100 < np.count_nonzero(d) < 0.01 * a.size


def _tflite_mbqm64(x: int, m: int, s: int) -> int:
    """Literal transcription of TFLite common.cc MultiplyByQuantizedMultiplier(int64_t, int32_t, int)."""
    reduced = (m + (1 << 15)) >> 16 if m < 0x7FFF0000 else 0x7FFF
    total = 15 - s
    r = (x * reduced + (1 << (total - 1))) >> total
    return ((r + (1 << 31)) % (1 << 32)) - (1 << 31)  # static_cast<int32_t>


@settings(max_examples=1000, deadline=None)
@given(x=st.integers(-(1 << 47), (1 << 47) - 1), m=st.integers(0, (1 << 31) - 1), s=st.integers(-31, 7))
def test_requantize64_matches_literal_integer_maths(x, m, s):
    assert int(R.requantize64(x, m, s)) == _tflite_mbqm64(x, m, s)
