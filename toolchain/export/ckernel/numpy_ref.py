"""Numpy reference of every C-kernel op, and a whole-blob executor: the ground truth for csrc/.

Each function computes, with plain int64 numpy arithmetic, exactly what the matching C kernel in
``csrc/ref/`` computes (and what the LiteRT interpreter computes for that op). The C code is
checked against these op by op (``tests/csrc``) and :func:`run_blob` against LiteRT, so a
mismatch can always be pinned on one side. Arrays are ``(frames, channels)`` (NWC with the batch
and H = 1 dropped), the C kernel's memory layout.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from toolchain.export.ckernel.format import ADD_MODES, ROUNDING_MODES, parse_blob

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1



# ----------------------------------------------------------------------------- multipliers
def _round_half_away(x: float) -> float:
    """C's ``round()`` (TfLiteRound): halves go away from zero."""
    return math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite ``QuantizeMultiplier``: ``real ≈ m · 2^(shift - 31)``, ``m`` in ``[2^30, 2^31)``
    (``frexp`` in double precision, the mantissa rounded half away from zero).

    ``real`` is a Python float (an IEEE double), computed by the caller with the same float32 /
    double promotions as the TFLite kernel's Prepare.
    """
    real = float(real)
    if real == 0.0:
        return 0, 0
    if not math.isfinite(real) or real < 0:
        raise ValueError(f"multiplier must be a finite non-negative number, got {real!r}")
    q, shift = math.frexp(real)
    q_fixed = int(_round_half_away(q * float(1 << 31)))
    if q_fixed > (1 << 31):
        raise ValueError(f"multiplier {real!r}: mantissa out of range")
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    if q_fixed > INT32_MAX:
        raise ValueError(f"multiplier {real!r}: mantissa out of range")
    return int(q_fixed), int(shift)


def quantize_multiplier_smaller_than_one(real: float) -> tuple[int, int]:
    """TFLite ``QuantizeMultiplierSmallerThanOneExp``: as above, with ``0 < real < 1``."""
    if not 0.0 < real < 1.0:
        raise ValueError(f"multiplier {real!r} must be in (0, 1)")
    m, s = quantize_multiplier(real)
    if s > 0:
        raise ValueError(f"multiplier {real!r} gave a left shift {s}")
    return m, s


# ------------------------------------------------------------------------ fixed-point ops
def _i64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.int64)


def _wrap32(x: np.ndarray) -> np.ndarray:
    """Two's-complement wrap to int32 (as C's unsigned arithmetic then a cast)."""
    x = _i64(x)
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def _shift_left32(x, n) -> np.ndarray:
    """``x * 2^n`` wrapped to int32, ``n`` in [0, 31] (the C code shifts as uint32)."""
    return _wrap32(_i64(x) << _i64(n))


def saturating_rounding_doubling_high_mul(a, b) -> np.ndarray:
    """gemmlowp: ``round_half_away(a · b / 2^31)``, saturating the one overflow case."""
    a, b = _i64(a), _i64(b)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    t = ab + nudge
    q = np.where(t >= 0, t >> 31, -((-t) >> 31))  # C division truncates toward zero
    return np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, q)


def rounding_divide_by_pot(x, exponent) -> np.ndarray:
    """gemmlowp: ``x / 2^exponent`` rounded half away from zero, ``exponent`` in [0, 31] (broadcasts)."""
    x = _i64(x)
    e = _i64(exponent)
    mask = (np.int64(1) << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> e) + (remainder > threshold)


def requantize(x, multiplier, shift, mode: str = "double_away") -> np.ndarray:
    """Apply ``(multiplier, shift)`` to int32 ``x`` (broadcasting) with rounding ``mode``.

    As in TFLite (``tflite/kernels/internal/common.h``) and ruy: after a wrapping left shift by
    ``max(shift, 0)``, ``x · m · 2^(shift-31)`` is rounded back to an integer, one of three ways
    in the LiteRT builds we compare against (:data:`ROUNDING_MODES`):

    * ``"double_away"``: gemmlowp's ``SaturatingRoundingDoublingHighMul`` (``round(x·m / 2^31)``,
      ties up) then ``RoundingDivideByPOT`` (ties away from zero); TFLite's reference kernels,
      and its PRELU / ADD kernels on every CPU;
    * ``"double_up"``: ruy's x86 AVX2 / AVX-512 kernels (the CONV_2D GEMM on an x86 host):
      ``(x·m + 2^30) >> 31`` then a rounding right shift, both ties up;
    * ``"single_up"``: ruy's reference and NEON kernels (CONV_2D on an ARM board), and TFLite
      built with ``TFLITE_SINGLE_ROUNDING``: one rounding, ties up.
    """
    x, m, s = np.broadcast_arrays(_i64(x), _i64(multiplier), _i64(shift))
    left, right = np.maximum(s, 0), np.maximum(-s, 0)
    xs = _wrap32(x << left)
    if mode == "double_away":
        return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(xs, m), right)
    if mode == "double_up":
        t = (xs * m + (1 << 30)) >> 31
        return (t + ((np.int64(1) << right) >> 1)) >> right
    if mode == "single_up":
        total = 31 + right
        return (xs * m + (np.int64(1) << (total - 1))) >> total
    raise ValueError(f"unknown rounding mode {mode!r}; expected one of {sorted(ROUNDING_MODES)}")


def _clamp_s8(x, lo: int = -128, hi: int = 127) -> np.ndarray:
    return np.clip(_i64(x), lo, hi).astype(np.int8)


# ------------------------------------------------------------------------------ kernels
def conv_out_frames(frames_in: int, kernel: int, stride: int, dilation: int) -> int:
    """VALID output length along time."""
    eff = dilation * (kernel - 1) + 1
    if frames_in < eff:
        return 0
    return (frames_in - eff) // stride + 1


def conv_s8(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, multiplier: np.ndarray, shift: np.ndarray, *,
            stride: int = 1, dilation: int = 1, input_zp: int = 0, output_zp: int = 0,
            act_min: int = -128, act_max: int = 127, rounding: str = "double_up") -> np.ndarray:
    """1-D VALID convolution, NWC: ``x (W_in, C_in)``, ``w (C_out, K, C_in)`` (TFLite OHWI with H=1).

    ``acc[t, o] = bias[o] + Σ_k Σ_i (x[t·s + k·d, i] - input_zp) · w[o, k, i]``, then per-channel
    requantisation, ``+ output_zp``, clamp to ``[act_min, act_max]``.
    """
    x = _i64(x)
    w = _i64(w)
    c_out, k, c_in = w.shape
    w_in = x.shape[0]
    if x.shape[1] != c_in:
        raise ValueError(f"input has {x.shape[1]} channels, weights expect {c_in}")
    w_out = conv_out_frames(w_in, k, stride, dilation)
    xo = x - int(input_zp)
    acc = np.zeros((w_out, c_out), dtype=np.int64)
    for j in range(k):
        taps = xo[j * dilation: j * dilation + (w_out - 1) * stride + 1: stride]  # (W_out, C_in)
        acc += taps @ w[:, j, :].T
    if bias is not None:
        acc += _i64(bias)[None, :]
    y = requantize(acc, _i64(multiplier)[None, :], _i64(shift)[None, :], rounding) + int(output_zp)
    return _clamp_s8(y, act_min, act_max)


def prelu_s8(x: np.ndarray, alpha: np.ndarray, *, input_zp: int, alpha_zp: int, output_zp: int,
             multiplier_pos: int, shift_pos: int, multiplier_neg: int, shift_neg: int) -> np.ndarray:
    """TFLite int8 PRELU: ``alpha`` per channel (broadcast over frames) or a single value."""
    x = _i64(x)
    a = _i64(alpha).reshape(-1)
    v = x - int(input_zp)
    av = a - int(alpha_zp)
    if a.size != 1 and a.size != x.shape[-1]:
        raise ValueError(f"alpha of {a.size} values for {x.shape[-1]} channels")
    pos = requantize(v, multiplier_pos, shift_pos, "double_away")
    neg = requantize(v * av, multiplier_neg, shift_neg, "double_away")
    return _clamp_s8(np.where(v >= 0, pos, neg) + int(output_zp))


def _shift_signed(x, n) -> np.ndarray:
    """NEON ``vshl`` by a signed count: ``x << n`` (wrapping) for n >= 0, ``floor(x / 2^-n)`` otherwise."""
    x, n = np.broadcast_arrays(_i64(x), _i64(n))
    return np.where(n >= 0, _wrap32(x << np.maximum(n, 0)), x >> np.maximum(-n, 0))


def add_s8(a: np.ndarray, b: np.ndarray, *, input1_zp: int, input2_zp: int, output_zp: int, left_shift: int,
           multiplier1: int, shift1: int, multiplier2: int, shift2: int, multiplier_out: int, shift_out: int,
           act_min: int = -128, act_max: int = 127, mode: str = "vector16") -> np.ndarray:
    """TFLite int8 ADD (general rescaling path, ``left_shift`` = 20), equal shapes, flattened order.

    ``mode="reference"``: TFLite's reference kernel for every element: each operand
    ``rdbpot(srdhm((q - zp) << left_shift, m), -shift)``, the sum ``rdbpot(srdhm(sum, m_out), -s_out)``.
    ``mode="vector16"``: LiteRT's optimized kernel (``AddElementwiseInt8``), whose NEON body (also used
    on x86 through NEON_2_SSE) handles whole chunks of 16 elements with a single rounding per operand,
    ``srdhm((q - zp) << (left_shift + shift), m)``, and narrows the output through int16 (truncate, add
    the zero point with int16 wrap-around, saturate to int8); the remaining ``n % 16`` elements take the
    reference path.
    """
    a, b = _i64(a).reshape(-1), _i64(b).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"ADD operands differ in shape: {a.shape} vs {b.shape}")
    if mode not in ADD_MODES:
        raise ValueError(f"unknown ADD mode {mode!r}; expected one of {sorted(ADD_MODES)}")
    va, vb = a - int(input1_zp), b - int(input2_zp)
    ref_a = requantize(_shift_left32(va, left_shift), multiplier1, shift1, "double_away")
    ref_b = requantize(_shift_left32(vb, left_shift), multiplier2, shift2, "double_away")
    out = requantize(_wrap32(ref_a + ref_b), multiplier_out, shift_out, "double_away") + int(output_zp)
    out = np.clip(out, -128, 127)
    n16 = a.size // 16 * 16 if mode == "vector16" else 0
    if n16:
        sa = saturating_rounding_doubling_high_mul(_shift_signed(va[:n16], left_shift + shift1), multiplier1)
        sb = saturating_rounding_doubling_high_mul(_shift_signed(vb[:n16], left_shift + shift2), multiplier2)
        r = requantize(_wrap32(sa + sb), multiplier_out, shift_out, "double_away")
        r16 = ((r + (1 << 15)) & 0xFFFF) - (1 << 15)                       # vmovn_s32: keep the low 16 bits
        s16 = ((r16 + int(output_zp) + (1 << 15)) & 0xFFFF) - (1 << 15)    # vaddq_s16 wraps
        out[:n16] = np.clip(s16, -128, 127)                                # vqmovn_s16 saturates
    return _clamp_s8(out, act_min, act_max)


def concat_s8(parts: Sequence[np.ndarray]) -> np.ndarray:
    """Concatenation along time (frames): identical quantisation on every operand."""
    return np.concatenate([np.asarray(p, dtype=np.int8) for p in parts], axis=0)


def slice_s8(x: np.ndarray, begin: int, frames: int) -> np.ndarray:
    """Frames ``[begin, begin + frames)`` of ``x`` (the graph's STRIDED_SLICE, stride 1)."""
    x = np.asarray(x, dtype=np.int8)
    if begin < 0 or frames < 0 or begin + frames > x.shape[0]:
        raise ValueError(f"slice [{begin}, {begin + frames}) outside {x.shape[0]} frames")
    return x[begin:begin + frames].copy()


# ------------------------------------------------------------------------ 16x8 kernels
# TFLite's 16x8 scheme: int16 activations with zero point 0, int8 per-channel weights, int64 bias.
INT16_MIN, INT16_MAX = -(1 << 15), (1 << 15) - 1


def _clamp_s16(x, lo: int = INT16_MIN, hi: int = INT16_MAX) -> np.ndarray:
    return np.clip(_i64(x), lo, hi).astype(np.int16)


def reduced_multiplier(multiplier) -> np.ndarray:
    """TFLite's 16-bit form of a multiplier for int64 accumulators: ``(m + 2^15) >> 16``, at most 0x7FFF."""
    m = _i64(multiplier)
    return np.where(m < 0x7FFF0000, (m + (1 << 15)) >> 16, 0x7FFF)


def requantize64(x, multiplier, shift) -> np.ndarray:
    """TFLite ``MultiplyByQuantizedMultiplier(int64 x, m, shift)`` (common.cc, double-rounding build).

    One rounding, ties up: ``(x · rm + 2^(14 - shift)) >> (15 - shift)`` with the reduced multiplier
    ``rm`` (:func:`reduced_multiplier`), the result wrapped to int32 as the C++ cast does. ``shift``
    must be in [-31, 7] and ``|x| < 2^47`` (TFLite's stated input range; the blob writer checks it).
    """
    x, rm, s = np.broadcast_arrays(_i64(x), reduced_multiplier(multiplier), _i64(shift))
    total = 15 - s
    return _wrap32((x * rm + (np.int64(1) << (total - 1))) >> total)


def conv_s16(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, multiplier: np.ndarray, shift: np.ndarray, *,
             stride: int = 1, dilation: int = 1, act_min: int = INT16_MIN, act_max: int = INT16_MAX) -> np.ndarray:
    """16x8 1-D VALID convolution (TFLite reference_integer_ops::ConvPerChannel, int16 input, int64 bias).

    ``x (W_in, C_in)`` int16 with zero point 0, ``w (C_out, K, C_in)`` int8, ``bias`` int64: the int64
    accumulator ``bias[o] + Σ x · w`` is requantised by :func:`requantize64`, then clamped to
    ``[act_min, act_max]`` (the output zero point is 0).
    """
    x = _i64(x)
    w = _i64(w)
    c_out, k, c_in = w.shape
    if x.shape[1] != c_in:
        raise ValueError(f"input has {x.shape[1]} channels, weights expect {c_in}")
    w_out = conv_out_frames(x.shape[0], k, stride, dilation)
    acc = np.zeros((w_out, c_out), dtype=np.int64)
    for j in range(k):
        taps = x[j * dilation: j * dilation + (w_out - 1) * stride + 1: stride]
        acc += taps @ w[:, j, :].T
    if bias is not None:
        acc += _i64(bias)[None, :]
    y = requantize64(acc, _i64(multiplier)[None, :], _i64(shift)[None, :])
    return _clamp_s16(y, act_min, act_max)


def leaky_relu_s16(x: np.ndarray, *, multiplier_identity: int, shift_identity: int, multiplier_alpha: int,
                   shift_alpha: int) -> np.ndarray:
    """TFLite int16 LEAKY_RELU (reference_ops::QuantizeLeakyRelu): ``x >= 0`` scaled by the identity
    multiplier, ``x < 0`` by the alpha one (slope folded in), double rounding, clamped to int16."""
    x = _i64(x)
    pos = requantize(x, multiplier_identity, shift_identity, "double_away")
    neg = requantize(x, multiplier_alpha, shift_alpha, "double_away")
    return _clamp_s16(np.where(x >= 0, pos, neg))


def add_s16(a: np.ndarray, b: np.ndarray, *, left_shift: int, multiplier1: int, shift1: int, multiplier2: int,
            shift2: int, multiplier_out: int, shift_out: int, act_min: int = INT16_MIN, act_max: int = INT16_MAX,
            mode: str = "vector16") -> np.ndarray:
    """TFLite int16 ADD, general-scale path (``left_shift`` = 15, zero points 0), equal shapes, flat order.

    ``mode="reference"``: every element ``rdbpot(srdhm(q << left_shift, m), -shift)`` per operand.
    ``mode="vector16"``: LiteRT's ``AddElementwiseInt16`` NEON body (also x86 through NEON_2_SSE) on
    whole 16-element chunks rounds each operand once, ``srdhm(q << (left_shift + shift), m)`` (a
    negative count shifts right, flooring); the ``n % 16`` tail is the reference. Both then scale the
    sum by the output multiplier (double rounding) and clamp in int32, so nothing wraps through int16.
    """
    a, b = _i64(a).reshape(-1), _i64(b).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"ADD operands differ in shape: {a.shape} vs {b.shape}")
    if mode not in ADD_MODES:
        raise ValueError(f"unknown ADD mode {mode!r}; expected one of {sorted(ADD_MODES)}")
    sa = requantize(_shift_left32(a, left_shift), multiplier1, shift1, "double_away")
    sb = requantize(_shift_left32(b, left_shift), multiplier2, shift2, "double_away")
    n16 = a.size // 16 * 16 if mode == "vector16" else 0
    if n16:
        sa[:n16] = saturating_rounding_doubling_high_mul(_shift_signed(a[:n16], left_shift + shift1), multiplier1)
        sb[:n16] = saturating_rounding_doubling_high_mul(_shift_signed(b[:n16], left_shift + shift2), multiplier2)
    out = requantize(_wrap32(sa + sb), multiplier_out, shift_out, "double_away")
    return _clamp_s16(out, act_min, act_max)


