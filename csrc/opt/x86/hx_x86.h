/*
 * hx_x86.h - AVX2 forms of the fixed-point requantisation in common/hx_fixedpoint.h (internal).
 * Every function returns, lane by lane, exactly what its scalar twin returns.
 */
#ifndef HX_X86_H
#define HX_X86_H

#if !defined(__AVX2__) || !defined(__x86_64__)
#error "HX_ARCH=x86 needs an x86-64 target with AVX2 (-mavx2); build with HX_ARCH=ref elsewhere"
#endif

#include <immintrin.h>

#include "hx_fixedpoint.h"

/* floor(x*m / 2^31 + 1/2) per lane (hx_srdhm, m >= 0), with per-lane multipliers. */
static inline __m256i hx_x_srdhm(__m256i x, __m256i m) {
    const __m256i half = _mm256_set1_epi64x((long long)1 << 30);
    /* even lanes (0, 2, 4, 6) and odd lanes, each as 64-bit products */
    const __m256i pe = _mm256_add_epi64(_mm256_mul_epi32(x, m), half);
    const __m256i po = _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(x, 32), _mm256_srli_epi64(m, 32)), half);
    /* The result fits in 32 bits, so a logical shift gives the right low word. */
    const __m256i re = _mm256_srli_epi64(pe, 31);
    const __m256i ro = _mm256_slli_epi64(_mm256_srli_epi64(po, 31), 32);
    return _mm256_blend_epi32(re, ro, 0xaa);
}

/* x / 2^n rounded half up, n in [0, 31] per lane, exact for every int32 x (no overflow). */
static inline __m256i hx_x_rshift_up(__m256i x, __m256i n) {
    const __m256i one = _mm256_set1_epi32(1);
    const __m256i half = _mm256_srli_epi32(_mm256_sllv_epi32(one, n), 1);   /* 2^(n-1), 0 for n = 0 */
    /* floor((x + h) / 2^n) = (x >> n) + (((x & (2^n - 1)) + h) >> n): no intermediate overflow. */
    const __m256i mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, n), one);
    const __m256i low = _mm256_add_epi32(_mm256_and_si256(x, mask), half);
    return _mm256_add_epi32(_mm256_srav_epi32(x, n), _mm256_srlv_epi32(low, n));
}

/* gemmlowp RoundingDivideByPOT (half away from zero), n in [0, 31] per lane. */
static inline __m256i hx_x_rdbpot(__m256i x, __m256i n) {
    const __m256i one = _mm256_set1_epi32(1);
    const __m256i mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, n), one);
    const __m256i remainder = _mm256_and_si256(x, mask);
    const __m256i neg = _mm256_cmpgt_epi32(_mm256_setzero_si256(), x);          /* -1 where x < 0 */
    const __m256i threshold = _mm256_sub_epi32(_mm256_srai_epi32(mask, 1), neg);  /* + 1 for negatives */
    const __m256i up = _mm256_cmpgt_epi32(remainder, threshold);                  /* -1 where rounding up */
    return _mm256_sub_epi32(_mm256_srav_epi32(x, n), up);
}

/* hx_requant_double_up / hx_mbqm on 8 lanes (per-lane multiplier m and exponent e). */
static inline __m256i hx_x_requant(__m256i x, __m256i m, __m256i e, int away) {
    const __m256i zero = _mm256_setzero_si256();
    const __m256i left = _mm256_max_epi32(e, zero);
    const __m256i right = _mm256_max_epi32(_mm256_sub_epi32(zero, e), zero);
    const __m256i t = hx_x_srdhm(_mm256_sllv_epi32(x, left), m);
    return away ? hx_x_rdbpot(t, right) : hx_x_rshift_up(t, right);
}

/* Clamp 8 int32 lanes to [lo, hi] (within int8) and store them as 8 bytes at dst. */
static inline void hx_x_store8(int8_t *dst, __m256i v, int32_t lo, int32_t hi) {
    const __m256i c = _mm256_min_epi32(_mm256_max_epi32(v, _mm256_set1_epi32(lo)), _mm256_set1_epi32(hi));
    const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1));
    _mm_storel_epi64((__m128i *)(void *)dst, _mm_packs_epi16(w, w));
}

#endif /* HX_X86_H */
