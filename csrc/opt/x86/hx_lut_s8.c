/*
 * hx_lut_s8.c (x86) - per-channel 256-entry table lookup (PRELU after hx_prelu_make_tables):
 * out[f, c] = tables[table_index[c] * 256 + (uint8_t)in[f, c]]; out may equal in.
 */
#include "hx/hx.h"

void hx_lut_s8(uint32_t frames, uint32_t channels, const int8_t *tables, const uint8_t *table_index,
               const int8_t *in, int8_t *out) {
    uint32_t f, c;
    size_t i = 0;
    int single = 1;
    for (c = 1; c < channels; ++c) {
        single &= table_index[c] == table_index[0];
    }
    if (single) {
        const int8_t *t = tables + (size_t)table_index[0] * 256u;
        const size_t n = (size_t)frames * channels;
        for (i = 0; i < n; ++i) {
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
