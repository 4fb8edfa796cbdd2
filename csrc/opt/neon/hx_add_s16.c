/*
 * hx_add_s16.c (neon) - TFLite int16 ADD: the 16-element chunks exactly as LiteRT's AddElementwiseInt16
 * NEON body computes them (vshl by left_shift + shift, vqrdmulh per operand, vqrdmulh + rounding divide
 * for the sum, clamp in int32, saturating narrow), the tail the reference way. Identical to
 * csrc/ref/hx_add_s16.c; out may equal either input.
 */
#include "hx/hx.h"
#include "hx_neon.h"

static inline int32x4_t hx_add4(int32x4_t a, int32x4_t b, int32x4_t l1, int32x4_t m1, int32x4_t l2, int32x4_t m2,
                                int32x4_t mo, int32x4_t so, int32x4_t lo, int32x4_t hi) {
    const int32x4_t sa = vqrdmulhq_s32(vshlq_s32(a, l1), m1);
    const int32x4_t sb = vqrdmulhq_s32(vshlq_s32(b, l2), m2);
    return vminq_s32(vmaxq_s32(hx_v_mbqm(vaddq_s32(sa, sb), mo, so), lo), hi);
}

void hx_add_s16(const hx_add_s16_params *p, const int16_t *in1, const int16_t *in2, int16_t *out) {
    const uint32_t n = p->count, chunked = p->mode == HX_ADD_VECTOR16 ? n & ~15u : 0u;
    const int32_t ls = p->left_shift;
    const int32x4_t l1 = vdupq_n_s32(ls + p->shift1), m1 = vdupq_n_s32(p->multiplier1);
    const int32x4_t l2 = vdupq_n_s32(ls + p->shift2), m2 = vdupq_n_s32(p->multiplier2);
    const int32x4_t mo = vdupq_n_s32(p->multiplier_out), so = vdupq_n_s32(p->shift_out);
    const int32x4_t lo = vdupq_n_s32(p->act_min), hi = vdupq_n_s32(p->act_max);
    uint32_t i = 0;
    for (; i < chunked; i += 8u) {
        const int16x8_t a = vld1q_s16(in1 + i), b = vld1q_s16(in2 + i);
        const int32x4_t r0 = hx_add4(vmovl_s16(vget_low_s16(a)), vmovl_s16(vget_low_s16(b)), l1, m1, l2, m2, mo, so,
                                     lo, hi);
        const int32x4_t r1 = hx_add4(vmovl_high_s16(a), vmovl_high_s16(b), l1, m1, l2, m2, mo, so, lo, hi);
        vst1q_s16(out + i, vcombine_s16(vqmovn_s32(r0), vqmovn_s32(r1)));
    }
    for (; i < n; ++i) {
        const int32_t a = hx_add_operand_reference(in1[i], ls, p->multiplier1, p->shift1);
        const int32_t b = hx_add_operand_reference(in2[i], ls, p->multiplier2, p->shift2);
        out[i] = (int16_t)hx_clamp(hx_mbqm(a + b, p->multiplier_out, p->shift_out), p->act_min, p->act_max);
    }
}
