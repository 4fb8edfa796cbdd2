/*
 * hx_model.c - model set-up over a validated blob, and the graph executor shared by the ref
 * and opt kernel sets (they differ only in the hx_*_s8 / hx_*_s16 functions linked in). A model is
 * int8 or 16x8 as a whole (the blob header's act_bits): its ops run the _s8 or the _s16 kernels.
 *
 * Arena layout (each region HX_ARENA_ALIGN-aligned, base aligned up from the caller's pointer):
 *   state | scratch (activations of one step) | params (set-up tables: CONV bias_eff/multiplier/shift,
 *   ADD operand tables, PRELU lookup tables) | op slots
 */
#include <string.h>

#include "hx/hx.h"
#include "hx_internal.h"

#if defined(HX_ARCH_NEON)
static const char hx_arch_name[] = "neon";
#elif defined(HX_ARCH_X86)
static const char hx_arch_name[] = "x86";
#else
static const char hx_arch_name[] = "ref";
#endif

const char *hx_arch(void) {
    return hx_arch_name;
}

const char *hx_status_str(hx_status status) {
    switch (status) {
    case HX_OK: return "HX_OK";
    case HX_E_NULL: return "HX_E_NULL";
    case HX_E_TRUNCATED: return "HX_E_TRUNCATED";
    case HX_E_MAGIC: return "HX_E_MAGIC";
    case HX_E_VERSION: return "HX_E_VERSION";
    case HX_E_CHECKSUM: return "HX_E_CHECKSUM";
    case HX_E_MALFORMED: return "HX_E_MALFORMED";
    case HX_E_UNSUPPORTED: return "HX_E_UNSUPPORTED";
    case HX_E_ARENA_TOO_SMALL: return "HX_E_ARENA_TOO_SMALL";
    case HX_E_NOT_INITIALIZED: return "HX_E_NOT_INITIALIZED";
    case HX_E_BAD_LENGTH: return "HX_E_BAD_LENGTH";
    case HX_E_TYPE: return "HX_E_TYPE";
    default: return "HX_E_UNKNOWN";
    }
}

static size_t hx_align(size_t v) {
    return (v + (HX_ARENA_ALIGN - 1u)) & ~(size_t)(HX_ARENA_ALIGN - 1u);
}

hx_status hx_model_state_size(const uint8_t *blob, size_t blob_len, size_t *arena_bytes) {
    hx_layout layout;
    hx_status st;
    if (arena_bytes == NULL) {
        return HX_E_NULL;
    }
    *arena_bytes = 0;
    st = hx_blob_validate(blob, blob_len, &layout);
    if (st == HX_OK) {
        *arena_bytes = layout.total;
    }
    return st;
}

static int hx_live(const hx_model *model) {
    return model != NULL && model->live == HX_MODEL_LIVE;
}

/* Tensor id's record in the blob's tensor table. */
static const uint8_t *hx_tensor_record(const hx_model *m, uint32_t id) {
    return m->blob + hx_rd_u32(m->blob + HXB_TENSOR_TABLE) + (size_t)id * HX_BLOB_TENSOR_BYTES;
}

static uint8_t *hx_tensor_ptr(const hx_model *m, uint32_t id) {
    const uint8_t *r = hx_tensor_record(m, id);
    uint8_t *base = hx_rd_u32(r + HXT_REGION) == HX_REGION_STATE ? m->state : m->scratch;
    return base + hx_rd_u32(r + HXT_OFFSET);
}

static void hx_tensor_dims(const hx_model *m, uint32_t id, uint32_t *frames, uint32_t *channels) {
    const uint8_t *r = hx_tensor_record(m, id);
    *frames = hx_rd_u32(r + HXT_FRAMES);
    *channels = hx_rd_u32(r + HXT_CHANNELS);
}

static hx_quant hx_tensor_quant(const hx_model *m, uint32_t id) {
    const uint8_t *r = hx_tensor_record(m, id);
    hx_quant q;
    const uint32_t bits = hx_rd_u32(r + HXT_SCALE);
    memcpy(&q.scale, &bits, sizeof(q.scale));
    q.zero_point = hx_rd_i32(r + HXT_ZERO_POINT);
    return q;
}

