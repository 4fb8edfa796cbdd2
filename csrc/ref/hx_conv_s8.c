/*
 * hx_conv_s8.c (ref) - portable 1-D VALID convolution, int8 in / int8 weights / int32 accumulator.
 *
 * out[t, o] = clamp(requant(bias_eff[o] + sum_{k,i} in[t*stride + k*dilation, i] * w[o, k, i],
 *                            multiplier[o], shift[o], rounding) + output_zp, act_min, act_max)
 * With dilation 1 the K taps of one output frame are K*C_in contiguous input bytes, so each
 * accumulator is one dot product of that length against a weight row (a loop compilers turn
 * into multiply-add SIMD). Four output channels share each pass over the input window.
 */
#include "hx/hx.h"
#include "hx_fixedpoint.h"

#define HX_CONV_CHUNK 64u

static int32_t hx_dot_s8(const int8_t *x, const int8_t *w, uint32_t n) {
    int32_t acc = 0;
    uint32_t j;
    for (j = 0; j < n; ++j) {
        acc += (int32_t)x[j] * (int32_t)w[j];
    }
    return acc;
}

static void hx_dot4_s8(const int8_t *x, const int8_t *w, uint32_t n, int32_t *acc) {
    const int8_t *w0 = w, *w1 = w + n, *w2 = w + 2u * n, *w3 = w + 3u * n;
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    uint32_t j;
    for (j = 0; j < n; ++j) {
        const int32_t v = x[j];
        a0 += v * w0[j];
        a1 += v * w1[j];
        a2 += v * w2[j];
        a3 += v * w3[j];
    }
    acc[0] += a0;
    acc[1] += a1;
    acc[2] += a2;
    acc[3] += a3;
}

/* acc[o] += window . w[o] for n_out channels; the window is K taps dilation frames apart. */
static void hx_conv_accumulate(const int8_t *x, const int8_t *w, uint32_t n_out, uint32_t k, uint32_t c_in,
                               uint32_t dilation, int32_t *acc) {
    const uint32_t row = k * c_in;
    uint32_t o = 0, j;
    if (dilation == 1u) {
        for (; o + 4u <= n_out; o += 4u) {
            hx_dot4_s8(x, w + (size_t)o * row, row, acc + o);
        }
        for (; o < n_out; ++o) {
            acc[o] += hx_dot_s8(x, w + (size_t)o * row, row);
        }
        return;
    }
    for (; o < n_out; ++o) {
        for (j = 0; j < k; ++j) {
            acc[o] += hx_dot_s8(x + (size_t)j * dilation * c_in, w + (size_t)o * row + (size_t)j * c_in, c_in);
        }
    }
}

void hx_conv_s8(const hx_conv_params *p, const int8_t *in, const int8_t *weights, const int32_t *bias_eff,
                const int32_t *multiplier, const int32_t *shift, int8_t *out) {
    const uint32_t c_in = p->in_channels, c_out = p->out_channels, k = p->kernel, dil = p->dilation;
    const uint32_t frames = p->out_frames, mode = p->rounding;
    const size_t row = (size_t)k * c_in, step = (size_t)p->stride * c_in;
    const int32_t zp = p->output_zp, lo = p->act_min, hi = p->act_max;
    int32_t acc[HX_CONV_CHUNK];
    uint32_t t, o0, o, n;
    for (t = 0; t < frames; ++t) {
        const int8_t *x = in + (size_t)t * step;
        int8_t *y = out + (size_t)t * c_out;
        for (o0 = 0; o0 < c_out; o0 += n) {
            n = c_out - o0 < HX_CONV_CHUNK ? c_out - o0 : HX_CONV_CHUNK;
            for (o = 0; o < n; ++o) {
                acc[o] = bias_eff[o0 + o];
            }
            hx_conv_accumulate(x, weights + (size_t)o0 * row, n, k, c_in, dil, acc);
            if (mode == HX_ROUND_DOUBLE_UP) {
                for (o = 0; o < n; ++o) {
                    const int32_t r = hx_requant_double_up(acc[o], multiplier[o0 + o], shift[o0 + o]) + zp;
                    y[o0 + o] = (int8_t)hx_clamp(r, lo, hi);
                }
            } else if (mode == HX_ROUND_SINGLE_UP) {
                for (o = 0; o < n; ++o) {
                    const int32_t r = hx_requant_single_up(acc[o], multiplier[o0 + o], shift[o0 + o]) + zp;
                    y[o0 + o] = (int8_t)hx_clamp(r, lo, hi);
                }
            } else {
                for (o = 0; o < n; ++o) {
                    const int32_t r = hx_mbqm(acc[o], multiplier[o0 + o], shift[o0 + o]) + zp;
                    y[o0 + o] = (int8_t)hx_clamp(r, lo, hi);
                }
            }
        }
    }
}
