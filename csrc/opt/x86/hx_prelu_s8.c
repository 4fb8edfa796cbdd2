/*
 * hx_prelu_s8.c (x86) - TFLite int8 PRELU: v = in - input_zp;
 * out = clamp((v >= 0 ? mbqm(v, pos) : mbqm(v * (alpha - alpha_zp), neg)) + output_zp, -128, 127).
 * Both branches are computed and one selected (no data-dependent branch). Element i reads in[i]
 * before writing out[i], so out may be in. Runs at set-up only (table building), so the portable code serves.
 */
#include "hx/hx.h"
#include "hx_fixedpoint.h"

void hx_prelu_s8(const hx_prelu_params *p, const int8_t *in, const int8_t *alpha, int8_t *out) {
    const uint32_t c = p->channels, frames = p->frames, per_channel = p->alpha_count != 1u;
    const int32_t izp = p->input_zp, azp = p->alpha_zp, ozp = p->output_zp;
    const int32_t m1 = p->multiplier_pos, s1 = p->shift_pos, m2 = p->multiplier_neg, s2 = p->shift_neg;
    uint32_t f, i;
    for (f = 0; f < frames; ++f) {
        const int8_t *x = in + (size_t)f * c;
        int8_t *y = out + (size_t)f * c;
        for (i = 0; i < c; ++i) {
            const int32_t v = (int32_t)x[i] - izp;
            const int32_t a = (int32_t)alpha[per_channel ? i : 0u] - azp;
            const int32_t pos = hx_mbqm(v, m1, s1);
            const int32_t neg = hx_mbqm(v * a, m2, s2);
            y[i] = (int8_t)hx_clamp((v >= 0 ? pos : neg) + ozp, -128, 127);
        }
    }
}