typedef char hx_check_float[sizeof(float) == 4 ? 1 : -1];

/* Decode a 16x8 op (op's tensors already set); its set-up tables go to *params (stays 8-aligned). */
static hx_status hx_decode_op_s16(hx_model *m, const int32_t *w, hx_op *op, const uint8_t *data, uint8_t **params) {
    switch (op->type) {
    case HX_OP_CONV: {
        hx_conv_s16_params *p = &op->p.conv16;
        size_t wbytes, o;
        const uint8_t *arr;
        int64_t *bias = (int64_t *)(void *)*params;
        int32_t *rm, *shift;
        hx_tensor_dims(m, (uint32_t)w[HXO_IN0], &p->in_frames, &p->in_channels);
        hx_tensor_dims(m, (uint32_t)w[HXO_OUT], &p->out_frames, &p->out_channels);
        p->kernel = (uint32_t)w[HXO_P0];
        p->stride = (uint32_t)w[HXO_P0 + 1];
        p->dilation = (uint32_t)w[HXO_P0 + 2];
        p->act_min = w[HXO_P0 + 5];
        p->act_max = w[HXO_P0 + 6];
        wbytes = (size_t)p->out_channels * p->kernel * p->in_channels;
        op->weights = (const int8_t *)data;
        arr = data + ((wbytes + 3u) & ~(size_t)3u);
        rm = (int32_t *)(void *)(bias + p->out_channels);
        shift = rm + p->out_channels;
        for (o = 0; o < p->out_channels; ++o) {
            bias[o] = hx_rd_i64(arr + 8u * o);
            rm[o] = hx_rd_i32(arr + 8u * p->out_channels + 4u * o);
            shift[o] = hx_rd_i32(arr + 12u * p->out_channels + 4u * o);
        }
        /* rm[] holds the raw multipliers until hx_conv_s16_reduce replaces them in place. */
        if (hx_conv_s16_reduce(p, bias, rm, shift, rm) != HX_OK) {
            return HX_E_UNSUPPORTED;
        }
        op->bias64 = bias;
        op->mult = rm;
        op->shift = shift;
        *params = (uint8_t *)(shift + p->out_channels);
        break;
    }
    case HX_OP_LEAKY_RELU: {
        hx_leaky_relu_s16_params *p = &op->p.leaky16;
        p->count = op->in_bytes[0] / 2u;
        p->multiplier_identity = w[HXO_P0 + 2];
        p->shift_identity = w[HXO_P0 + 3];
        p->multiplier_alpha = w[HXO_P0 + 4];
        p->shift_alpha = w[HXO_P0 + 5];
        break;
    }
    case HX_OP_ADD: {
        hx_add_s16_params *p = &op->p.add16;
        p->count = op->in_bytes[0] / 2u;
        p->left_shift = w[HXO_P0 + 3];
        p->multiplier1 = w[HXO_P0 + 4];
        p->shift1 = w[HXO_P0 + 5];
        p->multiplier2 = w[HXO_P0 + 6];
        p->shift2 = w[HXO_P0 + 7];
        p->multiplier_out = w[HXO_P0 + 8];
        p->shift_out = w[HXO_P0 + 9];
        p->act_min = w[HXO_P0 + 10];
        p->act_max = w[HXO_P0 + 11];
        p->mode = (uint32_t)w[HXO_P0 + 12];
        break;
    }
    default:
        return HX_E_UNSUPPORTED;
    }
    return HX_OK;
}

