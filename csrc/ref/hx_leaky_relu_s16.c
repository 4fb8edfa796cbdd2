/*
 * hx_leaky_relu_s16.c (ref) - TFLite int16 LEAKY_RELU (reference_ops::QuantizeLeakyRelu, zero points 0):
 * out = clamp(in >= 0 ? mbqm(in, identity) : mbqm(in, alpha)) with the slope folded into the alpha
 * multiplier. Both branches are computed and one selected. Element i reads in[i] before writing
 * out[i], so out may be in.
 */
#include "hx/hx.h"
#include "hx_fixedpoint.h"

void hx_leaky_relu_s16(const hx_leaky_relu_s16_params *p, const int16_t *in, int16_t *out) {
    const int32_t m1 = p->multiplier_identity, s1 = p->shift_identity, m2 = p->multiplier_alpha, s2 = p->shift_alpha;
    uint32_t i;
    for (i = 0; i < p->count; ++i) {
        const int32_t v = in[i];
        const int32_t pos = hx_mbqm(v, m1, s1);
        const int32_t neg = hx_mbqm(v, m2, s2);
        out[i] = (int16_t)hx_clamp(v >= 0 ? pos : neg, -32768, 32767);
    }
}
