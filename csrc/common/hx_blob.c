/*
 * hx_blob.c - validation of a kernel blob: every length, offset, id and dimension is checked
 * against the blob and region sizes (in 64-bit arithmetic) before anything is dereferenced,
 * so an absurd or hostile blob yields a status, never a crash.
 *
 * Op parameter words (from HXO_P0), little-endian int32:
 *   CONV   kernel, stride, dilation, input_zp, output_zp, act_min, act_max, rounding
 *          data: weights[C_out][K][C_in] int8, zero pad to 4, bias[C_out], multiplier[C_out], shift[C_out] int32
 *   PRELU  input_zp, alpha_zp, output_zp, multiplier_pos, shift_pos, multiplier_neg, shift_neg, alpha_count
 *          data: alpha[alpha_count] int8
 *   ADD    input1_zp, input2_zp, output_zp, left_shift, m1, s1, m2, s2, m_out, s_out, act_min, act_max, mode
 *   CONCAT (none)   inputs 1..HX_MAX_OP_INPUTS, concatenated in order
 *   COPY   src_offset, bytes (multiples of the element size)
 * 16x8 models (header act_bits 16; int16 tensors, zero points 0):
 *   CONV   as above (rounding 0, zero points 0); data: weights, zero pad to 4, bias[C_out] int64,
 *          multiplier[C_out], shift[C_out] int32 (shift in [-31, 7], |bias| <= 2^46)
 *   ADD    as above with left_shift <= 15 (TFLite uses 15); no set-up tables
 *   LEAKY_RELU  input_zp, output_zp, multiplier_identity, shift_identity, multiplier_alpha, shift_alpha
 *   PRELU is int8 only, LEAKY_RELU 16x8 only.
 */
#include <string.h>

#include "hx_internal.h"

/* ---- CRC-32 ------------------------------------------------------------------------------ */

static const uint32_t hx_crc_nibble[16] = {
    0x00000000u, 0x1db71064u, 0x3b6e20c8u, 0x26d930acu, 0x76dc4190u, 0x6b6b51f4u, 0x4db26158u, 0x5005713cu,
    0xedb88320u, 0xf00f9344u, 0xd6d6a3e8u, 0xcb61b38cu, 0x9b64c2b0u, 0x86d3d2d4u, 0xa00ae278u, 0xbdbdf21cu,
};

uint32_t hx_crc32(const uint8_t *data, size_t len) {
    uint32_t crc = 0xffffffffu;
    size_t i;
    for (i = 0; i < len; ++i) {
        crc ^= data[i];
        crc = (crc >> 4) ^ hx_crc_nibble[crc & 15u];
        crc = (crc >> 4) ^ hx_crc_nibble[crc & 15u];
    }
    return crc ^ 0xffffffffu;
}

/* ---- helpers ------------------------------------------------------------------------------ */

typedef struct {
    uint32_t region;
    uint64_t offset;
    uint64_t bytes;
    uint32_t frames;
    uint32_t channels;
    int32_t zero_point;
} hx_tinfo;

static uint64_t hx_align_up(uint64_t v, uint64_t a) {
    return (v + (a - 1u)) / a * a;
}

static int hx_zp_ok(int32_t zp) {
    return zp >= -128 && zp <= 127;
}

/* The model's element size in bytes, from a header whose act_bits word has been checked. */
static uint32_t hx_elem_bytes(const uint8_t *blob) {
    return hx_rd_u32(blob + HXB_ACT_BITS) == (uint32_t)HX_ACT_S16 ? 2u : 1u;
}

static int hx_shift_ok(int32_t s) {
    return s >= -31 && s <= 30;
}

/* ADD's three (multiplier, shift) pairs at parameter words 4..9, both sample types: non-negative
 * multipliers, right shifts only (TFLite's ADD rescales down to each operand's and the output's scale). */
