/*
 * hx_conv_s8.c (ref) - portable 1-D VALID convolution, int8 in / int8 weights / int32 accumulator.
 *
 * out[t, o] = clamp(requant(bias_eff[o] + sum_{k,i} in[t*stride + k*dilation, i] * w[o, k, i],
 *                            multiplier[o], shift[o], rounding) + output_zp, act_min, act_max)
 * With dilation 1 the K taps of one output frame are K*C_in contiguous input bytes, so each
 * accumulator is one dot product of that length against a weight row; four output channels share
 * each pass over the input window (a loop compilers turn into multiply-add SIMD). The rounding mode
 * is dispatched once per call, not per output.
 */
#include "hx/hx.h"
#include "hx_fixedpoint.h"

HX_INLINE int8_t hx_conv_out(int32_t acc, int32_t m, int32_t e, uint32_t mode, int32_t zp, int32_t lo, int32_t hi) {
    return (int8_t)hx_clamp(hx_requant(acc, m, e, mode) + zp, lo, hi);
}

HX_INLINE void hx_conv_impl(const hx_conv_params *p, const int8_t *in, const int8_t *weights, const int32_t *bias,
                            const int32_t *mult, const int32_t *shift, int8_t *out, uint32_t mode) {
    const uint32_t c_in = p->in_channels, c_out = p->out_channels, k = p->kernel, dil = p->dilation;
    const uint32_t frames = p->out_frames, row = k * c_in;
    const size_t step = (size_t)p->stride * c_in;
    const int32_t zp = p->output_zp, lo = p->act_min, hi = p->act_max;
    uint32_t t, o, j, tap;
    for (t = 0; t < frames; ++t) {
        const int8_t *x = in + (size_t)t * step;
        int8_t *y = out + (size_t)t * c_out;
        if (dil != 1u) {
            for (o = 0; o < c_out; ++o) {
                int32_t a = bias[o];
                for (tap = 0; tap < k; ++tap) {
                    const int8_t *xt = x + (size_t)tap * dil * c_in;
                    const int8_t *wt = weights + (size_t)o * row + (size_t)tap * c_in;
                    for (j = 0; j < c_in; ++j) {
                        a += (int32_t)xt[j] * (int32_t)wt[j];
                    }
                }
                y[o] = hx_conv_out(a, mult[o], shift[o], mode, zp, lo, hi);
            }
            continue;
        }
        for (o = 0; o + 4u <= c_out; o += 4u) {
            const int8_t *w0 = weights + (size_t)o * row, *w1 = w0 + row, *w2 = w1 + row, *w3 = w2 + row;
            int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
            for (j = 0; j < row; ++j) {
                const int32_t v = x[j];
                a0 += v * w0[j];
                a1 += v * w1[j];
                a2 += v * w2[j];
                a3 += v * w3[j];
            }
            y[o] = hx_conv_out(a0 + bias[o], mult[o], shift[o], mode, zp, lo, hi);
            y[o + 1u] = hx_conv_out(a1 + bias[o + 1u], mult[o + 1u], shift[o + 1u], mode, zp, lo, hi);
            y[o + 2u] = hx_conv_out(a2 + bias[o + 2u], mult[o + 2u], shift[o + 2u], mode, zp, lo, hi);
            y[o + 3u] = hx_conv_out(a3 + bias[o + 3u], mult[o + 3u], shift[o + 3u], mode, zp, lo, hi);
        }
        for (; o < c_out; ++o) {
            const int8_t *w0 = weights + (size_t)o * row;
            int32_t a0 = bias[o];
            for (j = 0; j < row; ++j) {
                a0 += (int32_t)x[j] * (int32_t)w0[j];
            }
            y[o] = hx_conv_out(a0, mult[o], shift[o], mode, zp, lo, hi);
        }
    }
}

void hx_conv_s8(const hx_conv_params *p, const int8_t *in, const int8_t *weights, const int32_t *bias_eff,
                const int32_t *multiplier, const int32_t *shift, int8_t *out) {
    switch (p->rounding) {
    case HX_ROUND_DOUBLE_UP:
        hx_conv_impl(p, in, weights, bias_eff, multiplier, shift, out, HX_ROUND_DOUBLE_UP);
        break;
    case HX_ROUND_SINGLE_UP:
        hx_conv_impl(p, in, weights, bias_eff, multiplier, shift, out, HX_ROUND_SINGLE_UP);
        break;
    default:
        hx_conv_impl(p, in, weights, bias_eff, multiplier, shift, out, HX_ROUND_DOUBLE_AWAY);
        break;
    }
}