/* Decode op record i into *op; its set-up tables go to *params (advanced, stays 4-aligned). */
static hx_status hx_decode_op(hx_model *m, const uint8_t *rec, hx_op *op, uint8_t **params) {
    int32_t w[HXO_WORDS];
    uint32_t i, f, c;
    const uint8_t *data;
    const uint32_t elem = m->act_bits == (uint32_t)HX_ACT_S16 ? 2u : 1u;
    for (i = 0; i < HXO_WORDS; ++i) {
        w[i] = hx_rd_i32(rec + 4u * i);
    }
    memset(op, 0, sizeof(*op));
    op->type = (uint32_t)w[HXO_TYPE];
    op->n_in = (uint32_t)w[HXO_N_IN];
    for (i = 0; i < op->n_in; ++i) {
        op->in[i] = (const int8_t *)hx_tensor_ptr(m, (uint32_t)w[HXO_IN0 + i]);
        hx_tensor_dims(m, (uint32_t)w[HXO_IN0 + i], &f, &c);
        op->in_bytes[i] = f * c * elem;
    }
    op->out = (int8_t *)hx_tensor_ptr(m, (uint32_t)w[HXO_OUT]);
    data = m->blob + (uint32_t)w[HXO_DATA_OFFSET];
    /* Concatenation and copies carry no parameters of their sample type (offsets are in bytes). */
    switch (op->type) {
    case HX_OP_CONCAT:
        return HX_OK;
    case HX_OP_COPY:
        op->p.copy.offset = (uint32_t)w[HXO_P0];
        op->p.copy.bytes = (uint32_t)w[HXO_P0 + 1];
        return HX_OK;
    default:
        break;
    }
    if (elem == 2u) {
        return hx_decode_op_s16(m, w, op, data, params);
    }

    switch (op->type) {
    case HX_OP_CONV: {
        hx_conv_params *p = &op->p.conv;
        size_t wbytes, o;
        const uint8_t *arr;
        hx_tensor_dims(m, (uint32_t)w[HXO_IN0], &p->in_frames, &p->in_channels);
        hx_tensor_dims(m, (uint32_t)w[HXO_OUT], &p->out_frames, &p->out_channels);
        p->kernel = (uint32_t)w[HXO_P0];
        p->stride = (uint32_t)w[HXO_P0 + 1];
        p->dilation = (uint32_t)w[HXO_P0 + 2];
        p->input_zp = w[HXO_P0 + 3];
        p->output_zp = w[HXO_P0 + 4];
        p->act_min = w[HXO_P0 + 5];
        p->act_max = w[HXO_P0 + 6];
        p->rounding = (uint32_t)w[HXO_P0 + 7];
        wbytes = (size_t)p->out_channels * p->kernel * p->in_channels;
        op->weights = (const int8_t *)data;
        arr = data + ((wbytes + 3u) & ~(size_t)3u);
        {
            int32_t *bias = (int32_t *)(void *)*params, *mult = bias + p->out_channels, *shift = mult + p->out_channels;
            for (o = 0; o < p->out_channels; ++o) {
                bias[o] = hx_rd_i32(arr + 4u * o);
                mult[o] = hx_rd_i32(arr + 4u * (p->out_channels + o));
                shift[o] = hx_rd_i32(arr + 4u * (2u * p->out_channels + o));
            }
            if (hx_conv_fold_bias(p, op->weights, bias, bias) != HX_OK) {
                return HX_E_UNSUPPORTED;
            }
            op->bias = bias;
            op->mult = mult;
            op->shift = shift;
            *params = (uint8_t *)(shift + p->out_channels);
        }
        break;
    }
    case HX_OP_PRELU: {
        hx_prelu_params *p = &op->p.prelu;
        hx_tensor_dims(m, (uint32_t)w[HXO_IN0], &p->frames, &p->channels);
        p->input_zp = w[HXO_P0];
        p->alpha_zp = w[HXO_P0 + 1];
        p->output_zp = w[HXO_P0 + 2];
        p->multiplier_pos = w[HXO_P0 + 3];
        p->shift_pos = w[HXO_P0 + 4];
        p->multiplier_neg = w[HXO_P0 + 5];
        p->shift_neg = w[HXO_P0 + 6];
        p->alpha_count = (uint32_t)w[HXO_P0 + 7];
        op->weights = (const int8_t *)data;
        {
            uint8_t *index = *params;
            int8_t *tables = (int8_t *)(index + ((p->channels + 3u) & ~3u));
            const uint32_t n = hx_prelu_make_tables(p, op->weights, tables, index);
            op->lut_index = index;
            op->luts = tables;
            *params = (uint8_t *)tables + (size_t)n * 256u;
        }
        break;
    }
    case HX_OP_ADD: {
        hx_add_params *p = &op->p.add;
        p->count = op->in_bytes[0];
        p->input1_zp = w[HXO_P0];
        p->input2_zp = w[HXO_P0 + 1];
        p->output_zp = w[HXO_P0 + 2];
        p->left_shift = w[HXO_P0 + 3];
        p->multiplier1 = w[HXO_P0 + 4];
        p->shift1 = w[HXO_P0 + 5];
        p->multiplier2 = w[HXO_P0 + 6];
        p->shift2 = w[HXO_P0 + 7];
        p->multiplier_out = w[HXO_P0 + 8];
        p->shift_out = w[HXO_P0 + 9];
        p->act_min = w[HXO_P0 + 10];
        p->act_max = w[HXO_P0 + 11];
        p->mode = (uint32_t)w[HXO_P0 + 12];
        {
            int32_t *t1 = (int32_t *)(void *)*params, *t2 = t1 + 256;
            hx_add_make_tables(p, t1, t2);
            op->table1 = t1;
            op->table2 = t2;
            *params = (uint8_t *)(t2 + 256);
        }
        break;
    }
    default:
        return HX_E_UNSUPPORTED;
    }
    return HX_OK;
}

