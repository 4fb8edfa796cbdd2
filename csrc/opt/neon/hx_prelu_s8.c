/*
 * hx_prelu_s8.c (neon) - TFLite int8 PRELU computed arithmetically, four channels per vector:
 * both branches requantised (hx_v_mbqm) and selected by the sign of v. Used at set-up to build
 * the lookup tables and tested op by op; identical to csrc/ref/hx_prelu_s8.c.
 */
#include "hx/hx.h"
#include "hx_neon.h"

void hx_prelu_s8(const hx_prelu_params *p, const int8_t *in, const int8_t *alpha, int8_t *out) {
    const uint32_t c = p->channels, frames = p->frames, per_channel = p->alpha_count != 1u;
    const int32_t izp = p->input_zp, azp = p->alpha_zp, ozp = p->output_zp;
    const int32x4_t m1 = vdupq_n_s32(p->multiplier_pos), s1 = vdupq_n_s32(p->shift_pos);
    const int32x4_t m2 = vdupq_n_s32(p->multiplier_neg), s2 = vdupq_n_s32(p->shift_neg);
    uint32_t f, i;
    for (f = 0; f < frames; ++f) {
        const int8_t *x = in + (size_t)f * c;
        int8_t *y = out + (size_t)f * c;
        i = 0;
        for (; i + 4u <= c; i += 4u) {
            int32_t xv[4], av[4], k;
            int32x4_t v, a, pos, neg, r;
            for (k = 0; k < 4; ++k) {
                xv[k] = (int32_t)x[i + (uint32_t)k] - izp;
                av[k] = (int32_t)alpha[per_channel ? i + (uint32_t)k : 0u] - azp;
            }
            v = vld1q_s32(xv);
            a = vld1q_s32(av);
            pos = hx_v_mbqm(v, m1, s1);
            neg = hx_v_mbqm(vmulq_s32(v, a), m2, s2);
            r = vbslq_s32(vcgeq_s32(v, vdupq_n_s32(0)), pos, neg);
            hx_v_store4(y + i, vaddq_s32(r, vdupq_n_s32(ozp)), -128, 127);
        }
        for (; i < c; ++i) {
            const int32_t v = (int32_t)x[i] - izp;
            const int32_t a = (int32_t)alpha[per_channel ? i : 0u] - azp;
            const int32_t r = v >= 0 ? hx_mbqm(v, p->multiplier_pos, p->shift_pos)
                                     : hx_mbqm(v * a, p->multiplier_neg, p->shift_neg);
            y[i] = (int8_t)hx_clamp(r + ozp, -128, 127);
        }
    }
}
