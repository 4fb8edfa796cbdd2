/*
 * hx_conv_s16.c (ref) - portable 16x8 1-D VALID convolution: int16 in, int8 weights, int64 bias
 * (TFLite reference_integer_ops::ConvPerChannel for int16 input and int64 bias).
 *
 * out[t, o] = clamp(rq64(bias[o] + sum_{k,i} in[t*stride + k*dilation, i] * w[o, k, i], rm[o], shift[o]))
 * A product is at most 2^22 in magnitude, so up to 256 of them sum exactly in int32; each run of
 * 256 products is then added into the int64 accumulator (the order of exact integer sums does not
 * change the result). Four output channels share each pass over the input window.
 */
#include "hx/hx.h"
#include "hx_fixedpoint.h"

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
        if (dil != 1u) {
            for (o = 0; o < c_out; ++o) {
                int64_t a = bias[o];
                for (tap = 0; tap < k; ++tap) {
                    const int16_t *xt = x + (size_t)tap * dil * c_in;
                    const int8_t *wt = weights + (size_t)o * row + (size_t)tap * c_in;
                    for (j0 = 0; j0 < c_in; j0 += HX_S16_RUN) {
                        const uint32_t j1 = c_in - j0 < HX_S16_RUN ? c_in : j0 + HX_S16_RUN;
                        int32_t s = 0;
                        for (j = j0; j < j1; ++j) {
                            s += (int32_t)xt[j] * (int32_t)wt[j];
                        }
                        a += s;
                    }
                }
                y[o] = hx_conv16_out(a, reduced[o], shift[o], lo, hi);
            }
            continue;
        }
        for (o = 0; o + 4u <= c_out; o += 4u) {
            const int8_t *w0 = weights + (size_t)o * row, *w1 = w0 + row, *w2 = w1 + row, *w3 = w2 + row;
            int64_t a0 = bias[o], a1 = bias[o + 1u], a2 = bias[o + 2u], a3 = bias[o + 3u];
            for (j0 = 0; j0 < row; j0 += HX_S16_RUN) {
                const uint32_t j1 = row - j0 < HX_S16_RUN ? row : j0 + HX_S16_RUN;
                int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
                for (j = j0; j < j1; ++j) {
                    const int32_t v = x[j];
                    s0 += v * w0[j];
                    s1 += v * w1[j];
                    s2 += v * w2[j];
                    s3 += v * w3[j];
                }
                a0 += s0;
                a1 += s1;
                a2 += s2;
                a3 += s3;
            }
            y[o] = hx_conv16_out(a0, reduced[o], shift[o], lo, hi);
            y[o + 1u] = hx_conv16_out(a1, reduced[o + 1u], shift[o + 1u], lo, hi);
            y[o + 2u] = hx_conv16_out(a2, reduced[o + 2u], shift[o + 2u], lo, hi);
            y[o + 3u] = hx_conv16_out(a3, reduced[o + 3u], shift[o + 3u], lo, hi);
        }
        for (; o < c_out; ++o) {
            const int8_t *w0 = weights + (size_t)o * row;
            int64_t a0 = bias[o];
            for (j0 = 0; j0 < row; j0 += HX_S16_RUN) {
                const uint32_t j1 = row - j0 < HX_S16_RUN ? row : j0 + HX_S16_RUN;
                int32_t s0 = 0;
                for (j = j0; j < j1; ++j) {
                    s0 += (int32_t)x[j] * (int32_t)w0[j];
                }
                a0 += s0;
            }
            y[o] = hx_conv16_out(a0, reduced[o], shift[o], lo, hi);
        }
    }
}
