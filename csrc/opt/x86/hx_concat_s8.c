/*
 * hx_concat_s8.c (x86) - CONCATENATION along time: in NWC with H = 1 the operands are whole
 * frames, so the result is their bytes one after another (equal quantisation is a blob invariant).
 */
#include <string.h>

#include "hx/hx.h"

void hx_concat_s8(const int8_t *const *inputs, const uint32_t *bytes, uint32_t n_inputs, int8_t *out) {
    uint32_t i;
    for (i = 0; i < n_inputs; ++i) {
        memcpy(out, inputs[i], bytes[i]);
        out += bytes[i];
    }
}
