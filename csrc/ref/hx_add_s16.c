/*
 * hx_add_s16.c (ref) - TFLite int16 ADD with general rescaling (zero points 0), as LiteRT computes it.
 *
 * HX_ADD_VECTOR16 (LiteRT's AddElementwiseInt16 NEON body; on x86 through NEON_2_SSE): elements in
 * whole 16-element chunks scale each operand once, srdhm(q << (left_shift + shift), m); the tail
 * elements, and every element in HX_ADD_REFERENCE, rdbpot(srdhm(q << left_shift, m), -shift). The sum
 * is scaled by the output multiplier (double rounding) and clamped in int32, so nothing wraps.
 * |operand| < 2^30, so the int32 sum cannot overflow. Element i reads both inputs before writing
 * out[i], so out may be either input.
 */
#include "hx/hx.h"
#include "hx_fixedpoint.h"

void hx_add_s16(const hx_add_s16_params *p, const int16_t *in1, const int16_t *in2, int16_t *out) {
    const uint32_t n = p->count, chunked = p->mode == HX_ADD_VECTOR16 ? n & ~15u : 0u;
    const int32_t ls = p->left_shift, m1 = p->multiplier1, e1 = p->shift1, m2 = p->multiplier2, e2 = p->shift2;
    const int32_t mo = p->multiplier_out, so = p->shift_out, lo = p->act_min, hi = p->act_max;
    uint32_t i;
    for (i = 0; i < chunked; ++i) {
        const int32_t a = hx_add_operand_vector(in1[i], ls, m1, e1);
        const int32_t b = hx_add_operand_vector(in2[i], ls, m2, e2);
        out[i] = (int16_t)hx_clamp(hx_mbqm(a + b, mo, so), lo, hi);
    }
    for (; i < n; ++i) {
        const int32_t a = hx_add_operand_reference(in1[i], ls, m1, e1);
        const int32_t b = hx_add_operand_reference(in2[i], ls, m2, e2);
        out[i] = (int16_t)hx_clamp(hx_mbqm(a + b, mo, so), lo, hi);
    }
}
