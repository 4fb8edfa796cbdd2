/*
 * hx_conv_s8.c (x86, AVX2) - 1-D VALID convolution. For eight output channels at a time, the
 * window . weight-row dot products run 16 taps per step (int8 sign-extended to int16, vpmaddwd into
 * int32: exact), the eight sums are reduced with horizontal adds and requantised as one vector.
 * Short rows (fewer than 16 taps, or a channel count that is not a multiple of 8) broadcast
 * pairs of input taps against a zero-padded, tap-pair-interleaved copy of eight weight rows built
 * on the stack (vpmaddwd again), so no horizontal reduction is needed; one to three channels with long
 * rows take one dot product per output.
 * Identical results to csrc/ref/hx_conv_s8.c for every input.
 */
#include <string.h>

#include "hx/hx.h"
#include "hx_x86.h"

/* Sum of the 8 int32 lanes of each of a[0..7], as one vector (lane i = sum of a[i]). */
static inline __m256i hx_x_reduce8(__m256i a0, __m256i a1, __m256i a2, __m256i a3, __m256i a4, __m256i a5,
                                   __m256i a6, __m256i a7) {
    const __m256i s01 = _mm256_hadd_epi32(a0, a1), s23 = _mm256_hadd_epi32(a2, a3);
    const __m256i s45 = _mm256_hadd_epi32(a4, a5), s67 = _mm256_hadd_epi32(a6, a7);
    const __m256i s0123 = _mm256_hadd_epi32(s01, s23), s4567 = _mm256_hadd_epi32(s45, s67);
    /* lanes: [0..3 of 0123 low half, 4..7 of 4567 low half | high halves] */
    const __m256i lo = _mm256_permute2x128_si256(s0123, s4567, 0x20);
    const __m256i hi = _mm256_permute2x128_si256(s0123, s4567, 0x31);
    return _mm256_add_epi32(lo, hi);
}

static inline __m256i hx_x_madd16(__m256i acc, __m256i x16, const int8_t *w) {
    const __m256i w16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)w));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(x16, w16));
}

static int32_t hx_dot_tail(const int8_t *x, const int8_t *w, uint32_t from, uint32_t n) {
    int32_t s = 0;
    uint32_t j;
    for (j = from; j < n; ++j) {
        s += (int32_t)x[j] * (int32_t)w[j];
    }
    return s;
}

#define HX_SHORT_ROW 64u

