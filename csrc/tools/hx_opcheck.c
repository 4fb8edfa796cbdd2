/*
 * hx_opcheck - run single kernels on cases read from a file (op-by-op tests of a kernel set, e.g.
 * the NEON one under qemu-aarch64, against toolchain/export/ckernel/numpy_ref.py).
 *
 *   hx_opcheck CASES.bin OUT.bin
 *
 * CASES.bin is a sequence of cases, all integers little-endian int32:
 *   kind, 31 parameter words, then the arrays of that kind:
 *   1 CONV  words: in_frames in_channels out_frames out_channels kernel stride dilation input_zp
 *                  output_zp act_min act_max rounding
 *           arrays: in int8[in_frames*in_channels], weights int8[out_channels*kernel*in_channels],
 *                   bias, multiplier, shift int32[out_channels]
 *           output: out_frames*out_channels bytes (hx_conv_fold_bias + hx_conv_s8)
 *   2 PRELU words: frames channels alpha_count input_zp alpha_zp output_zp m_pos s_pos m_neg s_neg
 *           arrays: in int8[frames*channels], alpha int8[alpha_count]
 *           output: hx_prelu_s8 result, then the table route (hx_prelu_make_tables + hx_lut_s8)
 *   3 ADD   words: count input1_zp input2_zp output_zp left_shift m1 s1 m2 s2 m_out s_out act_min act_max mode
 *           arrays: in1, in2 int8[count]
 *           output: count bytes (hx_add_make_tables + hx_add_s8)
 *   4 CONV16  words: in_frames in_channels out_frames out_channels kernel stride dilation act_min act_max
 *           arrays: in int16[in_frames*in_channels], weights int8[out_channels*kernel*in_channels],
 *                   bias int64[out_channels], multiplier, shift int32[out_channels]
 *           output: out_frames*out_channels int16 (hx_conv_s16_reduce + hx_conv_s16; zeros if refused)
 *   5 LEAKY16 words: count m_identity s_identity m_alpha s_alpha
 *           arrays: in int16[count]
 *           output: count int16 out of place, then count int16 computed in place
 *   6 ADD16 words: count left_shift m1 s1 m2 s2 m_out s_out act_min act_max mode
 *           arrays: in1, in2 int16[count]
 *           output: count int16
 * int16 and int64 values are little-endian (as every target this project builds for).
 * Test-support tool: it allocates per case with malloc.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hx/hx.h"

static int rd_i32(FILE *f, int32_t *v) {
    uint8_t b[4];
    if (fread(b, 1, 4, f) != 4) {
        return 0;
    }
    *v = (int32_t)((uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24));
    return 1;
}

static void *rd_bytes(FILE *f, size_t n) {
    void *p = malloc(n ? n : 1u);
    if (p != NULL && n > 0u && fread(p, 1, n, f) != n) {
        free(p);
        return NULL;
    }
    return p;
}

/* n little-endian int16 / int64 values (the tool runs on little-endian targets, so a byte copy). */
static int16_t *rd_i16s(FILE *f, size_t n) {
    return (int16_t *)rd_bytes(f, n * sizeof(int16_t));
}

static int64_t *rd_i64s(FILE *f, size_t n) {
    int64_t *p = (int64_t *)malloc((n ? n : 1u) * sizeof(int64_t));
    if (p != NULL && n > 0u && fread(p, sizeof(int64_t), n, f) != n) {
        free(p);
        return NULL;
    }
    return p;
}

static int32_t *rd_i32s(FILE *f, size_t n) {
    int32_t *p = (int32_t *)malloc((n ? n : 1u) * sizeof(int32_t));
    size_t i;
    if (p == NULL) {
        return NULL;
    }
    for (i = 0; i < n; ++i) {
        if (!rd_i32(f, &p[i])) {
            free(p);
            return NULL;
        }
    }
    return p;
}

