/*
 * hx_conv_s16.c (x86) - the portable loops, compiled with -mavx2, are auto-vectorised (int16 x
 * int16 multiply-adds into int32 lanes over 256-element runs), which already puts the 16x8 model
 * well past the 2x-over-LiteRT target (benchmarks/bench_ckernel.py); LiteRT's own 16x8 CONV is its
 * scalar reference kernel. So the x86 set uses the portable kernel as it is rather than a copy.
 */
#include "../../ref/hx_conv_s16.c"