static int hx_add_rescales_ok(const int32_t *w) {
    int k;
    for (k = 0; k < 3; ++k) {
        const int32_t m = w[HXO_P0 + 4 + 2 * k], s = w[HXO_P0 + 5 + 2 * k];
        if (m < 0 || s < -31 || s > 0) {
            return 0;
        }
    }
    return 1;
}

/* Read tensor record i (i < n_tensors, already range-checked table). */
static hx_status hx_read_tensor(const uint8_t *blob, uint32_t table, uint32_t i, uint64_t state_bytes,
                                uint64_t scratch_bytes, hx_tinfo *t) {
    const uint8_t *r = blob + table + (size_t)i * HX_BLOB_TENSOR_BYTES;
    uint64_t limit;
    t->region = hx_rd_u32(r + HXT_REGION);
    t->offset = hx_rd_u32(r + HXT_OFFSET);
    t->frames = hx_rd_u32(r + HXT_FRAMES);
    t->channels = hx_rd_u32(r + HXT_CHANNELS);
    t->zero_point = hx_rd_i32(r + HXT_ZERO_POINT);
    if (t->frames == 0u || t->channels == 0u || t->frames > HX_MAX_DIM || t->channels > HX_MAX_DIM) {
        return HX_E_MALFORMED;
    }
    if (!hx_zp_ok(t->zero_point) || (hx_elem_bytes(blob) == 2u && t->zero_point != 0)) {
        return HX_E_MALFORMED;
    }
    t->bytes = (uint64_t)t->frames * (uint64_t)t->channels * hx_elem_bytes(blob);
    if (t->offset % hx_elem_bytes(blob) != 0u) {
        return HX_E_MALFORMED; /* int16 elements must be 2-aligned in the (16-aligned) regions */
    }
    if (t->region == HX_REGION_SCRATCH) {
        limit = scratch_bytes;
    } else if (t->region == HX_REGION_STATE) {
        limit = state_bytes;
    } else {
        return HX_E_MALFORMED;
    }
    if (t->bytes > limit || t->offset > limit - t->bytes) {
        return HX_E_MALFORMED;
    }
    return HX_OK;
}

static int hx_same(const hx_tinfo *a, const hx_tinfo *b) {
    return a->region == b->region && a->offset == b->offset && a->bytes == b->bytes;
}

static int hx_disjoint(const hx_tinfo *a, const hx_tinfo *b) {
    return a->region != b->region || a->offset + a->bytes <= b->offset || b->offset + b->bytes <= a->offset;
}

/* Distinct byte values among n bytes. */
static uint64_t hx_distinct(const uint8_t *p, uint64_t n) {
    uint8_t seen[256];
    uint64_t i, d = 0;
    memset(seen, 0, sizeof(seen));
    for (i = 0; i < n; ++i) {
        if (!seen[p[i]]) {
            seen[p[i]] = 1;
            ++d;
        }
    }
    return d;
}

static int hx_act16_ok(int32_t lo, int32_t hi) {
    return lo >= -32768 && hi <= 32767 && lo <= hi;
}

