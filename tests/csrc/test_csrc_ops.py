"""Op by op: each C kernel (host build, HX_ARCH=ref) equals its numpy reference bit for bit over
randomised shapes and quantisation parameters; the numpy fixed-point maths equals a literal
big-integer transcription of gemmlowp / ruy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from csrc_helpers import numpy_case, random_add_case, random_conv_case, random_prelu_case
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolchain.export.ckernel import numpy_ref as R

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _i8(ffi, a: np.ndarray):
    return ffi.from_buffer("int8_t[]", np.ascontiguousarray(a, dtype=np.int8))


def c_conv(ck, case: dict) -> np.ndarray:
    ffi, lib = ck.ffi, ck.lib
    p = ffi.new("hx_conv_params *", {k: case[k] for k in (
        "in_frames", "in_channels", "out_frames", "out_channels", "kernel", "stride", "dilation", "input_zp",
        "output_zp", "act_min", "act_max", "rounding")})
    w = np.ascontiguousarray(case["w"])
    bias = ffi.new("int32_t[]", [int(v) for v in case["bias"]])
    eff = ffi.new("int32_t[]", case["out_channels"])
    assert lib.hx_conv_fold_bias(p, _i8(ffi, w), bias, eff) == lib.HX_OK
    out = np.zeros(case["out_frames"] * case["out_channels"], np.int8)
    lib.hx_conv_s8(p, _i8(ffi, case["x"]), _i8(ffi, w), eff, ffi.new("int32_t[]", case["mult"].tolist()),
                   ffi.new("int32_t[]", case["shift"].tolist()), ffi.from_buffer("int8_t[]", out))
    return out


def c_prelu(ck, case: dict, *, in_place: bool = False) -> tuple[np.ndarray, np.ndarray]:
    ffi, lib = ck.ffi, ck.lib
    p = ffi.new("hx_prelu_params *", {k: case[k] for k in (
        "frames", "channels", "alpha_count", "input_zp", "alpha_zp", "output_zp", "multiplier_pos", "shift_pos",
        "multiplier_neg", "shift_neg")})
    x = np.ascontiguousarray(case["x"]).reshape(-1)
    alpha = _i8(ffi, case["alpha"])
    arith = x.copy() if in_place else np.zeros_like(x)
    lib.hx_prelu_s8(p, _i8(ffi, arith if in_place else x), alpha, ffi.from_buffer("int8_t[]", arith))
    n_tables = lib.hx_prelu_table_count(p, alpha)
    assert n_tables == len(set(case["alpha"].tolist()))
    tables = ffi.new("int8_t[]", 256 * n_tables)
    index = ffi.new("uint8_t[]", case["channels"])
    assert lib.hx_prelu_make_tables(p, alpha, tables, index) == n_tables
    lut = x.copy() if in_place else np.zeros_like(x)
    lib.hx_lut_s8(case["frames"], case["channels"], tables, index, _i8(ffi, lut if in_place else x),
                  ffi.from_buffer("int8_t[]", lut))
    return arith, lut


def c_add(ck, case: dict, *, in_place: bool = False) -> np.ndarray:
    ffi, lib = ck.ffi, ck.lib
    p = ffi.new("hx_add_params *", {k: case[k] for k in (
        "count", "input1_zp", "input2_zp", "output_zp", "left_shift", "multiplier1", "shift1", "multiplier2",
        "shift2", "multiplier_out", "shift_out", "act_min", "act_max", "mode")})
    t1, t2 = ffi.new("int32_t[256]"), ffi.new("int32_t[256]")
    lib.hx_add_make_tables(p, t1, t2)
    a = case["a"].copy()
    out = a if in_place else np.zeros_like(a)
    lib.hx_add_s8(p, t1, t2, _i8(ffi, a), _i8(ffi, case["b"]), ffi.from_buffer("int8_t[]", out))
    return out


# ------------------------------------------------------------------------------------ kernels
@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), c_in=st.integers(1, 40), c_out=st.integers(1, 40), kernel=st.integers(1, 8),
       stride=st.integers(1, 4), dilation=st.sampled_from([1, 1, 1, 2, 3]), frames=st.integers(1, 6),
       rounding=st.integers(0, 2))
def test_conv_matches_numpy(cklib_arch, seed, c_in, c_out, kernel, stride, dilation, frames, rounding):
    case = random_conv_case(np.random.default_rng(seed), c_in=c_in, c_out=c_out, kernel=kernel, stride=stride,
                            dilation=dilation, out_frames=frames, rounding=rounding)
    assert np.array_equal(c_conv(cklib_arch, case), numpy_case(case)[0])


@pytest.mark.parametrize("rounding", [0, 1, 2])
@pytest.mark.parametrize("c_in,kernel,c_out", [(1, 7, 8), (4, 1, 8), (8, 3, 4), (8, 7, 1), (16, 1, 32), (24, 1, 48),
                                               (32, 8, 48), (48, 2, 128), (7, 9, 9), (8, 8, 16), (33, 2, 17)])
def test_conv_kernel_paths(cklib_arch, rounding, c_in, kernel, c_out):
    """Shapes at every vector-path boundary (short rows, 8/16-tap tails, partial channel blocks)."""
    rng = np.random.default_rng(c_in * 1000 + kernel * 10 + c_out + rounding)
    for frames, stride in ((1, 1), (5, 2), (16, 1)):
        case = random_conv_case(rng, c_in=c_in, kernel=kernel, c_out=c_out, stride=stride, dilation=1,
                                out_frames=frames, rounding=rounding)
        assert np.array_equal(c_conv(cklib_arch, case), numpy_case(case)[0])


@pytest.mark.parametrize("rounding", [0, 1, 2])
def test_conv_rounding_ties(cklib_arch, rounding):
    """Multiplier 1/2 with right shifts: every accumulator lands on or next to a rounding tie."""
    rng = np.random.default_rng(rounding)
    case = random_conv_case(rng, c_in=1, c_out=12, kernel=1, stride=1, dilation=1, out_frames=256, rounding=rounding)
    case["x"] = np.arange(-128, 128, dtype=np.int8).reshape(256, 1)
    case["w"] = np.ones((12, 1, 1), np.int8)
    case["input_zp"] = 0
    case["mult"] = np.full(12, 1 << 30, np.int32)
    case["shift"] = -np.arange(12, dtype=np.int32)
    case["act_min"], case["act_max"], case["output_zp"] = -128, 127, 0
    case["bias"] = np.zeros(12, np.int32)
    assert np.array_equal(c_conv(cklib_arch, case), numpy_case(case)[0])


def test_conv_rounding_modes_differ_where_expected():
    """The modes differ only on (double-)rounding ties: negative ties, and values the first rounding moves."""
    x = np.arange(-4096, 4096)
    m, s = 1 << 30, -3  # x / 16
    away, up, single = (R.requantize(x, m, s, mode) for mode in ("double_away", "double_up", "single_up"))
    exact = x / 16.0
    assert np.all(np.abs(single - exact) <= 0.5)
    assert np.all(np.abs(away - exact) <= 0.5 + 1 / 16) and np.all(np.abs(up - exact) <= 0.5 + 1 / 16)
    assert np.count_nonzero(away != up) and np.count_nonzero(up != single)
    ties = (x % 8 == 0) & (x % 16 != 0)
    assert np.array_equal(away[ties & (x < 0)], np.floor(exact[ties & (x < 0)]))   # half away from zero
    assert np.array_equal(up[ties], np.floor(exact[ties] + 0.5))                    # half up
    assert np.array_equal(single, np.floor(x / 16.0 + 0.5))                         # one rounding


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), frames=st.integers(1, 8), channels=st.integers(1, 48),
       in_place=st.booleans())
def test_prelu_matches_numpy(cklib_arch, seed, frames, channels, in_place):
    case = random_prelu_case(np.random.default_rng(seed), frames=frames, channels=channels)
    want = numpy_case(case)[0]
    arith, lut = c_prelu(cklib_arch, case, in_place=in_place)
    assert np.array_equal(arith, want)
    assert np.array_equal(lut, want)


def test_prelu_tables_cover_every_input(cklib_arch):
    """All 256 inputs x every alpha value: the table route equals the arithmetic."""
    rng = np.random.default_rng(7)
    case = random_prelu_case(rng, frames=256, channels=64)
    case["x"] = np.repeat(np.arange(-128, 128, dtype=np.int8)[:, None], 64, axis=1)
    case["alpha"] = rng.integers(-128, 128, 64).astype(np.int8)
    case["alpha_count"] = 64
    want = numpy_case(case)[0]
    arith, lut = c_prelu(cklib_arch, case)
    assert np.array_equal(arith, want) and np.array_equal(lut, want)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), count=st.integers(1, 300), in_place=st.booleans(), mode=st.integers(0, 1))
def test_add_matches_numpy(cklib_arch, seed, count, in_place, mode):
    case = random_add_case(np.random.default_rng(seed), count=count, mode=mode)
    assert np.array_equal(c_add(cklib_arch, case, in_place=in_place), numpy_case(case)[0])


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 4), channels=st.integers(1, 16))
def test_concat_and_slice_match_numpy(cklib_arch, seed, n, channels):
    ffi, lib = cklib_arch.ffi, cklib_arch.lib
    rng = np.random.default_rng(seed)
    parts = [rng.integers(-128, 128, size=(int(rng.integers(1, 9)), channels)).astype(np.int8) for _ in range(n)]
    want = R.concat_s8(parts)
    out = np.zeros(want.size, np.int8)
    keep = [_i8(ffi, p) for p in parts]
    ptrs = ffi.new("const int8_t *[]", keep)
    sizes = ffi.new("uint32_t[]", [p.size for p in parts])
    lib.hx_concat_s8(ptrs, sizes, n, ffi.from_buffer("int8_t[]", out))
    assert np.array_equal(out, want.reshape(-1))
    frames = want.shape[0]
    begin = int(rng.integers(0, frames))
    length = int(rng.integers(1, frames - begin + 1))
    sl = np.zeros(length * channels, np.int8)
    lib.hx_slice_s8(_i8(ffi, want), begin * channels, length * channels, ffi.from_buffer("int8_t[]", sl))
    assert np.array_equal(sl, R.slice_s8(want, begin, length).reshape(-1))


def test_fold_bias_refuses_inexact_ranges(cklib):
    ffi, lib = cklib.ffi, cklib.lib
    p = ffi.new("hx_conv_params *", dict(in_frames=1, in_channels=4, out_frames=1, out_channels=1, kernel=1, stride=1,
                                         dilation=1, input_zp=-128, output_zp=0, act_min=-128, act_max=127))
    w = np.full(4, 127, np.int8)
    eff = ffi.new("int32_t[1]")
    assert lib.hx_conv_fold_bias(p, _i8(ffi, w), ffi.new("int32_t[]", [(1 << 30) - 1]), eff) == lib.HX_E_UNSUPPORTED
    assert lib.hx_conv_fold_bias(p, _i8(ffi, w), ffi.new("int32_t[]", [1000]), eff) == lib.HX_OK
    assert eff[0] == 1000 + 128 * 4 * 127
    assert lib.hx_conv_fold_bias(p, _i8(ffi, w), ffi.NULL, eff) == lib.HX_OK and eff[0] == 128 * 4 * 127
    p.kernel, p.in_channels = 2, 40000  # 80000 taps: int32 accumulation no longer provably exact
    assert lib.hx_conv_fold_bias(p, _i8(ffi, np.zeros(80000, np.int8)), ffi.NULL, eff) == lib.HX_E_UNSUPPORTED


# ------------------------------------------------------------------------- fixed-point maths
def _gemmlowp_srdhm(a: int, b: int) -> int:
    """Literal transcription of gemmlowp's SaturatingRoundingDoublingHighMul (C++ int64, truncating /)."""
    if a == b == -(1 << 31):
        return (1 << 31) - 1
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    q = ab + nudge
    return q // (1 << 31) if q >= 0 else -((-q) // (1 << 31))


