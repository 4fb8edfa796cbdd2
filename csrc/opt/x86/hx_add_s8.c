/*
 * hx_add_s8.c (x86, AVX2) - TFLite int8 ADD on eight lanes: the operands are rescaled arithmetically
 * (exactly the values of hx_add_make_tables, without the table reads), then the output rescaling
 * and, in HX_ADD_VECTOR16 mode, LiteRT's int16 narrowing. Identical to csrc/ref/hx_add_s8.c.
 */
#include "hx/hx.h"
#include "hx_x86.h"

/* (q - zp), eight int8 lanes widened to int32. */
static inline __m256i hx_x_centered(const int8_t *q, __m256i zp) {
    return _mm256_sub_epi32(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)q)), zp);
}

/* The operand term of either mode, as hx_add_operand_vector / hx_add_operand_reference. */
static inline __m256i hx_x_operand(__m256i v, int32_t left_shift, int32_t m, int32_t e, int vector) {
    const __m256i vm = _mm256_set1_epi32(m);
    if (vector) {
        const int32_t n = left_shift + e;
        const __m256i shifted = n >= 0 ? _mm256_sllv_epi32(v, _mm256_set1_epi32(n))
                                       : _mm256_srav_epi32(v, _mm256_set1_epi32(-n));
        return hx_x_srdhm(shifted, vm);
    }
    return hx_x_requant(_mm256_sllv_epi32(v, _mm256_set1_epi32(left_shift)), vm, _mm256_set1_epi32(e), 1);
}

void hx_add_s8(const hx_add_params *p, const int32_t *table1, const int32_t *table2, const int8_t *in1,
               const int8_t *in2, int8_t *out) {
    const uint32_t n = p->count, vector = p->mode == HX_ADD_VECTOR16, chunked = vector ? n & ~15u : n & ~7u;
    const int32_t zo = p->output_zp, lo = p->act_min, hi = p->act_max, ls = p->left_shift;
    const __m256i mo = _mm256_set1_epi32(p->multiplier_out), so = _mm256_set1_epi32(p->shift_out);
    const __m256i vzo = _mm256_set1_epi32(zo), z1 = _mm256_set1_epi32(p->input1_zp), z2 = _mm256_set1_epi32(p->input2_zp);
    uint32_t i = 0;
    for (; i < chunked; i += 8u) {
        const __m256i a = hx_x_operand(hx_x_centered(in1 + i, z1), ls, p->multiplier1, p->shift1, (int)vector);
        const __m256i b = hx_x_operand(hx_x_centered(in2 + i, z2), ls, p->multiplier2, p->shift2, (int)vector);
        __m256i r = hx_x_requant(_mm256_add_epi32(a, b), mo, so, 1);
        if (vector) {
            /* int16 truncation, int16 zero-point add (wrapping), then int8 saturation. */
            const __m256i r16 = _mm256_srai_epi32(_mm256_slli_epi32(r, 16), 16);
            r = _mm256_srai_epi32(_mm256_slli_epi32(_mm256_add_epi32(r16, vzo), 16), 16);
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