static void hx_reset_state(hx_model *m) {
    uint32_t i;
    memset(m->state, 0, m->state_bytes);
    if (m->act_bits == (uint32_t)HX_ACT_S16) {
        return; /* int16 tensors have zero point 0: all-zero bytes are silence */
    }
    for (i = 0; i < m->n_tensors; ++i) {
        const uint8_t *r = hx_tensor_record(m, i);
        if (hx_rd_u32(r + HXT_REGION) == HX_REGION_STATE) {
            const size_t bytes = (size_t)hx_rd_u32(r + HXT_FRAMES) * hx_rd_u32(r + HXT_CHANNELS);
            const int32_t zp = hx_rd_i32(r + HXT_ZERO_POINT);
            memset(m->state + hx_rd_u32(r + HXT_OFFSET), (int)(uint8_t)(int8_t)zp, bytes);
        }
    }
}

hx_status hx_model_init(hx_model *model, const uint8_t *blob, size_t blob_len, void *arena, size_t arena_len) {
    hx_layout layout;
    hx_status st;
    uint8_t *base;
    size_t skew;
    uint8_t *params;
    hx_op *ops;
    uint32_t i, n_ops, in_id, out_id;

    if (model == NULL) {
        return HX_E_NULL;
    }
    memset(model, 0, sizeof(*model));
    if (blob == NULL || arena == NULL) {
        return HX_E_NULL;
    }
    st = hx_blob_validate(blob, blob_len, &layout);
    if (st != HX_OK) {
        return st;
    }
    if (arena_len < layout.total) {
        return HX_E_ARENA_TOO_SMALL;
    }
    skew = (size_t)(-(uintptr_t)arena & (uintptr_t)(HX_ARENA_ALIGN - 1u));
    base = (uint8_t *)arena + skew;

    model->blob = blob;
    model->blob_len = blob_len;
    model->arena = (uint8_t *)arena;
    model->arena_len = arena_len;
    model->block = hx_rd_u32(blob + HXB_BLOCK);
    n_ops = hx_rd_u32(blob + HXB_N_OPS);
    model->n_ops = n_ops;
    model->n_tensors = hx_rd_u32(blob + HXB_N_TENSORS);
    model->act_bits = layout.act_bits;
    model->state = base;
    model->state_bytes = layout.state_bytes;
    model->scratch = model->state + hx_align(layout.state_bytes);
    model->scratch_bytes = layout.scratch_bytes;
    params = model->scratch + hx_align(layout.scratch_bytes);
    ops = (hx_op *)(void *)(params + hx_align(layout.param_bytes));
    model->ops = ops;
    memset(model->scratch, 0, layout.scratch_bytes);

    for (i = 0; i < n_ops; ++i) {
        hx_op *slot = (hx_op *)(void *)((uint8_t *)ops + (size_t)i * HX_OP_SLOT_BYTES);
        st = hx_decode_op(model, blob + hx_rd_u32(blob + HXB_OP_TABLE) + (size_t)i * HX_BLOB_OP_BYTES, slot, &params);
        if (st != HX_OK) {
            memset(model, 0, sizeof(*model));
            return st;
        }
    }
    in_id = hx_rd_u32(blob + HXB_INPUT_TENSOR);
    out_id = hx_rd_u32(blob + HXB_OUTPUT_TENSOR);
    model->input = (int8_t *)hx_tensor_ptr(model, in_id);
    model->output = (const int8_t *)hx_tensor_ptr(model, out_id);
    model->input_quant = hx_tensor_quant(model, in_id);
    model->output_quant = hx_tensor_quant(model, out_id);
    hx_reset_state(model);
    model->live = HX_MODEL_LIVE;
    return HX_OK;
}

