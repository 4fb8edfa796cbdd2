/*
 * hx_leaky_relu_s16.c (x86) - LEAKY_RELU is a few hundred elements per block; the portable
 * code, auto-vectorised under -mavx2, is used as it is rather than a copy.
 */
#include "../../ref/hx_leaky_relu_s16.c"