def _gemmlowp_rdbpot(x: int, e: int) -> int:
    mask = (1 << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> e) + (1 if remainder > threshold else 0)


def _wrap(v: int) -> int:
    return ((v + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


@settings(max_examples=1000, deadline=None)
@given(x=st.integers(-(1 << 31), (1 << 31) - 1), m=st.integers(0, (1 << 31) - 1), e=st.integers(-31, 30))
def test_requantize_matches_literal_integer_maths(x, m, e):
    left, right = max(e, 0), max(-e, 0)
    xs = _wrap(x << left)
    want_away = _gemmlowp_rdbpot(_gemmlowp_srdhm(xs, m), right)
    t = (xs * m + (1 << 30)) >> 31
    want_up = (t + ((1 << right) >> 1)) >> right
    want_single = (xs * m + (1 << (30 + right))) >> (31 + right)
    assert int(R.requantize(x, m, e, "double_away")) == want_away
    assert int(R.requantize(x, m, e, "double_up")) == want_up
    assert int(R.requantize(x, m, e, "single_up")) == want_single


@settings(max_examples=500, deadline=None)
@given(real=st.floats(min_value=1e-12, max_value=1e4, allow_nan=False, allow_infinity=False))
def test_quantize_multiplier(real):
    m, s = R.quantize_multiplier(real)
    if s == 0 and m == 0:
        assert real < 2.0 ** -31
        return
    assert (1 << 30) <= m < (1 << 31)
    assert math.isclose(m * 2.0 ** (s - 31), real, rel_tol=2.0 ** -30)


def test_quantize_multiplier_edges():
    assert R.quantize_multiplier(0.0) == (0, 0)
    assert R.quantize_multiplier(1.0) == (1 << 30, 1)
    assert R.quantize_multiplier(0.5) == (1 << 30, 0)
    m, s = R.quantize_multiplier(1.0 - 2.0 ** -40)  # mantissa rounds up to 2^31: renormalised
    assert (m, s) == (1 << 30, 1)
    with pytest.raises(ValueError):
        R.quantize_multiplier(-1.0)


def test_add_modes_differ_only_in_rounding():
    """vector16 rounds each operand once, reference twice: with "round" decimal scales (frequent exact
    ties) the outputs differ by one LSB now and then, never more."""
    from toolchain.export.ckernel.numpy_ref import add_multipliers

    rng = np.random.default_rng(1)
    m1, e1, m2, e2, mo, eo = add_multipliers(0.012, 0.01, 0.02)
    a = rng.integers(-128, 128, 4096)
    b = rng.integers(-128, 128, 4096)
    y = {m: R.add_s8(a, b, input1_zp=2, input2_zp=3, output_zp=1, left_shift=20, multiplier1=m1, shift1=e1,
                     multiplier2=m2, shift2=e2, multiplier_out=mo, shift_out=eo, mode=m) for m in R.ADD_MODES}
    d = np.abs(y["vector16"].astype(int) - y["reference"])
    assert d.max() == 1 and 0 < np.count_nonzero(d) < 0.05 * a.size
