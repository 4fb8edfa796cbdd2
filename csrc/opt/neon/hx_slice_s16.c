/*
 * hx_slice_s16.c (neon) - int16 STRIDED_SLICE along time: one element-range copy (memcpy), the same
 * code as csrc/ref/hx_slice_s16.c.
 */
#include "../../ref/hx_slice_s16.c"