/* The checks of hx_check_op for an op of a 16x8 model (tensors and data range already checked). */
static hx_status hx_check_op_s16(const uint8_t *blob, const int32_t *w, uint32_t type, uint32_t n_in,
                                 const hx_tinfo *tin, const hx_tinfo *tout, uint64_t d_off, uint64_t d_bytes,
                                 uint64_t *param_bytes) {
    uint32_t i;
    switch (type) {
    case HX_OP_CONV: {
        const uint64_t k = (uint32_t)w[HXO_P0], stride = (uint32_t)w[HXO_P0 + 1], dil = (uint32_t)w[HXO_P0 + 2];
        const uint64_t c_in = tin[0].channels, c_out = tout->channels;
        uint64_t eff, w_out, wbytes, o;
        const uint8_t *arr;
        if (n_in != 1u) {
            return HX_E_MALFORMED;
        }
        if (k == 0u || stride == 0u || dil == 0u || k > HX_MAX_DIM || stride > HX_MAX_DIM || dil > HX_MAX_DIM) {
            return HX_E_MALFORMED;
        }
        if (w[HXO_P0 + 7] != (int32_t)HX_ROUND_DOUBLE_AWAY) {
            return HX_E_UNSUPPORTED; /* 16x8 convs have one requantisation, recorded as 0 */
        }
        if (w[HXO_P0 + 3] != 0 || w[HXO_P0 + 4] != 0 || !hx_act16_ok(w[HXO_P0 + 5], w[HXO_P0 + 6])) {
            return HX_E_MALFORMED;
        }
        eff = dil * (k - 1u) + 1u;
        if (tin[0].frames < eff || (tin[0].frames - eff) / stride + 1u != tout->frames) {
            return HX_E_MALFORMED;
        }
        w_out = tout->frames;
        (void)w_out;
        if (k * c_in > 65536u) {
            return HX_E_UNSUPPORTED; /* keeps |sum x*w| <= 2^38 (see HX_BIAS64_LIMIT) */
        }
        wbytes = c_out * k * c_in;
        if (d_bytes != hx_align_up(wbytes, 4u) + HX_CONV16_PARAM_BYTES * c_out) {
            return HX_E_MALFORMED;
        }
        arr = blob + d_off + hx_align_up(wbytes, 4u);
        for (o = 0; o < c_out; ++o) {
            const int64_t b = hx_rd_i64(arr + 8u * o);
            const int32_t m = hx_rd_i32(arr + 8u * c_out + 4u * o);
            const int32_t s = hx_rd_i32(arr + 12u * c_out + 4u * o);
            if (b > HX_BIAS64_LIMIT || b < -HX_BIAS64_LIMIT || m < 0 || s < -31 || s > 7) {
                return HX_E_UNSUPPORTED;
            }
        }
        if (!hx_disjoint(&tin[0], tout)) {
            return HX_E_MALFORMED;
        }
        *param_bytes += HX_CONV16_PARAM_BYTES * c_out;
        return HX_OK;
    }
    case HX_OP_LEAKY_RELU:
        if (n_in != 1u || tin[0].bytes != tout->bytes || tin[0].channels != tout->channels || d_bytes != 0u) {
            return HX_E_MALFORMED;
        }
        if (w[HXO_P0] != 0 || w[HXO_P0 + 1] != 0) {
            return HX_E_MALFORMED;
        }
        if (w[HXO_P0 + 2] < 0 || w[HXO_P0 + 4] < 0 || !hx_shift_ok(w[HXO_P0 + 3]) || !hx_shift_ok(w[HXO_P0 + 5])) {
            return HX_E_UNSUPPORTED;
        }
        if (!hx_same(&tin[0], tout) && !hx_disjoint(&tin[0], tout)) {
            return HX_E_MALFORMED;
        }
        return HX_OK;
    case HX_OP_ADD:
        if (n_in != 2u || tin[0].bytes != tout->bytes || tin[1].bytes != tout->bytes || d_bytes != 0u) {
            return HX_E_MALFORMED;
        }
        if (w[HXO_P0] != 0 || w[HXO_P0 + 1] != 0 || w[HXO_P0 + 2] != 0) {
            return HX_E_MALFORMED;
        }
        if (w[HXO_P0 + 3] < 0 || w[HXO_P0 + 3] > 15) {
            return HX_E_UNSUPPORTED;
        }
        if (!hx_add_rescales_ok(w)) {
            return HX_E_UNSUPPORTED;
        }
        if (!hx_act16_ok(w[HXO_P0 + 10], w[HXO_P0 + 11])) {
            return HX_E_MALFORMED;
        }
        if ((uint32_t)w[HXO_P0 + 12] > (uint32_t)HX_ADD_REFERENCE) {
            return HX_E_UNSUPPORTED;
        }
        for (i = 0; i < 2u; ++i) {
            if (!hx_same(&tin[i], tout) && !hx_disjoint(&tin[i], tout)) {
                return HX_E_MALFORMED;
            }
        }
        return HX_OK;
    case HX_OP_CONCAT: {
        uint64_t sum = 0;
        if (d_bytes != 0u) {
            return HX_E_MALFORMED;
        }
        for (i = 0; i < n_in; ++i) {
            if (tin[i].channels != tout->channels || !hx_disjoint(&tin[i], tout)) {
                return HX_E_MALFORMED;
            }
            sum += tin[i].bytes;
        }
        return sum == tout->bytes ? HX_OK : HX_E_MALFORMED;
    }
    case HX_OP_COPY: {
        const uint64_t off = (uint32_t)w[HXO_P0], bytes = (uint32_t)w[HXO_P0 + 1];
        if (n_in != 1u || d_bytes != 0u || bytes != tout->bytes || off > tin[0].bytes || bytes > tin[0].bytes - off) {
            return HX_E_MALFORMED;
        }
        if (off % 2u != 0u || !hx_disjoint(&tin[0], tout)) {
            return HX_E_MALFORMED;
        }
        return HX_OK;
    }
    default:
        return HX_E_UNSUPPORTED; /* PRELU: LiteRT has no int16 PRELU */
    }
}

