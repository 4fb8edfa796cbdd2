/*
 * hx_slice_s16.c (ref) - int16 STRIDED_SLICE along time with stride 1 over whole frames: one
 * contiguous element range (the writer turns every supported slice into offset + length).
 */
#include <string.h>

#include "hx/hx.h"

void hx_slice_s16(const int16_t *in, uint32_t offset, uint32_t count, int16_t *out) {
    memcpy(out, in + offset, (size_t)count * sizeof(int16_t));
}
