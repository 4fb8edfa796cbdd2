/*
 * hx_leaky_relu_s16.c (neon) - int16 LEAKY_RELU, 8 elements per step: both requantisations
 * (hx_v_mbqm, lane-exact twins of hx_mbqm) then a select on the sign and a saturating narrow (the
 * clamp to int16). Identical to csrc/ref/hx_leaky_relu_s16.c; out may equal in.
 */
#include "hx/hx.h"
#include "hx_neon.h"

static inline int32x4_t hx_leaky4(int32x4_t v, int32x4_t m1, int32x4_t s1, int32x4_t m2, int32x4_t s2) {
    return vbslq_s32(vcgezq_s32(v), hx_v_mbqm(v, m1, s1), hx_v_mbqm(v, m2, s2));
}

void hx_leaky_relu_s16(const hx_leaky_relu_s16_params *p, const int16_t *in, int16_t *out) {
    const int32x4_t m1 = vdupq_n_s32(p->multiplier_identity), s1 = vdupq_n_s32(p->shift_identity);
    const int32x4_t m2 = vdupq_n_s32(p->multiplier_alpha), s2 = vdupq_n_s32(p->shift_alpha);
    const uint32_t n = p->count;
    uint32_t i = 0;
    for (; i + 8u <= n; i += 8u) {
        const int16x8_t x = vld1q_s16(in + i);
        const int32x4_t lo = hx_leaky4(vmovl_s16(vget_low_s16(x)), m1, s1, m2, s2);
        const int32x4_t hi = hx_leaky4(vmovl_high_s16(x), m1, s1, m2, s2);
        vst1q_s16(out + i, vcombine_s16(vqmovn_s32(lo), vqmovn_s32(hi)));
    }
    for (; i < n; ++i) {
        const int32_t v = in[i];
        const int32_t r = v >= 0 ? hx_mbqm(v, p->multiplier_identity, p->shift_identity)
                                 : hx_mbqm(v, p->multiplier_alpha, p->shift_alpha);
        out[i] = (int16_t)hx_clamp(r, -32768, 32767);
    }
}
