/*
 * hx_conv_s16.c (neon) - 16x8 1-D VALID convolution with NEON: for four output channels at a time
 * the window . weight-row dot products run 8 elements per step (the int8 weights widened to int16,
 * vmull/vmlal int16 x int16 -> int32 lanes). A product is at most 2^22, so a lane sums at most 64 of
 * them (256 elements per run, two products per lane per step) well inside int32; the four lane sums
 * of each run are added pairwise (at most 2^30) and carried into int64 accumulators. Requantisation
 * is the scalar int64 one. Identical results to csrc/ref/hx_conv_s16.c for every input.
 */
#include "hx/hx.h"
#include "hx_neon.h"

/* HX_S16_RUN (hx_fixedpoint.h) is a multiple of 8: whole vector steps per run. */
/* Dot product of n int16 x int8 elements (n <= HX_S16_RUN), vector part into the lanes of acc. */
static inline int32x4_t hx_dot16(int32x4_t acc, const int16_t *x, const int8_t *w, uint32_t n, int32_t *tail) {
    uint32_t j = 0;
    int32_t s = 0;
    for (; j + 8u <= n; j += 8u) {
        const int16x8_t xv = vld1q_s16(x + j);
        const int16x8_t wv = vmovl_s8(vld1_s8(w + j));
        acc = vmlal_s16(acc, vget_low_s16(xv), vget_low_s16(wv));
        acc = vmlal_high_s16(acc, xv, wv);
    }
    for (; j < n; ++j) {
        s += (int32_t)x[j] * (int32_t)w[j];
    }
    *tail += s;
    return acc;
}

void hx_conv_s16(const hx_conv_s16_params *p, const int16_t *in, const int8_t *weights, const int64_t *bias,
                 const int32_t *reduced, const int32_t *shift, int16_t *out) {
    const uint32_t c_in = p->in_channels, c_out = p->out_channels, k = p->kernel, dil = p->dilation;
    const uint32_t frames = p->out_frames, row = k * c_in;
    const size_t step = (size_t)p->stride * c_in;
    const int32_t lo = p->act_min, hi = p->act_max;
    uint32_t t, o, j, j0, tap;
    for (t = 0; t < frames; ++t) {
        const int16_t *x = in + (size_t)t * step;
        int16_t *y = out + (size_t)t * c_out;
        o = 0;
        if (dil == 1u) {
            for (; o + 4u <= c_out; o += 4u) {
                const int8_t *w0 = weights + (size_t)o * row;
                int64_t a[4];
                a[0] = bias[o];
                a[1] = bias[o + 1u];
                a[2] = bias[o + 2u];
                a[3] = bias[o + 3u];
                for (j0 = 0; j0 < row; j0 += HX_S16_RUN) {
                    const uint32_t n = row - j0 < HX_S16_RUN ? row - j0 : HX_S16_RUN;
                    int32x4_t v0 = vdupq_n_s32(0), v1 = v0, v2 = v0, v3 = v0, sum;
                    int32_t tails[4] = {0, 0, 0, 0};
                    v0 = hx_dot16(v0, x + j0, w0 + j0, n, &tails[0]);
                    v1 = hx_dot16(v1, x + j0, w0 + row + j0, n, &tails[1]);
                    v2 = hx_dot16(v2, x + j0, w0 + 2u * row + j0, n, &tails[2]);
                    v3 = hx_dot16(v3, x + j0, w0 + 3u * row + j0, n, &tails[3]);
                    sum = vaddq_s32(vpaddq_s32(vpaddq_s32(v0, v1), vpaddq_s32(v2, v3)), vld1q_s32(tails));
                    a[0] += vgetq_lane_s32(sum, 0);
                    a[1] += vgetq_lane_s32(sum, 1);
                    a[2] += vgetq_lane_s32(sum, 2);
                    a[3] += vgetq_lane_s32(sum, 3);
                }
                y[o] = hx_conv16_out(a[0], reduced[o], shift[o], lo, hi);
                y[o + 1u] = hx_conv16_out(a[1], reduced[o + 1u], shift[o + 1u], lo, hi);
                y[o + 2u] = hx_conv16_out(a[2], reduced[o + 2u], shift[o + 2u], lo, hi);
                y[o + 3u] = hx_conv16_out(a[3], reduced[o + 3u], shift[o + 3u], lo, hi);
            }
        }
        for (; o < c_out; ++o) {
            int64_t a0 = bias[o];
            for (tap = 0; tap < k; ++tap) {
                const int16_t *xt = x + (size_t)tap * dil * c_in;
                const int8_t *wt = weights + (size_t)o * row + (size_t)tap * c_in;
                for (j0 = 0; j0 < c_in; j0 += HX_S16_RUN) {
                    const uint32_t j1 = c_in - j0 < HX_S16_RUN ? c_in : j0 + HX_S16_RUN;
                    int32_t s0 = 0;
                    for (j = j0; j < j1; ++j) {
                        s0 += (int32_t)xt[j] * (int32_t)wt[j];
                    }
                    a0 += s0;
                }
            }
            y[o] = hx_conv16_out(a0, reduced[o], shift[o], lo, hi);
        }
    }
}