/* Check one op record; adds the arena bytes of its set-up tables to *param_bytes. */
static hx_status hx_check_op(const uint8_t *blob, const uint8_t *rec, uint32_t n_tensors, uint32_t table,
                             uint64_t state_bytes, uint64_t scratch_bytes, uint64_t data_lo, uint64_t data_hi,
                             uint64_t *param_bytes) {
    int32_t w[HXO_WORDS];
    hx_tinfo tin[HX_MAX_OP_INPUTS];
    hx_tinfo tout;
    uint32_t i, n_in, type;
    uint64_t d_off, d_bytes;
    hx_status st;
    for (i = 0; i < HXO_WORDS; ++i) {
        w[i] = hx_rd_i32(rec + 4u * i);
    }
    type = (uint32_t)w[HXO_TYPE];
    n_in = (uint32_t)w[HXO_N_IN];
    if (type < HX_OP_CONV || type > HX_OP_LEAKY_RELU) {
        return HX_E_UNSUPPORTED;
    }
    if (n_in < 1u || n_in > HX_MAX_OP_INPUTS) {
        return HX_E_MALFORMED;
    }
    for (i = 0; i < n_in; ++i) {
        const uint32_t id = (uint32_t)w[HXO_IN0 + i];
        if (id >= n_tensors) {
            return HX_E_MALFORMED;
        }
        st = hx_read_tensor(blob, table, id, state_bytes, scratch_bytes, &tin[i]);
        if (st != HX_OK) {
            return st;
        }
    }
    if ((uint32_t)w[HXO_OUT] >= n_tensors) {
        return HX_E_MALFORMED;
    }
    st = hx_read_tensor(blob, table, (uint32_t)w[HXO_OUT], state_bytes, scratch_bytes, &tout);
    if (st != HX_OK) {
        return st;
    }
    d_off = (uint32_t)w[HXO_DATA_OFFSET];
    d_bytes = (uint32_t)w[HXO_DATA_BYTES];
    if (d_bytes > 0u && (d_off < data_lo || d_off > data_hi || d_bytes > data_hi - d_off)) {
        return HX_E_MALFORMED;
    }

    if (hx_elem_bytes(blob) == 2u) {
        return hx_check_op_s16(blob, w, type, n_in, tin, &tout, d_off, d_bytes, param_bytes);
    }
    if (type == HX_OP_LEAKY_RELU) {
        return HX_E_UNSUPPORTED; /* int8 models run LEAKY_RELU as a PRELU */
    }
    switch (type) {
    case HX_OP_CONV: {
        const uint64_t k = (uint32_t)w[HXO_P0], stride = (uint32_t)w[HXO_P0 + 1], dil = (uint32_t)w[HXO_P0 + 2];
        const int32_t in_zp = w[HXO_P0 + 3], out_zp = w[HXO_P0 + 4];
        const int32_t amin = w[HXO_P0 + 5], amax = w[HXO_P0 + 6];
        const uint32_t rounding = (uint32_t)w[HXO_P0 + 7];
        const uint64_t c_in = tin[0].channels, c_out = tout.channels;
        uint64_t eff, w_out, wbytes, o;
        const uint8_t *arr;
        if (n_in != 1u) {
            return HX_E_MALFORMED;
        }
        if (k == 0u || stride == 0u || dil == 0u || k > HX_MAX_DIM || stride > HX_MAX_DIM || dil > HX_MAX_DIM) {
            return HX_E_MALFORMED;
        }
        if (rounding > (uint32_t)HX_ROUND_SINGLE_UP) {
            return HX_E_UNSUPPORTED;
        }
        if (!hx_zp_ok(in_zp) || !hx_zp_ok(out_zp) || amin < -128 || amax > 127 || amin > amax) {
            return HX_E_MALFORMED;
        }
        if (in_zp != tin[0].zero_point || out_zp != tout.zero_point) {
            return HX_E_MALFORMED;
        }
        eff = dil * (k - 1u) + 1u;
        if (tin[0].frames < eff) {
            return HX_E_MALFORMED;
        }
        w_out = (tin[0].frames - eff) / stride + 1u;
        if (w_out != tout.frames) {
            return HX_E_MALFORMED;
        }
        if (k * c_in > 65536u) {
            return HX_E_UNSUPPORTED; /* int32 accumulation would not be exact */
        }
        wbytes = c_out * k * c_in;
        if (d_bytes != hx_align_up(wbytes, 4u) + 12u * c_out) {
            return HX_E_MALFORMED;
        }
        arr = blob + d_off + hx_align_up(wbytes, 4u);
        for (o = 0; o < c_out; ++o) {
            const int32_t m = hx_rd_i32(arr + 4u * (c_out + o));
            const int32_t s = hx_rd_i32(arr + 4u * (2u * c_out + o));
            if (m < 0 || !hx_shift_ok(s)) {
                return HX_E_UNSUPPORTED;
            }
        }
        if (!hx_disjoint(&tin[0], &tout)) {
            return HX_E_MALFORMED;
        }
        *param_bytes += 12u * c_out;
        break;
    }
    case HX_OP_PRELU: {
        const uint32_t alpha_count = (uint32_t)w[HXO_P0 + 7];
        if (n_in != 1u || tin[0].bytes != tout.bytes || tin[0].channels != tout.channels) {
            return HX_E_MALFORMED;
        }
        if (alpha_count != 1u && alpha_count != tin[0].channels) {
            return HX_E_MALFORMED;
        }
        if (d_bytes != alpha_count) {
            return HX_E_MALFORMED;
        }
        if (!hx_zp_ok(w[HXO_P0]) || !hx_zp_ok(w[HXO_P0 + 1]) || !hx_zp_ok(w[HXO_P0 + 2])) {
            return HX_E_MALFORMED;
        }
        if (w[HXO_P0] != tin[0].zero_point || w[HXO_P0 + 2] != tout.zero_point) {
            return HX_E_MALFORMED;
        }
        if (w[HXO_P0 + 3] < 0 || w[HXO_P0 + 5] < 0 || !hx_shift_ok(w[HXO_P0 + 4]) || !hx_shift_ok(w[HXO_P0 + 6])) {
            return HX_E_UNSUPPORTED;
        }
        if (!hx_same(&tin[0], &tout) && !hx_disjoint(&tin[0], &tout)) {
            return HX_E_MALFORMED;
        }
        *param_bytes += hx_align_up(tin[0].channels, 4u) + 256u * hx_distinct(blob + d_off, alpha_count);
        break;
    }
    case HX_OP_ADD: {
        if (n_in != 2u || tin[0].bytes != tout.bytes || tin[1].bytes != tout.bytes) {
            return HX_E_MALFORMED;
        }
        if (d_bytes != 0u) {
            return HX_E_MALFORMED;
        }
        if (!hx_zp_ok(w[HXO_P0]) || !hx_zp_ok(w[HXO_P0 + 1]) || !hx_zp_ok(w[HXO_P0 + 2])) {
            return HX_E_MALFORMED;
        }
        if (w[HXO_P0] != tin[0].zero_point || w[HXO_P0 + 1] != tin[1].zero_point ||
            w[HXO_P0 + 2] != tout.zero_point) {
            return HX_E_MALFORMED;
        }
        if (w[HXO_P0 + 3] < 0 || w[HXO_P0 + 3] > 22) {
            return HX_E_UNSUPPORTED;
        }
        if (!hx_add_rescales_ok(w)) {
            return HX_E_UNSUPPORTED;
        }
        if (w[HXO_P0 + 10] < -128 || w[HXO_P0 + 11] > 127 || w[HXO_P0 + 10] > w[HXO_P0 + 11]) {
            return HX_E_MALFORMED;
        }
        if ((uint32_t)w[HXO_P0 + 12] > (uint32_t)HX_ADD_REFERENCE) {
            return HX_E_UNSUPPORTED;
        }
        for (i = 0; i < 2u; ++i) {
            if (!hx_same(&tin[i], &tout) && !hx_disjoint(&tin[i], &tout)) {
                return HX_E_MALFORMED;
            }
        }
        *param_bytes += HX_ADD_TABLE_BYTES;
        break;
    }
    case HX_OP_CONCAT: {
        uint64_t sum = 0;
        if (d_bytes != 0u) {
            return HX_E_MALFORMED;
        }
        for (i = 0; i < n_in; ++i) {
            if (tin[i].channels != tout.channels || !hx_disjoint(&tin[i], &tout)) {
                return HX_E_MALFORMED;
            }
            sum += tin[i].bytes;
        }
        if (sum != tout.bytes) {
            return HX_E_MALFORMED;
        }
        break;
    }
    case HX_OP_COPY: {
        const uint64_t off = (uint32_t)w[HXO_P0], bytes = (uint32_t)w[HXO_P0 + 1];
        if (n_in != 1u || d_bytes != 0u || bytes != tout.bytes || off > tin[0].bytes || bytes > tin[0].bytes - off) {
            return HX_E_MALFORMED;
        }
        if (!hx_disjoint(&tin[0], &tout)) {
            return HX_E_MALFORMED;
        }
        break;
    }
    default:
        return HX_E_UNSUPPORTED;
    }
    return HX_OK;
}