/* Run one op of a 16x8 model: tensors are int16, sizes in bytes halve to element counts. The arena
 * regions are 16-aligned and the validator keeps every int16 tensor at an even offset. */
static void hx_run_op_s16(const hx_op *op) {
    const int16_t *in0 = (const int16_t *)(const void *)op->in[0];
    int16_t *out = (int16_t *)(void *)op->out;
    switch (op->type) {
    case HX_OP_CONV:
        hx_conv_s16(&op->p.conv16, in0, op->weights, op->bias64, op->mult, op->shift, out);
        break;
    case HX_OP_LEAKY_RELU:
        hx_leaky_relu_s16(&op->p.leaky16, in0, out);
        break;
    case HX_OP_ADD:
        hx_add_s16(&op->p.add16, in0, (const int16_t *)(const void *)op->in[1], out);
        break;
    case HX_OP_CONCAT: {
        const int16_t *ins[HX_MAX_OP_INPUTS];
        uint32_t counts[HX_MAX_OP_INPUTS], i;
        for (i = 0; i < op->n_in; ++i) {
            ins[i] = (const int16_t *)(const void *)op->in[i];
            counts[i] = op->in_bytes[i] / 2u;
        }
        hx_concat_s16(ins, counts, op->n_in, out);
        break;
    }
    case HX_OP_COPY:
        hx_slice_s16(in0, op->p.copy.offset / 2u, op->p.copy.bytes / 2u, out);
        break;
    default:
        break; /* unreachable: rejected by hx_model_init */
    }
}

static void hx_run_op(const hx_op *op) {
    switch (op->type) {
    case HX_OP_CONV:
        hx_conv_s8(&op->p.conv, op->in[0], op->weights, op->bias, op->mult, op->shift, op->out);
        break;
    case HX_OP_PRELU:
        hx_lut_s8(op->p.prelu.frames, op->p.prelu.channels, op->luts, op->lut_index, op->in[0], op->out);
        break;
    case HX_OP_ADD:
        hx_add_s8(&op->p.add, op->table1, op->table2, op->in[0], op->in[1], op->out);
        break;
    case HX_OP_CONCAT:
        hx_concat_s8(op->in, op->in_bytes, op->n_in, op->out);
        break;
    case HX_OP_COPY:
        hx_slice_s8(op->in[0], op->p.copy.offset, op->p.copy.bytes, op->out);
        break;
    default:
        break; /* unreachable: rejected by hx_model_init */
    }
}

/* The streaming loop of both sample types: elem bytes per sample, samples copied with memcpy (so the
 * caller's buffers may have any alignment, and in_q may equal out_q). */
