/*
 * hx_slice_s16.c (x86) - one element-range copy (memcpy), the same code as the portable set.
 */
#include "../../ref/hx_slice_s16.c"