/* True if a's bytes lie inside b's (same region). */
static int hx_inside(const hx_tinfo *a, const hx_tinfo *b) {
    return a->region == b->region && b->offset <= a->offset && a->offset + a->bytes <= b->offset + b->bytes;
}

/* True if the scratch bytes of t were written earlier in the same step: by hx_model_process (the
 * input tensor) or by one of the first n_before ops (its output tensor contains t; tensors may
 * alias an earlier output under another id and quantisation). */
static int hx_defined(const uint8_t *blob, uint32_t table, uint32_t o_table, uint32_t n_before, const hx_tinfo *t,
                      const hx_tinfo *input, uint64_t state_bytes, uint64_t scratch_bytes) {
    uint32_t j;
    hx_tinfo w;
    if (t->region != HX_REGION_SCRATCH || hx_inside(t, input)) {
        return 1; /* the state region is defined at all times: init and reset set it */
    }
    for (j = n_before; j-- > 0u;) {
        const uint32_t out = hx_rd_u32(blob + o_table + (size_t)j * HX_BLOB_OP_BYTES + 4u * HXO_OUT);
        /* Checked by hx_check_op already; a failure here still counts as "not written". */
        if (hx_read_tensor(blob, table, out, state_bytes, scratch_bytes, &w) != HX_OK) {
            continue;
        }
        if (hx_inside(t, &w)) {
            return 1;
        }
    }
    return 0;
}

