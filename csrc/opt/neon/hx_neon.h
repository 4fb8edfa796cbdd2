/*
 * hx_neon.h - NEON forms of the fixed-point requantisation in common/hx_fixedpoint.h (internal).
 *
 * Each function returns, lane by lane, exactly what its scalar twin returns:
 *   vqrdmulhq_s32(a, b) == floor(a*b / 2^31 + 1/2) == hx_srdhm(a, b) for b >= 0 (no saturation case);
 *   vqdmulhq_s32(a, b)  == floor(a*b / 2^31);
 *   vrshlq_s32(x, -n)   == floor(x / 2^n + 1/2), computed without intermediate overflow.
 * AArch64 only (the boards this project targets).
 */
#ifndef HX_NEON_H
#define HX_NEON_H

#if !defined(__ARM_NEON) || !defined(__aarch64__)
#error "HX_ARCH=neon needs an AArch64 target with NEON (build with HX_ARCH=ref elsewhere)"
#endif

#include <arm_neon.h>

#include "hx_fixedpoint.h"

/* Left shifts (e > 0) and negated right shifts (e <= 0) of a vector of exponents. */
static inline int32x4_t hx_v_left(int32x4_t e) {
    return vmaxq_s32(e, vdupq_n_s32(0));
}

static inline int32x4_t hx_v_neg_right(int32x4_t e) {
    return vminq_s32(e, vdupq_n_s32(0));
}

/* hx_mbqm: half-up high multiply, then divide by 2^right rounding half away from zero. */
static inline int32x4_t hx_v_mbqm(int32x4_t x, int32x4_t m, int32x4_t e) {
    const int32x4_t nr = hx_v_neg_right(e);
    const int32x4_t t = vqrdmulhq_s32(vshlq_s32(x, hx_v_left(e)), m);
    /* gemmlowp's fixup: subtract 1 from negative values when there is a right shift. */
    const int32x4_t fixup = vshrq_n_s32(vandq_s32(t, nr), 31);
    return vrshlq_s32(vqaddq_s32(t, fixup), nr);
}

/* hx_requant_double_up. */
static inline int32x4_t hx_v_double_up(int32x4_t x, int32x4_t m, int32x4_t e) {
    return vrshlq_s32(vqrdmulhq_s32(vshlq_s32(x, hx_v_left(e)), m), hx_v_neg_right(e));
}

/* hx_requant_single_up: floor((x*m + 2^(30+r)) / 2^(31+r)); for r == 0 that is vqrdmulh. */
static inline int32x4_t hx_v_single_up(int32x4_t x, int32x4_t m, int32x4_t e) {
    const int32x4_t xs = vshlq_s32(x, hx_v_left(e));
    const int32x4_t nr = hx_v_neg_right(e);
    const uint32x4_t no_right = vceqq_s32(nr, vdupq_n_s32(0));
    return vbslq_s32(no_right, vqrdmulhq_s32(xs, m), vrshlq_s32(vqdmulhq_s32(xs, m), nr));
}

/* Requantise with a rounding mode known at the call site. */
static inline int32x4_t hx_v_requant(int32x4_t x, int32x4_t m, int32x4_t e, uint32_t mode) {
    if (mode == HX_ROUND_DOUBLE_UP) {
        return hx_v_double_up(x, m, e);
    }
    if (mode == HX_ROUND_SINGLE_UP) {
        return hx_v_single_up(x, m, e);
    }
    return hx_v_mbqm(x, m, e);
}

/* Clamp 4 int32 lanes to [lo, hi] (within int8) and narrow to 4 bytes at dst. */
static inline void hx_v_store4(int8_t *dst, int32x4_t v, int32_t lo, int32_t hi) {
    const int32x4_t c = vminq_s32(vmaxq_s32(v, vdupq_n_s32(lo)), vdupq_n_s32(hi));
    const int16x4_t h = vmovn_s32(c);
    const int8x8_t b = vmovn_s16(vcombine_s16(h, h));
    int8_t tmp[8];
    vst1_s8(tmp, b);
    dst[0] = tmp[0];
    dst[1] = tmp[1];
    dst[2] = tmp[2];
    dst[3] = tmp[3];
}

/* Sign-extend 8 int8 lanes into two int32x4 (low, high). */
static inline void hx_v_widen8(int8x8_t v, int32x4_t *lo, int32x4_t *hi) {
    const int16x8_t w = vmovl_s8(v);
    *lo = vmovl_s16(vget_low_s16(w));
    *hi = vmovl_s16(vget_high_s16(w));
}

#endif /* HX_NEON_H */