# --------------------------------------------------------------------- quantisation maths
def conv_multipliers(input_scale: float, filter_scales: Sequence[float], output_scale: float) -> tuple[list[int], list[int]]:
    """Per-channel ``(m, e)`` as TFLite's PopulateConvolutionQuantizationParams (double maths)."""
    ms, ss = [], []
    for fs in filter_scales:
        eff = float(np.float32(input_scale)) * float(np.float32(fs)) / float(np.float32(output_scale))
        m, s = quantize_multiplier(eff)
        ms.append(m)
        ss.append(s)
    return ms, ss


def prelu_multipliers(input_scale: float, alpha_scale: float, output_scale: float) -> tuple[int, int, int, int]:
    """TFLite PreluPrepare: both ratios are evaluated in float32, then widened to double."""
    i, a, o = np.float32(input_scale), np.float32(alpha_scale), np.float32(output_scale)
    with np.errstate(all="ignore"):
        r1 = float(np.float32(i / o))
        r2 = float(np.float32(np.float32(i * a) / o))
    m1, s1 = quantize_multiplier(r1)
    m2, s2 = quantize_multiplier(r2)
    return m1, s1, m2, s2


def add_multipliers(input1_scale: float, input2_scale: float, output_scale: float,
                    left_shift: int = 20) -> tuple[int, int, int, int, int, int]:
    """TFLite add.cc Prepare (int8 general path): ``(m1, s1, m2, s2, m_out, s_out)``."""
    s1, s2, so = np.float32(input1_scale), np.float32(input2_scale), np.float32(output_scale)
    twice_max = float(np.float32(2) * max(s1, s2))          # float maths, widened to double
    r1 = float(s1) / twice_max
    r2 = float(s2) / twice_max
    ro = twice_max / float(np.float32(np.float32(1 << left_shift) * so))
    m1, e1 = quantize_multiplier_smaller_than_one(r1)
    m2, e2 = quantize_multiplier_smaller_than_one(r2)
    mo, eo = quantize_multiplier_smaller_than_one(ro)
    return m1, e1, m2, e2, mo, eo


