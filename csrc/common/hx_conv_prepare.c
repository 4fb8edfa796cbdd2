/*
 * hx_conv_prepare.c - folding the input zero point of a convolution into its bias (set-up time,
 * shared by every kernel set): sum_j (x_j - zp) * w_j + b == sum_j x_j * w_j + (b - zp * sum_j w_j),
 * exact in integers, so the inner loops multiply raw int8 values.
 */
#include "hx/hx.h"

hx_status hx_conv_fold_bias(const hx_conv_params *p, const int8_t *weights, const int32_t *bias, int32_t *bias_eff) {
    const uint64_t row = (uint64_t)p->kernel * p->in_channels;
    uint32_t o;
    uint64_t j;
    if (row > 65536u) {
        return HX_E_UNSUPPORTED; /* sum of row products could leave int32 */
    }
    for (o = 0; o < p->out_channels; ++o) {
        const int8_t *w = weights + (size_t)o * (size_t)row;
        int64_t sum = 0, v;
        for (j = 0; j < row; ++j) {
            sum += w[j];
        }
        v = (bias != NULL ? (int64_t)bias[o] : 0) - (int64_t)p->input_zp * sum;
        /* |row sum of products| <= 2^14 * 2^16 = 2^30; with |v| < 2^30 the int32 accumulator cannot overflow. */
        if (v <= -((int64_t)1 << 30) || v >= ((int64_t)1 << 30)) {
            return HX_E_UNSUPPORTED;
        }
        bias_eff[o] = (int32_t)v;
    }
    return HX_OK;
}

/* 16x8: TFLite's MultiplyByQuantizedMultiplier for int64 accumulators first reduces each multiplier to
 * 16 bits (common.cc); doing it once here leaves the kernels one multiply-add and one shift. The bounds
 * make every step exact in int64: |acc| <= 2^38 (K*C_in <= 65536 products of at most 2^22) plus
 * |bias| <= 2^46 stays below TFLite's 2^47, and times rm < 2^15 below 2^62. */
hx_status hx_conv_s16_reduce(const hx_conv_s16_params *p, const int64_t *bias, const int32_t *multiplier,
                             const int32_t *shift, int32_t *reduced) {
    uint32_t o;
    if ((uint64_t)p->kernel * p->in_channels > 65536u) {
        return HX_E_UNSUPPORTED;
    }
    for (o = 0; o < p->out_channels; ++o) {
        const int32_t m = multiplier[o];
        const int64_t b = bias != NULL ? bias[o] : 0;
        if (m < 0 || shift[o] < -31 || shift[o] > 7 || b > ((int64_t)1 << 46) || b < -((int64_t)1 << 46)) {
            return HX_E_UNSUPPORTED;
        }
        reduced[o] = m < 0x7FFF0000 ? (int32_t)(((int64_t)m + (1 << 15)) >> 16) : 0x7FFF;
    }
    return HX_OK;
}
