/*
 * hx_fixedpoint.h - fixed-point requantisation shared by the ref and opt kernels (internal).
 *
 * Bit-exact scalar forms of the three rounding schemes of hx_rounding (hx_types.h). The numpy
 * twins are in toolchain/export/ckernel/numpy_ref.py (requantize). Assumes two's complement integers and
 * arithmetic right shifts of negative values (checked at compile time below), as every
 * compiler this project targets provides.
 */
#ifndef HX_FIXEDPOINT_H
#define HX_FIXEDPOINT_H

#include <stdint.h>

#include "hx/hx_types.h"

#if defined(__GNUC__) || defined(__clang__)
#define HX_INLINE static __inline__ __attribute__((always_inline))
#else
#define HX_INLINE static
#endif

/* Compile-time checks of the integer model the kernels rely on. */
typedef char hx_check_arithmetic_shift[((-8) >> 1) == -4 ? 1 : -1];
typedef char hx_check_arithmetic_shift64[(((int64_t)-8) >> 1) == -4 ? 1 : -1];

/* uint32 -> int32 by two's complement (no implementation-defined conversion). */
HX_INLINE int32_t hx_u32_to_i32(uint32_t u) {
    return u <= 0x7fffffffu ? (int32_t)u : (int32_t)(u - 0x80000000u) - 0x7fffffff - 1;
}

/* x * 2^n wrapped to int32 (n in [0, 31]), as TFLite's x * (1 << n) behaves on every target. */
HX_INLINE int32_t hx_shl32(int32_t x, int n) {
    return hx_u32_to_i32((uint32_t)x << n);
}

/* gemmlowp SaturatingRoundingDoublingHighMul for b >= 0 (every multiplier here is): gemmlowp's
 * nudge-then-truncate is exactly floor(a*b / 2^31 + 1/2) (round half up) once the a == b == INT32_MIN
 * saturation case is excluded, which b >= 0 does. */
HX_INLINE int32_t hx_srdhm(int32_t a, int32_t b) {
    return (int32_t)(((int64_t)a * (int64_t)b + ((int64_t)1 << 30)) >> 31);
}

/* gemmlowp RoundingDivideByPOT: x / 2^e rounded half away from zero, e in [0, 31]. Branch-free:
 * for e >= 1 it is floor((x + 2^(e-1) - [x < 0]) / 2^e). */
HX_INLINE int32_t hx_rdbpot(int32_t x, int e) {
    const int64_t half = ((int64_t)1 << e) >> 1;
    const int64_t fix = (x < 0 && e > 0) ? 1 : 0;
    return (int32_t)(((int64_t)x + half - fix) >> e);
}

/* x / 2^e rounded half up, e in [0, 31]. */
HX_INLINE int32_t hx_rshift_up(int32_t x, int e) {
    return (int32_t)(((int64_t)x + (((int64_t)1 << e) >> 1)) >> e);
}

/* TFLite MultiplyByQuantizedMultiplier (double rounding: half up, then half away from zero);
 * m >= 0, e in [-31, 30]. */
HX_INLINE int32_t hx_mbqm(int32_t x, int32_t m, int32_t e) {
    const int left = e > 0 ? (int)e : 0;
    const int right = e > 0 ? 0 : (int)-e;
    return hx_rdbpot(hx_srdhm(hx_shl32(x, left), m), right);
}

/* ruy x86 AVX2/AVX-512: two roundings, both half up. */
HX_INLINE int32_t hx_requant_double_up(int32_t x, int32_t m, int32_t e) {
    const int left = e > 0 ? (int)e : 0;
    const int right = e > 0 ? 0 : (int)-e;
    return hx_rshift_up(hx_srdhm(hx_shl32(x, left), m), right);
}

/* ruy reference / NEON: one rounding, half up. */
HX_INLINE int32_t hx_requant_single_up(int32_t x, int32_t m, int32_t e) {
    const int left = e > 0 ? (int)e : 0;
    const int total = 31 + (e > 0 ? 0 : (int)-e);
    return (int32_t)(((int64_t)hx_shl32(x, left) * (int64_t)m + ((int64_t)1 << (total - 1))) >> total);
}

/* Requantise an accumulator with the given hx_rounding mode. */
HX_INLINE int32_t hx_requant(int32_t x, int32_t m, int32_t e, uint32_t mode) {
    if (mode == HX_ROUND_DOUBLE_UP) {
        return hx_requant_double_up(x, m, e);
    }
    if (mode == HX_ROUND_SINGLE_UP) {
        return hx_requant_single_up(x, m, e);
    }
    return hx_mbqm(x, m, e);
}

/* x * 2^n for n >= 0 (wrapping), floor(x / 2^-n) for n < 0: NEON's vshl by a signed count. */
HX_INLINE int32_t hx_shift_signed(int32_t x, int n) {
    return n >= 0 ? hx_shl32(x, n) : (x >> -n);
}

/* ADD, per operand: the HX_ADD_VECTOR16 chunk form and the reference form. */
HX_INLINE int32_t hx_add_operand_vector(int32_t v, int32_t left_shift, int32_t m, int32_t e) {
    return hx_srdhm(hx_shift_signed(v, (int)(left_shift + e)), m);
}

HX_INLINE int32_t hx_add_operand_reference(int32_t v, int32_t left_shift, int32_t m, int32_t e) {
    return hx_mbqm(hx_shl32(v, (int)left_shift), m, e);
}

/* ADD, output stage of the HX_ADD_VECTOR16 chunks: LiteRT narrows the rescaled sum to int16 by truncation,
 * adds the zero point in int16 (wrapping) and saturates to int8 before the activation clamp. */
HX_INLINE int32_t hx_add_narrow_vector(int32_t r, int32_t zp) {
    const int32_t r16 = (int32_t)(int16_t)(uint16_t)(uint32_t)r;
    const int32_t s16 = (int32_t)(int16_t)(uint16_t)(uint32_t)(r16 + zp);
    return s16 < -128 ? -128 : (s16 > 127 ? 127 : s16);
}

/* 16x8 CONV: TFLite MultiplyByQuantizedMultiplier(int64 x, m, shift) with rm = the reduced multiplier of
 * hx_conv_s16_reduce: (x * rm + 2^(14 - s)) >> (15 - s), one rounding half up, wrapped to int32 as TFLite's
 * cast does. Exact for |x| < 2^47, s in [-31, 7] (hx_conv_s16_reduce checks the parameters). */
HX_INLINE int32_t hx_requant64(int64_t x, int32_t rm, int32_t s) {
    const int total = 15 - (int)s;
    const int64_t r = (x * (int64_t)rm + ((int64_t)1 << (total - 1))) >> total;
    return hx_u32_to_i32((uint32_t)(uint64_t)r);
}

HX_INLINE int32_t hx_clamp(int32_t v, int32_t lo, int32_t hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

/* 16x8 convolutions: products (int16 x int8) are at most 2^22 in magnitude, so a run of this many
 * sums exactly in int32 (256 * 2^22 = 2^30) before it is carried into the int64 accumulator. */
#define HX_S16_RUN 256u

/* A 16x8 convolution's int64 accumulator, requantised and clamped to the activation range. */
HX_INLINE int16_t hx_conv16_out(int64_t acc, int32_t rm, int32_t s, int32_t lo, int32_t hi) {
    return (int16_t)hx_clamp(hx_requant64(acc, rm, s), lo, hi);
}

#endif /* HX_FIXEDPOINT_H */