/* Dilation 1, row <= HX_SHORT_ROW: eight channels per pass, tap pairs broadcast against interleaved weights. */
static void hx_conv_short(const hx_conv_params *p, const int8_t *in, const int8_t *weights, const int32_t *bias,
                          const int32_t *mult, const int32_t *shift, int8_t *out) {
    const uint32_t c_in = p->in_channels, c_out = p->out_channels, row = p->kernel * c_in, mode = p->rounding;
    const uint32_t pairs = (row + 1u) / 2u, frames = p->out_frames;
    const size_t step = (size_t)p->stride * c_in;
    const int32_t zp = p->output_zp, lo = p->act_min, hi = p->act_max;
    const int away = mode == HX_ROUND_DOUBLE_AWAY;
    int16_t wt[HX_SHORT_ROW / 2u][8][2];
    uint32_t o, j, i, t;
    for (o = 0; o < c_out; o += 8u) {
        const uint32_t n = c_out - o < 8u ? c_out - o : 8u;
        int32_t b[8] = {0, 0, 0, 0, 0, 0, 0, 0}, m[8] = {0, 0, 0, 0, 0, 0, 0, 0}, e[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        __m256i vb, vm, ve, vzp = _mm256_set1_epi32(zp);
        memset(wt, 0, sizeof(wt[0]) * pairs);
        for (i = 0; i < n; ++i) {
            const int8_t *w = weights + (size_t)(o + i) * row;
            for (j = 0; j < row; ++j) {
                wt[j >> 1][i][j & 1u] = w[j];
            }
            b[i] = bias[o + i];
            m[i] = mult[o + i];
            e[i] = shift[o + i];
        }
        vb = _mm256_loadu_si256((const __m256i *)(const void *)b);
        vm = _mm256_loadu_si256((const __m256i *)(const void *)m);
        ve = _mm256_loadu_si256((const __m256i *)(const void *)e);
        for (t = 0; t < frames; ++t) {
            const int8_t *x = in + (size_t)t * step;
            int8_t *y = out + (size_t)t * c_out + o;
            __m256i acc = vb;
            for (j = 0; j + 1u < row; j += 2u) {
                const uint32_t pair = (uint32_t)(uint16_t)(int16_t)x[j] | ((uint32_t)(uint16_t)(int16_t)x[j + 1u] << 16);
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_set1_epi32((int)pair),
                                                             _mm256_loadu_si256((const __m256i *)(const void *)wt[j >> 1])));
            }
            if (row & 1u) {
                const __m256i xb = _mm256_set1_epi32((int)(uint32_t)(uint16_t)(int16_t)x[row - 1u]);
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(xb, _mm256_loadu_si256((const __m256i *)(const void *)wt[row >> 1])));
            }
            if (mode == HX_ROUND_SINGLE_UP) {
                int32_t s[8];
                _mm256_storeu_si256((__m256i *)(void *)s, acc);
                for (i = 0; i < n; ++i) {
                    y[i] = (int8_t)hx_clamp(hx_requant(s[i], m[i], e[i], mode) + zp, lo, hi);
                }
            } else if (n == 8u) {
                hx_x_store8(y, _mm256_add_epi32(hx_x_requant(acc, vm, ve, away), vzp), lo, hi);
            } else {
                int8_t tmp[8];
                hx_x_store8(tmp, _mm256_add_epi32(hx_x_requant(acc, vm, ve, away), vzp), lo, hi);
                for (i = 0; i < n; ++i) {
                    y[i] = tmp[i];
                }
            }
        }
    }
}

/* Dilation 1, fewer than 4 channels, row >= 16: one vpmaddwd dot product per output. */
static void hx_conv_narrow(const hx_conv_params *p, const int8_t *in, const int8_t *weights, const int32_t *bias,
                           const int32_t *mult, const int32_t *shift, int8_t *out) {
    const uint32_t c_in = p->in_channels, c_out = p->out_channels, row = p->kernel * c_in, row16 = row & ~15u;
    const size_t step = (size_t)p->stride * c_in;
    uint32_t t, o, j;
    for (t = 0; t < p->out_frames; ++t) {
        const int8_t *x = in + (size_t)t * step;
        for (o = 0; o < c_out; ++o) {
            const int8_t *w = weights + (size_t)o * row;
            __m256i acc = _mm256_setzero_si256();
            __m128i h;
            int32_t a;
            for (j = 0; j < row16; j += 16u) {
                const __m256i x16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(x + j)));
                acc = hx_x_madd16(acc, x16, w + j);
            }
            h = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
            h = _mm_hadd_epi32(h, h);
            h = _mm_hadd_epi32(h, h);
            a = bias[o] + _mm_cvtsi128_si32(h) + hx_dot_tail(x, w, row16, row);
            out[(size_t)t * c_out + o] = (int8_t)hx_clamp(hx_requant(a, mult[o], shift[o], p->rounding) + p->output_zp,
                                                          p->act_min, p->act_max);
        }
    }
}

