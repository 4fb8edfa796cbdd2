/*
 * hx_concat_s16.c (ref) - int16 CONCATENATION along time: in NWC with H = 1 the operands are whole
 * frames, so the result is their elements one after another (equal scales are a blob invariant).
 */
#include <string.h>

#include "hx/hx.h"

void hx_concat_s16(const int16_t *const *inputs, const uint32_t *counts, uint32_t n_inputs, int16_t *out) {
    uint32_t i;
    for (i = 0; i < n_inputs; ++i) {
        memcpy(out, inputs[i], (size_t)counts[i] * sizeof(int16_t));
        out += counts[i];
    }
}