/* Dataflow: every scratch byte an op reads, and the output the step returns, must have been
 * written earlier in the same step. A read of anything else sees the previous step's bytes: a
 * hidden state that neither hx_model_reset nor a state snapshot covers, so "reset, then the same
 * input" would no longer give the same output (found by csrc/fuzz/hx_fuzz_blob.c on a blob with
 * two ops swapped). Cost: O(n_ops^2) tensor reads in the worst case, bounded by HX_MAX_OPS. */
static hx_status hx_check_dataflow(const uint8_t *blob, uint32_t table, uint32_t o_table, uint32_t n_ops,
                                   const hx_tinfo *input, const hx_tinfo *output, uint64_t state_bytes,
                                   uint64_t scratch_bytes) {
    uint32_t i, k;
    hx_tinfo t;
    for (i = 0; i < n_ops; ++i) {
        const uint8_t *rec = blob + o_table + (size_t)i * HX_BLOB_OP_BYTES;
        const uint32_t n_in = hx_rd_u32(rec + 4u * HXO_N_IN);
        for (k = 0; k < n_in; ++k) {
            if (hx_read_tensor(blob, table, hx_rd_u32(rec + 4u * (HXO_IN0 + k)), state_bytes, scratch_bytes, &t) != HX_OK) {
                return HX_E_MALFORMED;
            }
            if (!hx_defined(blob, table, o_table, i, &t, input, state_bytes, scratch_bytes)) {
                return HX_E_MALFORMED;
            }
        }
    }
    return hx_defined(blob, table, o_table, n_ops, output, input, state_bytes, scratch_bytes) ? HX_OK : HX_E_MALFORMED;
}

