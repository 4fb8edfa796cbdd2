/*
 * hx_add_s8.c (x86, AVX2) - TFLite int8 ADD: operand tables read eight at a time, output
 * rescaling and LiteRT's int16 narrowing on eight lanes. Identical to csrc/ref/hx_add_s8.c.
 */
#include "hx/hx.h"
#include "hx_x86.h"

void hx_add_s8(const hx_add_params *p, const int32_t *table1, const int32_t *table2, const int8_t *in1,
               const int8_t *in2, int8_t *out) {
    const uint32_t n = p->count, vector = p->mode == HX_ADD_VECTOR16, chunked = vector ? n & ~15u : n & ~7u;
    const int32_t zo = p->output_zp, lo = p->act_min, hi = p->act_max, ls = p->left_shift;
    const __m256i mo = _mm256_set1_epi32(p->multiplier_out), so = _mm256_set1_epi32(p->shift_out);
    const __m256i vzo = _mm256_set1_epi32(zo);
    uint32_t i = 0;
    for (; i < chunked; i += 8u) {
        int32_t s[8];
        uint32_t k;
        __m256i r;
        for (k = 0; k < 8u; ++k) { /* scalar loads beat vpgatherdd on several x86 cores */
            s[k] = table1[(uint8_t)in1[i + k]] + table2[(uint8_t)in2[i + k]];
        }
        r = hx_x_requant(_mm256_loadu_si256((const __m256i *)(const void *)s), mo, so, 1);
        if (vector) {
            /* int16 truncation, int16 zero-point add (wrapping), then int8 saturation. */
            const __m256i r16 = _mm256_srai_epi32(_mm256_slli_epi32(r, 16), 16);
            const __m256i s16 = _mm256_add_epi32(r16, vzo);
            r = _mm256_srai_epi32(_mm256_slli_epi32(s16, 16), 16);
            r = _mm256_min_epi32(_mm256_max_epi32(r, _mm256_set1_epi32(-128)), _mm256_set1_epi32(127));
        } else {
            r = _mm256_add_epi32(r, vzo);
        }
        hx_x_store8(out + i, r, lo, hi);
    }
    for (; i < n; ++i) {
        int32_t sum;
        if (vector) {
            sum = hx_add_operand_reference((int32_t)in1[i] - p->input1_zp, ls, p->multiplier1, p->shift1) +
                  hx_add_operand_reference((int32_t)in2[i] - p->input2_zp, ls, p->multiplier2, p->shift2);
        } else {
            sum = table1[(uint8_t)in1[i]] + table2[(uint8_t)in2[i]];
        }
        out[i] = (int8_t)hx_clamp(hx_mbqm(sum, p->multiplier_out, p->shift_out) + zo, lo, hi);
    }
}
