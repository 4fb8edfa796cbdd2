/*
 * hx_add_s16.c (x86) - ADD is a few hundred elements per block; the portable code, auto-
 * vectorised under -mavx2, is used as it is rather than a copy.
 */
#include "../../ref/hx_add_s16.c"
