/*
 * hx_conv_s16.c (x86) - the x86 set uses the portable kernel (auto-vectorised under -mavx2). A
 * hand-written AVX2 version (vpmaddwd over 16-element steps, eight channels per pass) was bit-exact
 * but no faster on the 16x8 SEANet: at 16 samples per block the per-element requantisations of
 * LEAKY_RELU and ADD weigh as much as the convolutions, and the set already runs the model about 5x
 * faster than LiteRT's 16x8 kernels (benchmarks/results/ckernel_bench.json, "int16x8").
 */
#include "../../ref/hx_conv_s16.c"
