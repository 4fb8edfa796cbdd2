/*
 * hx_add_s8.c (ref) - TFLite int8 ADD with general rescaling, as LiteRT computes it.
 *
 * The operands' rescaled values come from the tables of hx_add_make_tables. HX_ADD_VECTOR16 (LiteRT's
 * optimized kernel, NEON or NEON_2_SSE): the elements in whole 16-element chunks narrow the rescaled
 * sum through int16 (hx_add_narrow_vector); the tail elements are computed the reference way.
 * HX_ADD_REFERENCE: every element the reference way. Element i reads both inputs before writing
 * out[i], so out may be either input.
 */
#include "hx/hx.h"
#include "hx_fixedpoint.h"

void hx_add_s8(const hx_add_params *p, const int32_t *table1, const int32_t *table2, const int8_t *in1,
               const int8_t *in2, int8_t *out) {
    const uint32_t n = p->count, chunked = p->mode == HX_ADD_VECTOR16 ? n & ~15u : 0u;
    const int32_t zo = p->output_zp, mo = p->multiplier_out, so = p->shift_out, lo = p->act_min, hi = p->act_max;
    const int32_t ls = p->left_shift;
    uint32_t i;
    for (i = 0; i < chunked; ++i) {
        const int32_t sum = table1[(uint8_t)in1[i]] + table2[(uint8_t)in2[i]];
        out[i] = (int8_t)hx_clamp(hx_add_narrow_vector(hx_mbqm(sum, mo, so), zo), lo, hi);
    }
    if (p->mode == HX_ADD_VECTOR16) {
        for (; i < n; ++i) {
            const int32_t a = hx_add_operand_reference((int32_t)in1[i] - p->input1_zp, ls, p->multiplier1, p->shift1);
            const int32_t b = hx_add_operand_reference((int32_t)in2[i] - p->input2_zp, ls, p->multiplier2, p->shift2);
            out[i] = (int8_t)hx_clamp(hx_mbqm(a + b, mo, so) + zo, lo, hi);
        }
    } else {
        for (; i < n; ++i) {
            const int32_t sum = table1[(uint8_t)in1[i]] + table2[(uint8_t)in2[i]];
            out[i] = (int8_t)hx_clamp(hx_mbqm(sum, mo, so) + zo, lo, hi);
        }
    }
}
