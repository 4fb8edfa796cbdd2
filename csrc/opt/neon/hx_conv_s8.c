/*
 * hx_conv_s8.c (neon) - 1-D VALID convolution with NEON: for four output channels at a time the
 * window . weight-row dot products run 16 bytes per step (vmull_s8 int16 products, exact, then
 * vpadalq_s16 into int32), the four sums are reduced pairwise and requantised as one vector.
 * Identical results to csrc/ref/hx_conv_s8.c for every input.
 */
#include "hx/hx.h"
#include "hx_neon.h"

static inline int32x4_t hx_dot_acc(int32x4_t acc, const int8_t *x, const int8_t *w, uint32_t n, int32_t *tail) {
    uint32_t j = 0;
    int32_t s = 0;
    for (; j + 16u <= n; j += 16u) {
        const int8x16_t xv = vld1q_s8(x + j), wv = vld1q_s8(w + j);
        acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(xv), vget_low_s8(wv)));
        acc = vpadalq_s16(acc, vmull_s8(vget_high_s8(xv), vget_high_s8(wv)));
    }
    if (j + 8u <= n) {
        acc = vpadalq_s16(acc, vmull_s8(vld1_s8(x + j), vld1_s8(w + j)));
        j += 8u;
    }
    for (; j < n; ++j) {
        s += (int32_t)x[j] * (int32_t)w[j];
    }
    *tail += s;
    return acc;
}

static inline void hx_conv_impl(const hx_conv_params *p, const int8_t *in, const int8_t *weights, const int32_t *bias,
                                const int32_t *mult, const int32_t *shift, int8_t *out, uint32_t mode) {
    const uint32_t c_in = p->in_channels, c_out = p->out_channels, k = p->kernel, dil = p->dilation;
    const uint32_t frames = p->out_frames, row = k * c_in;
    const size_t step = (size_t)p->stride * c_in;
    const int32_t zp = p->output_zp, lo = p->act_min, hi = p->act_max;
    uint32_t t, o, j, tap;
    for (t = 0; t < frames; ++t) {
        const int8_t *x = in + (size_t)t * step;
        int8_t *y = out + (size_t)t * c_out;
        o = 0;
        if (dil == 1u) {
            for (; o + 4u <= c_out; o += 4u) {
                const int8_t *w0 = weights + (size_t)o * row;
                int32x4_t a0 = vdupq_n_s32(0), a1 = a0, a2 = a0, a3 = a0, sum;
                int32_t tails[4] = {0, 0, 0, 0};
                a0 = hx_dot_acc(a0, x, w0, row, &tails[0]);
                a1 = hx_dot_acc(a1, x, w0 + row, row, &tails[1]);
                a2 = hx_dot_acc(a2, x, w0 + 2u * row, row, &tails[2]);
                a3 = hx_dot_acc(a3, x, w0 + 3u * row, row, &tails[3]);
                sum = vpaddq_s32(vpaddq_s32(a0, a1), vpaddq_s32(a2, a3));
                sum = vaddq_s32(vaddq_s32(sum, vld1q_s32(tails)), vld1q_s32(bias + o));
                sum = hx_v_requant(sum, vld1q_s32(mult + o), vld1q_s32(shift + o), mode);
                hx_v_store4(y + o, vaddq_s32(sum, vdupq_n_s32(zp)), lo, hi);
            }
        }
        for (; o < c_out; ++o) {
            int32_t a = bias[o];
            for (tap = 0; tap < k; ++tap) {
                const int8_t *xt = x + (size_t)tap * dil * c_in;
                const int8_t *wt = weights + (size_t)o * row + (size_t)tap * c_in;
                for (j = 0; j < c_in; ++j) {
                    a += (int32_t)xt[j] * (int32_t)wt[j];
                }
            }
            y[o] = (int8_t)hx_clamp(hx_requant(a, mult[o], shift[o], mode) + zp, lo, hi);
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
