/*
 * hx_tables.c - set-up-time lookup tables (shared by every kernel set).
 *
 * PRELU's output depends only on the input byte and the channel's alpha byte, so a 256-entry table
 * per distinct alpha value reproduces hx_prelu_s8 exactly: the tables are filled by running
 * hx_prelu_s8 itself over all 256 input values. ADD's per-operand rescaling likewise depends on one
 * byte, so it becomes two 256-entry int32 tables.
 */
#include <string.h>

#include "hx/hx.h"
#include "hx_fixedpoint.h"

static uint32_t hx_alpha_at(const hx_prelu_params *p, const int8_t *alpha, uint32_t c) {
    return (uint32_t)(uint8_t)alpha[p->alpha_count == 1u ? 0u : c];
}

uint32_t hx_prelu_table_count(const hx_prelu_params *p, const int8_t *alpha) {
    uint8_t seen[256];
    uint32_t c, n = 0, count = p->alpha_count == 1u ? 1u : p->alpha_count;
    memset(seen, 0, sizeof(seen));
    for (c = 0; c < count; ++c) {
        const uint32_t a = (uint32_t)(uint8_t)alpha[c];
        if (!seen[a]) {
            seen[a] = 1;
            ++n;
        }
    }
    return n;
}

uint32_t hx_prelu_make_tables(const hx_prelu_params *p, const int8_t *alpha, int8_t *tables, uint8_t *table_index) {
    uint8_t slot[256];
    int8_t values[256];
    hx_prelu_params one = *p;
    uint32_t c, i, n = 0;
    memset(slot, 0xff, sizeof(slot));
    for (i = 0; i < 256u; ++i) {
        values[i] = (int8_t)(i < 128u ? (int32_t)i : (int32_t)i - 256);
    }
    one.frames = 256u;
    one.channels = 1u;
    one.alpha_count = 1u;
    for (c = 0; c < p->channels; ++c) {
        const uint32_t a = hx_alpha_at(p, alpha, c);
        if (slot[a] == 0xffu) {
            const int8_t a8 = (int8_t)(a < 128u ? (int32_t)a : (int32_t)a - 256);
            slot[a] = (uint8_t)n;
            hx_prelu_s8(&one, values, &a8, tables + (size_t)n * 256u);
            ++n;
        }
        table_index[c] = slot[a];
    }
    return n;
}

void hx_add_make_tables(const hx_add_params *p, int32_t *table1, int32_t *table2) {
    uint32_t i;
    for (i = 0; i < 256u; ++i) {
        const int32_t q = i < 128u ? (int32_t)i : (int32_t)i - 256;
        if (p->mode == HX_ADD_VECTOR16) {
            table1[i] = hx_add_operand_vector(q - p->input1_zp, p->left_shift, p->multiplier1, p->shift1);
            table2[i] = hx_add_operand_vector(q - p->input2_zp, p->left_shift, p->multiplier2, p->shift2);
        } else {
            table1[i] = hx_add_operand_reference(q - p->input1_zp, p->left_shift, p->multiplier1, p->shift1);
            table2[i] = hx_add_operand_reference(q - p->input2_zp, p->left_shift, p->multiplier2, p->shift2);
        }
    }
}