int main(int argc, char **argv) {
    FILE *fi, *fo;
    int32_t kind, w[31];
    int i, cases = 0;
    if (argc != 3) {
        fprintf(stderr, "usage: hx_opcheck CASES.bin OUT.bin\n");
        return 2;
    }
    fi = fopen(argv[1], "rb");
    fo = fopen(argv[2], "wb");
    if (fi == NULL || fo == NULL) {
        return 3;
    }
    while (rd_i32(fi, &kind)) {
        for (i = 0; i < 31; ++i) {
            if (!rd_i32(fi, &w[i])) {
                return 3;
            }
        }
        if (kind == 1) {
            hx_conv_params p;
            size_t n_in, n_w, n_out;
            int8_t *in, *wt, *out;
            int32_t *bias, *mult, *shift;
            memset(&p, 0, sizeof(p));
            p.in_frames = (uint32_t)w[0];
            p.in_channels = (uint32_t)w[1];
            p.out_frames = (uint32_t)w[2];
            p.out_channels = (uint32_t)w[3];
            p.kernel = (uint32_t)w[4];
            p.stride = (uint32_t)w[5];
            p.dilation = (uint32_t)w[6];
            p.input_zp = w[7];
            p.output_zp = w[8];
            p.act_min = w[9];
            p.act_max = w[10];
            p.rounding = (uint32_t)w[11];
            n_in = (size_t)p.in_frames * p.in_channels;
            n_w = (size_t)p.out_channels * p.kernel * p.in_channels;
            n_out = (size_t)p.out_frames * p.out_channels;
            in = (int8_t *)rd_bytes(fi, n_in);
            wt = (int8_t *)rd_bytes(fi, n_w);
            bias = rd_i32s(fi, p.out_channels);
            mult = rd_i32s(fi, p.out_channels);
            shift = rd_i32s(fi, p.out_channels);
            out = (int8_t *)malloc(n_out ? n_out : 1u);
            if (!in || !wt || !bias || !mult || !shift || !out) {
                return 3;
            }
            if (hx_conv_fold_bias(&p, wt, bias, bias) != HX_OK) {
                memset(out, 0, n_out);
            } else {
                hx_conv_s8(&p, in, wt, bias, mult, shift, out);
            }
            fwrite(out, 1, n_out, fo);
            free(in);
            free(wt);
            free(bias);
            free(mult);
            free(shift);
            free(out);
        } else if (kind == 2) {
            hx_prelu_params p;
            size_t n;
            int8_t *in, *alpha, *out, *tables;
            uint8_t *index;
            memset(&p, 0, sizeof(p));
            p.frames = (uint32_t)w[0];
            p.channels = (uint32_t)w[1];
            p.alpha_count = (uint32_t)w[2];
            p.input_zp = w[3];
            p.alpha_zp = w[4];
            p.output_zp = w[5];
            p.multiplier_pos = w[6];
            p.shift_pos = w[7];
            p.multiplier_neg = w[8];
            p.shift_neg = w[9];
            n = (size_t)p.frames * p.channels;
            in = (int8_t *)rd_bytes(fi, n);
            alpha = (int8_t *)rd_bytes(fi, p.alpha_count);
            out = (int8_t *)malloc(n ? n : 1u);
            index = (uint8_t *)malloc(p.channels ? p.channels : 1u);
            if (!in || !alpha || !out || !index) {
                return 3;
            }
            tables = (int8_t *)malloc((size_t)hx_prelu_table_count(&p, alpha) * 256u);
            if (tables == NULL) {
                return 3;
            }
            hx_prelu_s8(&p, in, alpha, out);
            fwrite(out, 1, n, fo);
            hx_prelu_make_tables(&p, alpha, tables, index);
            hx_lut_s8(p.frames, p.channels, tables, index, in, out);
            fwrite(out, 1, n, fo);
            free(in);
            free(alpha);
            free(out);
            free(index);
            free(tables);
        } else if (kind == 3) {
            hx_add_params p;
            int8_t *a, *b, *out;
            int32_t t1[256], t2[256];
            memset(&p, 0, sizeof(p));
            p.count = (uint32_t)w[0];
            p.input1_zp = w[1];
            p.input2_zp = w[2];
            p.output_zp = w[3];
            p.left_shift = w[4];
            p.multiplier1 = w[5];
            p.shift1 = w[6];
            p.multiplier2 = w[7];
            p.shift2 = w[8];
            p.multiplier_out = w[9];
            p.shift_out = w[10];
            p.act_min = w[11];
            p.act_max = w[12];
            p.mode = (uint32_t)w[13];
            a = (int8_t *)rd_bytes(fi, p.count);
            b = (int8_t *)rd_bytes(fi, p.count);
            out = (int8_t *)malloc(p.count ? p.count : 1u);
            if (!a || !b || !out) {
                return 3;
            }
            hx_add_make_tables(&p, t1, t2);
            hx_add_s8(&p, t1, t2, a, b, out);
            fwrite(out, 1, p.count, fo);
            free(a);
            free(b);
            free(out);
        } else if (kind == 4) {
            hx_conv_s16_params p;
            size_t n_in, n_w, n_out;
            int16_t *in, *out;
            int8_t *wt;
            int64_t *bias;
            int32_t *mult, *shift;
            memset(&p, 0, sizeof(p));
            p.in_frames = (uint32_t)w[0];
            p.in_channels = (uint32_t)w[1];
            p.out_frames = (uint32_t)w[2];
            p.out_channels = (uint32_t)w[3];
            p.kernel = (uint32_t)w[4];
            p.stride = (uint32_t)w[5];
            p.dilation = (uint32_t)w[6];
            p.act_min = w[7];
            p.act_max = w[8];
            n_in = (size_t)p.in_frames * p.in_channels;
            n_w = (size_t)p.out_channels * p.kernel * p.in_channels;
            n_out = (size_t)p.out_frames * p.out_channels;
            in = rd_i16s(fi, n_in);
            wt = (int8_t *)rd_bytes(fi, n_w);
            bias = rd_i64s(fi, p.out_channels);
            mult = rd_i32s(fi, p.out_channels);
            shift = rd_i32s(fi, p.out_channels);
            out = (int16_t *)malloc((n_out ? n_out : 1u) * sizeof(int16_t));
            if (!in || !wt || !bias || !mult || !shift || !out) {
                return 3;
            }
            if (hx_conv_s16_reduce(&p, bias, mult, shift, mult) != HX_OK) {
                memset(out, 0, n_out * sizeof(int16_t));
            } else {
                hx_conv_s16(&p, in, wt, bias, mult, shift, out);
            }
            fwrite(out, sizeof(int16_t), n_out, fo);
            free(in);
            free(wt);
            free(bias);
            free(mult);
            free(shift);
            free(out);
        } else if (kind == 5) {
            hx_leaky_relu_s16_params p;
            int16_t *in, *out;
            p.count = (uint32_t)w[0];
            p.multiplier_identity = w[1];
            p.shift_identity = w[2];
            p.multiplier_alpha = w[3];
            p.shift_alpha = w[4];
            in = rd_i16s(fi, p.count);
            out = (int16_t *)malloc((p.count ? p.count : 1u) * sizeof(int16_t));
            if (!in || !out) {
                return 3;
            }
            hx_leaky_relu_s16(&p, in, out);
            fwrite(out, sizeof(int16_t), p.count, fo);
            hx_leaky_relu_s16(&p, in, in);
            fwrite(in, sizeof(int16_t), p.count, fo);
            free(in);
            free(out);
        } else if (kind == 6) {
            hx_add_s16_params p;
            int16_t *a, *b, *out;
            p.count = (uint32_t)w[0];
            p.left_shift = w[1];
            p.multiplier1 = w[2];
            p.shift1 = w[3];
            p.multiplier2 = w[4];
            p.shift2 = w[5];
            p.multiplier_out = w[6];
            p.shift_out = w[7];
            p.act_min = w[8];
            p.act_max = w[9];
            p.mode = (uint32_t)w[10];
            a = rd_i16s(fi, p.count);
            b = rd_i16s(fi, p.count);
            out = (int16_t *)malloc((p.count ? p.count : 1u) * sizeof(int16_t));
            if (!a || !b || !out) {
                return 3;
            }
            hx_add_s16(&p, a, b, out);
            fwrite(out, sizeof(int16_t), p.count, fo);
            free(a);
            free(b);
            free(out);
        } else {
            fprintf(stderr, "hx_opcheck: unknown case kind %d\n", (int)kind);
            return 2;
        }
        ++cases;
    }
    fclose(fi);
    if (fclose(fo) != 0) {
        return 3;
    }
    fprintf(stderr, "hx_opcheck: %d cases (%s)\n", cases, hx_arch());
    return 0;
}
