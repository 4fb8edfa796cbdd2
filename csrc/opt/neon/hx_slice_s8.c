/*
 * hx_slice_s8.c (neon) - STRIDED_SLICE along time with stride 1 over whole frames: one contiguous
 * byte range (the writer turns every supported slice into offset + length).
 */
#include <string.h>

#include "hx/hx.h"

void hx_slice_s8(const int8_t *in, uint32_t offset, uint32_t bytes, int8_t *out) {
    memcpy(out, in + offset, bytes);
}