static hx_status hx_process(hx_model *model, const uint8_t *in_q, uint8_t *out_q, size_t n, uint32_t act_bits) {
    size_t pos, block, bytes;
    uint32_t i;
    if (!hx_live(model)) {
        return model == NULL ? HX_E_NULL : HX_E_NOT_INITIALIZED;
    }
    if (model->act_bits != act_bits) {
        return HX_E_TYPE;
    }
    block = model->block;
    if (n % block != 0u) {
        return HX_E_BAD_LENGTH;
    }
    if (n == 0u) {
        return HX_OK;
    }
    if (in_q == NULL || out_q == NULL) {
        return HX_E_NULL;
    }
    bytes = block * (act_bits == (uint32_t)HX_ACT_S16 ? 2u : 1u);
    for (pos = 0; pos < n / block; ++pos) {
        const uint8_t *slots = (const uint8_t *)model->ops;
        memcpy(model->input, in_q + pos * bytes, bytes);
        if (act_bits == (uint32_t)HX_ACT_S16) {
            for (i = 0; i < model->n_ops; ++i) {
                hx_run_op_s16((const hx_op *)(const void *)(slots + (size_t)i * HX_OP_SLOT_BYTES));
            }
        } else {
            for (i = 0; i < model->n_ops; ++i) {
                hx_run_op((const hx_op *)(const void *)(slots + (size_t)i * HX_OP_SLOT_BYTES));
            }
        }
        memcpy(out_q + pos * bytes, model->output, bytes);
    }
    return HX_OK;
}

hx_status hx_model_process(hx_model *model, const int8_t *in_q, int8_t *out_q, size_t n) {
    return hx_process(model, (const uint8_t *)in_q, (uint8_t *)out_q, n, (uint32_t)HX_ACT_S8);
}

hx_status hx_model_process_s16(hx_model *model, const int16_t *in_q, int16_t *out_q, size_t n) {
    return hx_process(model, (const uint8_t *)(const void *)in_q, (uint8_t *)(void *)out_q, n, (uint32_t)HX_ACT_S16);
}

uint32_t hx_model_act_bits(const hx_model *model) {
    return hx_live(model) ? model->act_bits : 0u;
}

hx_status hx_model_reset(hx_model *model) {
    if (!hx_live(model)) {
        return model == NULL ? HX_E_NULL : HX_E_NOT_INITIALIZED;
    }
    hx_reset_state(model);
    return HX_OK;
}

uint32_t hx_model_block(const hx_model *model) {
    return hx_live(model) ? model->block : 0u;
}

hx_status hx_model_input_quant(const hx_model *model, hx_quant *q) {
    if (q == NULL) {
        return HX_E_NULL;
    }
    if (!hx_live(model)) {
        return model == NULL ? HX_E_NULL : HX_E_NOT_INITIALIZED;
    }
    *q = model->input_quant;
    return HX_OK;
}

hx_status hx_model_output_quant(const hx_model *model, hx_quant *q) {
    if (q == NULL) {
        return HX_E_NULL;
    }
    if (!hx_live(model)) {
        return model == NULL ? HX_E_NULL : HX_E_NOT_INITIALIZED;
    }
    *q = model->output_quant;
    return HX_OK;
}

size_t hx_model_state_bytes(const hx_model *model) {
    return hx_live(model) ? model->state_bytes : 0u;
}

/* Checks shared by get/set: HX_OK means copy len bytes (len may be 0: nothing to copy). */
static hx_status hx_state_io_check(const hx_model *model, const void *buf, size_t len) {
    if (!hx_live(model)) {
        return model == NULL ? HX_E_NULL : HX_E_NOT_INITIALIZED;
    }
    if (len != model->state_bytes) {
        return HX_E_BAD_LENGTH;
    }
    if (len != 0u && buf == NULL) {
        return HX_E_NULL;
    }
    return HX_OK;
}

hx_status hx_model_get_state(const hx_model *model, uint8_t *buf, size_t len) {
    const hx_status st = hx_state_io_check(model, buf, len);
    if (st == HX_OK && len != 0u) {
        memcpy(buf, model->state, len);
    }
    return st;
}

hx_status hx_model_set_state(hx_model *model, const uint8_t *buf, size_t len) {
    const hx_status st = hx_state_io_check(model, buf, len);
    if (st == HX_OK && len != 0u) {
        memcpy(model->state, buf, len);
    }
    return st;
}
