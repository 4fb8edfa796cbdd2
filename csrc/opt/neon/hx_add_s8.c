/*
 * hx_add_s8.c (neon) - TFLite int8 ADD: per-operand tables (scalar gathers), then the output
 * rescaling of four sums per vector, narrowed the way LiteRT's NEON kernel narrows (vmovn to int16,
 * int16 zero-point add, saturating narrow). Identical to csrc/ref/hx_add_s8.c.
 */
#include "hx/hx.h"
#include "hx_neon.h"

void hx_add_s8(const hx_add_params *p, const int32_t *table1, const int32_t *table2, const int8_t *in1,
               const int8_t *in2, int8_t *out) {
    const uint32_t n = p->count, chunked = p->mode == HX_ADD_VECTOR16 ? n & ~15u : 0u;
    const int32_t zo = p->output_zp, lo = p->act_min, hi = p->act_max, ls = p->left_shift;
    const int32x4_t mo = vdupq_n_s32(p->multiplier_out), so = vdupq_n_s32(p->shift_out);
    const int16x8_t zo16 = vdupq_n_s16((int16_t)zo);
    const int8x8_t lo8 = vdup_n_s8((int8_t)lo), hi8 = vdup_n_s8((int8_t)hi);
    uint32_t i = 0, k;
    for (; i < chunked; i += 8u) {
        int32_t s[8];
        int16x8_t r16;
        int8x8_t r8;
        for (k = 0; k < 8u; ++k) {
            s[k] = table1[(uint8_t)in1[i + k]] + table2[(uint8_t)in2[i + k]];
        }
        r16 = vcombine_s16(vmovn_s32(hx_v_mbqm(vld1q_s32(s), mo, so)), vmovn_s32(hx_v_mbqm(vld1q_s32(s + 4), mo, so)));
        r8 = vqmovn_s16(vaddq_s16(r16, zo16));
        vst1_s8(out + i, vmax_s8(lo8, vmin_s8(hi8, r8)));
    }
    for (; i < n; ++i) {
        int32_t sum;
        if (p->mode == HX_ADD_VECTOR16) {
            sum = hx_add_operand_reference((int32_t)in1[i] - p->input1_zp, ls, p->multiplier1, p->shift1) +
                  hx_add_operand_reference((int32_t)in2[i] - p->input2_zp, ls, p->multiplier2, p->shift2);
        } else {
            sum = table1[(uint8_t)in1[i]] + table2[(uint8_t)in2[i]];
        }
        out[i] = (int8_t)hx_clamp(hx_mbqm(sum, p->multiplier_out, p->shift_out) + zo, lo, hi);
    }
}