void hx_conv_s8(const hx_conv_params *p, const int8_t *in, const int8_t *weights, const int32_t *bias,
                const int32_t *mult, const int32_t *shift, int8_t *out) {
    const uint32_t c_in = p->in_channels, c_out = p->out_channels, k = p->kernel, dil = p->dilation;
    const uint32_t frames = p->out_frames, row = k * c_in, mode = p->rounding, row16 = row & ~15u;
    const size_t step = (size_t)p->stride * c_in;
    const int32_t zp = p->output_zp, lo = p->act_min, hi = p->act_max;
    const int vector_requant = mode != HX_ROUND_SINGLE_UP, away = mode == HX_ROUND_DOUBLE_AWAY;
    uint32_t t, o, j, tap, i;
    if (dil == 1u && c_out < 4u && row >= 16u) {
        hx_conv_narrow(p, in, weights, bias, mult, shift, out);
        return;
    }
    if (dil == 1u && row <= HX_SHORT_ROW && (row < 16u || c_out % 8u != 0u)) {
        hx_conv_short(p, in, weights, bias, mult, shift, out);
        return;
    }
    for (t = 0; t < frames; ++t) {
        const int8_t *x = in + (size_t)t * step;
        int8_t *y = out + (size_t)t * c_out;
        o = 0;
        if (dil == 1u && row >= 16u) {
            for (; o + 8u <= c_out; o += 8u) {
                const int8_t *w = weights + (size_t)o * row;
                __m256i a[8], sum;
                int32_t tails[8];
                for (i = 0; i < 8u; ++i) {
                    a[i] = _mm256_setzero_si256();
                }
                for (j = 0; j < row16; j += 16u) {
                    const __m256i x16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(x + j)));
                    for (i = 0; i < 8u; ++i) {
                        a[i] = hx_x_madd16(a[i], x16, w + (size_t)i * row + j);
                    }
                }
                j = row16;
                if (row - row16 >= 8u) {  /* one 8-tap step in the low 128-bit lane */
                    const __m256i x8 = _mm256_cvtepi8_epi16(_mm_loadl_epi64((const __m128i *)(const void *)(x + j)));
                    for (i = 0; i < 8u; ++i) {
                        const __m256i w8 = _mm256_cvtepi8_epi16(
                            _mm_loadl_epi64((const __m128i *)(const void *)(w + (size_t)i * row + j)));
                        a[i] = _mm256_add_epi32(a[i], _mm256_madd_epi16(x8, w8));
                    }
                    j += 8u;
                }
                sum = _mm256_add_epi32(hx_x_reduce8(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]),
                                       _mm256_loadu_si256((const __m256i *)(const void *)(bias + o)));
                if (j < row) {
                    for (i = 0; i < 8u; ++i) {
                        tails[i] = hx_dot_tail(x, w + (size_t)i * row, j, row);
                    }
                    sum = _mm256_add_epi32(sum, _mm256_loadu_si256((const __m256i *)(const void *)tails));
                }
                if (vector_requant) {
                    const __m256i r = hx_x_requant(sum, _mm256_loadu_si256((const __m256i *)(const void *)(mult + o)),
                                                   _mm256_loadu_si256((const __m256i *)(const void *)(shift + o)), away);
                    hx_x_store8(y + o, _mm256_add_epi32(r, _mm256_set1_epi32(zp)), lo, hi);
                } else {
                    int32_t s[8];
                    _mm256_storeu_si256((__m256i *)(void *)s, sum);
                    for (i = 0; i < 8u; ++i) {
                        y[o + i] = (int8_t)hx_clamp(hx_requant(s[i], mult[o + i], shift[o + i], mode) + zp, lo, hi);
                    }
                }
            }
        }
        for (; o < c_out; ++o) {
            int32_t a = bias[o];
            if (dil == 1u) {
                a += hx_dot_tail(x, weights + (size_t)o * row, 0u, row);
            } else {
                for (tap = 0; tap < k; ++tap) {
                    a += hx_dot_tail(x + (size_t)tap * dil * c_in, weights + (size_t)o * row + (size_t)tap * c_in, 0u,
                                     c_in);
                }
            }
            y[o] = (int8_t)hx_clamp(hx_requant(a, mult[o], shift[o], mode) + zp, lo, hi);
        }
    }
}
