/*
 * hx_lut_s8.c (x86, AVX2) - per-channel 256-entry table lookup (PRELU after hx_prelu_make_tables):
 * out[f, c] = tables[table_index[c] * 256 + (uint8_t)in[f, c]]; out may equal in.
 * When every channel uses one table (a single PRELU slope), 32 bytes at a time: the table is sixteen
 * 16-entry vpshufb lookups, the one matching each byte's high nibble selected per byte.
 * Identical to csrc/ref/hx_lut_s8.c.
 */
#include "hx/hx.h"
#include "hx_x86.h"

void hx_lut_s8(uint32_t frames, uint32_t channels, const int8_t *tables, const uint8_t *table_index,
               const int8_t *in, int8_t *out) {
    const size_t n = (size_t)frames * channels;
    uint32_t f, c, k;
    size_t i = 0;
    int single = 1;
    for (c = 1; c < channels; ++c) {
        single &= table_index[c] == table_index[0];
    }
    if (single) {
        const int8_t *t = tables + (size_t)table_index[0] * 256u;
        __m256i part[16];
        const __m256i low4 = _mm256_set1_epi8(0x0f);
        for (k = 0; k < 16u; ++k) {
            part[k] = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)(t + 16u * k)));
        }
        for (; i + 32u <= n; i += 32u) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(in + i));
            const __m256i lo = _mm256_and_si256(v, low4);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
            __m256i r = _mm256_setzero_si256();
            for (k = 0; k < 16u; ++k) {
                const __m256i sel = _mm256_cmpeq_epi8(hi, _mm256_set1_epi8((char)k));
                r = _mm256_blendv_epi8(r, _mm256_shuffle_epi8(part[k], lo), sel);
            }
            _mm256_storeu_si256((__m256i *)(void *)(out + i), r);
        }
        for (; i < n; ++i) {
            out[i] = t[(uint8_t)in[i]];
        }
        return;
    }
    for (f = 0; f < frames; ++f) {
        for (c = 0; c < channels; ++c, ++i) {
            out[i] = tables[(size_t)table_index[c] * 256u + (uint8_t)in[i]];
        }
    }
}
