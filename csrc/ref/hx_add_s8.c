/*
 * hx_add_s8.c (ref) - TFLite int8 ADD, general rescaling (as TFLite's scalar AddElementwiseInt8):
 * each operand (q - zp) << left_shift is scaled by its multiplier, the sum by the output one.
 * Element i reads both inputs before writing out[i], so out may be either input.
 */
#include "hx/hx.h"
#include "hx_fixedpoint.h"

void hx_add_s8(const hx_add_params *p, const int8_t *in1, const int8_t *in2, int8_t *out) {
    const uint32_t n = p->count;
    const int32_t z1 = p->input1_zp, z2 = p->input2_zp, zo = p->output_zp, ls = p->left_shift;
    const int32_t m1 = p->multiplier1, s1 = p->shift1, m2 = p->multiplier2, s2 = p->shift2;
    const int32_t mo = p->multiplier_out, so = p->shift_out, lo = p->act_min, hi = p->act_max;
    uint32_t i;
    for (i = 0; i < n; ++i) {
        const int32_t a = ((int32_t)in1[i] - z1) * (1 << ls);
        const int32_t b = ((int32_t)in2[i] - z2) * (1 << ls);
        const int32_t r = hx_mbqm(hx_mbqm(a, m1, s1) + hx_mbqm(b, m2, s2), mo, so) + zo;
        out[i] = (int8_t)hx_clamp(r, lo, hi);
    }
}