def activation_range(fused: str, scale: float, zero_point: int, bits: int = 8) -> tuple[int, int]:
    """TFLite CalculateActivationRangeQuantized for int8 / int16 (``fused`` ∈ NONE, RELU, RELU6, RELU_N1_TO_1)."""
    lo_t, hi_t = (-128, 127) if bits == 8 else (INT16_MIN, INT16_MAX)

    def q(v: float) -> int:
        t = np.float32(v) / np.float32(scale)
        return int(zero_point) + int(_round_half_away(float(t)))

    if fused == "NONE":
        return lo_t, hi_t
    if fused == "RELU":
        return max(lo_t, q(0.0)), hi_t
    if fused == "RELU6":
        return max(lo_t, q(0.0)), min(hi_t, q(6.0))
    if fused == "RELU_N1_TO_1":
        return max(lo_t, q(-1.0)), min(hi_t, q(1.0))
    raise ValueError(f"unsupported fused activation {fused!r}")


# ------------------------------------------------------------------- whole-blob executor
class BlobRunner:
    """Executes a C-kernel blob with the kernels above: the numpy twin of ``hx_model_process``.

    Works on the same two byte regions as the C arena (``state`` persists across steps, ``scratch``
    holds one step's activations) at the offsets the blob planned, so in-place and aliasing
    decisions of the planner are exercised here too. :meth:`reset` sets every state tensor to its
    zero point, as ``hx_model_reset`` does.
    """

    def __init__(self, blob: bytes) -> None:
        self.model = parse_blob(blob)
        self.block = self.model.block
        self.dtype = np.dtype(np.int16 if self.model.act_bits == 16 else np.int8)
        self.state = np.zeros(self.model.state_bytes, dtype=np.uint8)
        self.scratch = np.zeros(self.model.scratch_bytes, dtype=np.uint8)
        self.reset()

    def reset(self) -> None:
        self.state[:] = 0
        for t in self.model.state_tensors():
            self.state[t.offset:t.offset + t.bytes].view(self.dtype)[:] = t.zero_point

    def get_state(self) -> bytes:
        return self.state.tobytes()

    def set_state(self, data: bytes) -> None:
        if len(data) != self.state.size:
            raise ValueError(f"state is {self.state.size} bytes, got {len(data)}")
        self.state[:] = np.frombuffer(data, dtype=np.uint8)

    def _view(self, index: int) -> np.ndarray:
        """Tensor ``index`` as a (frames, channels) int8 / int16 view into its region (little-endian host)."""
        t = self.model.tensors[index]
        region = self.state if t.is_state else self.scratch
        return region[t.offset:t.offset + t.bytes].view(self.dtype).reshape(t.frames, t.channels)

    def step(self, x_q: np.ndarray) -> np.ndarray:
        m = self.model
        self._view(m.input_tensor)[:] = np.asarray(x_q, dtype=self.dtype).reshape(-1, 1)
        for op in m.ops:
            ins = [self._view(i).copy() for i in op.inputs]
            out = self._view(op.output)
            p = op.params
            if op.kind == "CONV" and m.act_bits == 16:
                y = conv_s16(ins[0], op.weights, op.bias, op.multiplier, op.shift, stride=p["stride"],
                             dilation=p["dilation"], act_min=p["act_min"], act_max=p["act_max"])
            elif op.kind == "LEAKY_RELU":
                y = leaky_relu_s16(ins[0], **{k: p[k] for k in ("multiplier_identity", "shift_identity",
                                                                "multiplier_alpha", "shift_alpha")})
            elif op.kind == "ADD" and m.act_bits == 16:
                y = add_s16(ins[0].reshape(-1), ins[1].reshape(-1), left_shift=p["left_shift"],
                            multiplier1=p["multiplier1"], shift1=p["shift1"], multiplier2=p["multiplier2"],
                            shift2=p["shift2"], multiplier_out=p["multiplier_out"], shift_out=p["shift_out"],
                            act_min=p["act_min"], act_max=p["act_max"], mode=p["mode"])
            elif op.kind == "CONV":
                y = conv_s8(ins[0], op.weights, op.bias, op.multiplier, op.shift, stride=p["stride"],
                            dilation=p["dilation"], input_zp=p["input_zp"], output_zp=p["output_zp"],
                            act_min=p["act_min"], act_max=p["act_max"], rounding=p["rounding"])
            elif op.kind == "PRELU":
                y = prelu_s8(ins[0], op.alpha, input_zp=p["input_zp"], alpha_zp=p["alpha_zp"],
                             output_zp=p["output_zp"], multiplier_pos=p["multiplier_pos"], shift_pos=p["shift_pos"],
                             multiplier_neg=p["multiplier_neg"], shift_neg=p["shift_neg"])
            elif op.kind == "ADD":
                y = add_s8(ins[0].reshape(-1), ins[1].reshape(-1), input1_zp=p["input1_zp"], input2_zp=p["input2_zp"],
                           output_zp=p["output_zp"], left_shift=p["left_shift"], multiplier1=p["multiplier1"],
                           shift1=p["shift1"], multiplier2=p["multiplier2"], shift2=p["shift2"],
                           multiplier_out=p["multiplier_out"], shift_out=p["shift_out"],
                           act_min=p["act_min"], act_max=p["act_max"], mode=p["mode"])
            elif op.kind == "CONCAT":
                y = np.concatenate([v.reshape(-1, out.shape[1]) for v in ins], axis=0)
            elif op.kind == "COPY":
                e = self.dtype.itemsize
                y = ins[0].reshape(-1)[p["src_offset"] // e:(p["src_offset"] + p["bytes"]) // e]
            else:  # pragma: no cover - parse_blob refuses unknown kinds
                raise ValueError(f"unknown op kind {op.kind}")
            out[:] = np.asarray(y, dtype=self.dtype).reshape(out.shape)
        return self._view(m.output_tensor).reshape(-1).copy()

    def process(self, x_q: np.ndarray) -> np.ndarray:
        x_q = np.asarray(x_q, dtype=self.dtype).reshape(-1)
        if x_q.size % self.block:
            raise ValueError(f"{x_q.size} samples is not a multiple of the block {self.block}")
        out = [self.step(x_q[i:i + self.block]) for i in range(0, x_q.size, self.block)]
        return np.concatenate(out) if out else np.zeros(0, dtype=self.dtype)


def run_blob(blob: bytes, x_q: np.ndarray) -> np.ndarray:
    """Stream ``x_q`` (int8 or int16 as the blob's activation type, a multiple of the block) through a fresh model."""
    return BlobRunner(blob).process(x_q)


__all__ = [
    "ADD_MODES", "ROUNDING_MODES", "BlobRunner", "activation_range", "add_multipliers", "add_s8", "add_s16", "concat_s8",
    "conv_multipliers", "conv_out_frames", "conv_s8", "conv_s16", "leaky_relu_s16", "prelu_multipliers", "prelu_s8",
    "quantize_multiplier", "reduced_multiplier", "requantize64",
    "quantize_multiplier_smaller_than_one", "requantize", "rounding_divide_by_pot",
    "saturating_rounding_doubling_high_mul", "run_blob", "slice_s8",
]