hx_status hx_blob_validate(const uint8_t *blob, size_t blob_len, hx_layout *layout) {
    uint64_t len, n_tensors, n_ops, t_table, o_table, data_off, data_bytes, state_bytes, scratch_bytes;
    uint64_t param_bytes = 0, total, body;
    uint32_t i, block, in_id, out_id, act_bits;
    hx_tinfo tin, tout;
    hx_status st;

    if (blob == NULL || layout == NULL) {
        return HX_E_NULL;
    }
    memset(layout, 0, sizeof(*layout));
    if (blob_len < (size_t)HX_BLOB_HEADER_BYTES + 4u) {
        return HX_E_TRUNCATED;
    }
    if (memcmp(blob + HXB_MAGIC, "HXKB", 4) != 0) {
        return HX_E_MAGIC;
    }
    if (hx_rd_u32(blob + HXB_VERSION) != (uint32_t)HX_BLOB_FORMAT_VERSION) {
        return HX_E_VERSION;
    }
    len = hx_rd_u32(blob + HXB_BLOB_BYTES);
    if (len > (uint64_t)blob_len) {
        return HX_E_TRUNCATED;
    }
    if (len < (uint64_t)HX_BLOB_HEADER_BYTES + 4u) {
        return HX_E_MALFORMED;
    }
    body = len - 4u;
    if (hx_crc32(blob, (size_t)body) != hx_rd_u32(blob + body)) {
        return HX_E_CHECKSUM;
    }
    if (hx_rd_u32(blob + HXB_HEADER_BYTES) != HX_BLOB_HEADER_BYTES) {
        return HX_E_MALFORMED;
    }

    n_tensors = hx_rd_u32(blob + HXB_N_TENSORS);
    n_ops = hx_rd_u32(blob + HXB_N_OPS);
    t_table = hx_rd_u32(blob + HXB_TENSOR_TABLE);
    o_table = hx_rd_u32(blob + HXB_OP_TABLE);
    data_off = hx_rd_u32(blob + HXB_DATA_OFFSET);
    data_bytes = hx_rd_u32(blob + HXB_DATA_BYTES);
    block = hx_rd_u32(blob + HXB_BLOCK);
    in_id = hx_rd_u32(blob + HXB_INPUT_TENSOR);
    out_id = hx_rd_u32(blob + HXB_OUTPUT_TENSOR);
    state_bytes = hx_rd_u32(blob + HXB_STATE_BYTES);
    scratch_bytes = hx_rd_u32(blob + HXB_SCRATCH_BYTES);

    if (n_tensors == 0u || n_tensors > HX_MAX_TENSORS || n_ops == 0u || n_ops > HX_MAX_OPS) {
        return HX_E_MALFORMED;
    }
    if (t_table < HX_BLOB_HEADER_BYTES || t_table > body || n_tensors * HX_BLOB_TENSOR_BYTES > body - t_table) {
        return HX_E_MALFORMED;
    }
    if (o_table < HX_BLOB_HEADER_BYTES || o_table > body || n_ops * HX_BLOB_OP_BYTES > body - o_table) {
        return HX_E_MALFORMED;
    }
    if (data_off > body || data_bytes > body - data_off) {
        return HX_E_MALFORMED;
    }
    if (state_bytes > HX_MAX_REGION || scratch_bytes > HX_MAX_REGION || block == 0u || block > HX_MAX_DIM) {
        return HX_E_MALFORMED;
    }
    act_bits = hx_rd_u32(blob + HXB_ACT_BITS);
    if (act_bits != (uint32_t)HX_ACT_S8 && act_bits != (uint32_t)HX_ACT_S16) {
        return HX_E_UNSUPPORTED;
    }

    for (i = 0; i < (uint32_t)n_tensors; ++i) {
        st = hx_read_tensor(blob, (uint32_t)t_table, i, state_bytes, scratch_bytes, &tin);
        if (st != HX_OK) {
            return st;
        }
    }
    if (in_id >= n_tensors || out_id >= n_tensors) {
        return HX_E_MALFORMED;
    }
    (void)hx_read_tensor(blob, (uint32_t)t_table, in_id, state_bytes, scratch_bytes, &tin);
    (void)hx_read_tensor(blob, (uint32_t)t_table, out_id, state_bytes, scratch_bytes, &tout);
    if (tin.bytes != (uint64_t)block * hx_elem_bytes(blob) || tout.bytes != (uint64_t)block * hx_elem_bytes(blob) ||
        tin.region != HX_REGION_SCRATCH ||
        tout.region != HX_REGION_SCRATCH) {
        return HX_E_MALFORMED;
    }

    for (i = 0; i < (uint32_t)n_ops; ++i) {
        st = hx_check_op(blob, blob + o_table + (size_t)i * HX_BLOB_OP_BYTES, (uint32_t)n_tensors, (uint32_t)t_table,
                         state_bytes, scratch_bytes, data_off, data_off + data_bytes, &param_bytes);
        if (st != HX_OK) {
            return st;
        }
    }
    st = hx_check_dataflow(blob, (uint32_t)t_table, (uint32_t)o_table, (uint32_t)n_ops, &tin, &tout, state_bytes,
                           scratch_bytes);
    if (st != HX_OK) {
        return st;
    }

    layout->state_bytes = (size_t)state_bytes;
    layout->scratch_bytes = (size_t)scratch_bytes;
    /* Every term is bounded (regions <= 1 GiB, ops <= 4096, per-op tables <= 2^41), but on a
     * 32-bit target the sum can still exceed size_t: check before narrowing. */
    total = HX_ARENA_ALIGN + hx_align_up(state_bytes, HX_ARENA_ALIGN) + hx_align_up(scratch_bytes, HX_ARENA_ALIGN) +
            hx_align_up(param_bytes, HX_ARENA_ALIGN) + n_ops * HX_OP_SLOT_BYTES;
    if (total > (uint64_t)(size_t)-1) {
        return HX_E_UNSUPPORTED;
    }
    layout->param_bytes = (size_t)param_bytes;
    layout->act_bits = act_bits;
    layout->op_bytes = (size_t)(n_ops * HX_OP_SLOT_BYTES);
    layout->total = (size_t)total;
    return HX_OK;
}
