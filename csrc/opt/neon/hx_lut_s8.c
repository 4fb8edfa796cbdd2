/*
 * hx_lut_s8.c (neon) - per-channel 256-entry table lookup. When every channel uses the same table
 * (one PRELU slope), 16 bytes at a time go through four 64-byte TBL/TBX lookups; otherwise one
 * byte at a time. Identical to csrc/ref/hx_lut_s8.c.
 */
#include "hx/hx.h"
#include "hx_neon.h"

void hx_lut_s8(uint32_t frames, uint32_t channels, const int8_t *tables, const uint8_t *table_index,
               const int8_t *in, int8_t *out) {
    const size_t n = (size_t)frames * channels;
    uint32_t f, c;
    size_t i = 0;
    int single = 1;
    for (c = 1; c < channels; ++c) {
        single &= table_index[c] == table_index[0];
    }
    if (single) {
        const int8_t *t = tables + (size_t)table_index[0] * 256u;
        const int8x16x4_t q0 = vld1q_s8_x4(t), q1 = vld1q_s8_x4(t + 64), q2 = vld1q_s8_x4(t + 128);
        const int8x16x4_t q3 = vld1q_s8_x4(t + 192);
        const uint8x16_t k64 = vdupq_n_u8(64);
        for (; i + 16u <= n; i += 16u) {
            const uint8x16_t idx = vreinterpretq_u8_s8(vld1q_s8(in + i));
            int8x16_t r = vqtbl4q_s8(q0, idx);
            r = vqtbx4q_s8(r, q1, vsubq_u8(idx, k64));
            r = vqtbx4q_s8(r, q2, vsubq_u8(idx, vdupq_n_u8(128)));
            r = vqtbx4q_s8(r, q3, vsubq_u8(idx, vdupq_n_u8(192)));
            vst1q_s8(out + i, r);
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
