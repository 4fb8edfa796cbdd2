/*
 * hx.h - the public API of the hx streaming kernel (C99), int8 and 16x8 models.
 *
 * A model is a blob written by toolchain/export/ckernel/ (tflite_to_blob): the op schedule,
 * tensor placement and weights of an int8 or 16x8 (int16 activations, int8 weights) TFLite step
 * graph y, state' = f(x, state). The kernel computes exactly what the LiteRT interpreter's built-in
 * kernels compute for that graph (see hx_rounding). int8 models stream with hx_model_process,
 * 16x8 models with hx_model_process_s16 (hx_model_act_bits tells which).
 *
 * Memory: the caller owns everything. Ask hx_model_state_size for the arena size, hand an arena
 * of at least that many bytes (any alignment) to hx_model_init, keep the blob and the arena alive
 * while the model is used. No function allocates, uses libm or does I/O; none keeps global state,
 * so models are independent (one model must not be used from two threads at once).
 *
 *   size_t need;  hx_model m;
 *   hx_model_state_size(blob, blob_len, &need);            // validates the blob
 *   hx_model_init(&m, blob, blob_len, arena, need);        // state reset to "silence"
 *   hx_model_process(&m, in_q, out_q, n);                  // n a multiple of hx_model_block(&m)
 *
 * The HX_CDEF_BEGIN/END section is the cffi cdef of the host build: declarations only.
 */
#ifndef HX_H
#define HX_H

#include "hx_types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* HX_CDEF_BEGIN */

/* ---- model ------------------------------------------------------------------------------ */

/* Validate a blob (magic, version, lengths, checksum, every size, offset and id, and that every op reads
 * only state or scratch bytes written earlier in the same step) and report the
 * arena bytes hx_model_init needs in *arena_bytes (state + activations + decoded ops + slack).
 * Returns HX_OK, or the first problem found (*arena_bytes is then 0). */
hx_status hx_model_state_size(const uint8_t *blob, size_t blob_len, size_t *arena_bytes);

/* Set up *model over blob and arena. The blob is validated as by hx_model_state_size; arena_len must
 * be at least that size. Before: model is any memory, arena any contents. After HX_OK: the arena holds
 * the decoded schedule and a reset state, model->live == HX_MODEL_LIVE. On error model->live is 0 and
 * the arena contents are unspecified. */
hx_status hx_model_init(hx_model *model, const uint8_t *blob, size_t blob_len, void *arena, size_t arena_len);

/* Stream n samples: n / block steps, each reading block samples of in_q and writing block samples
 * of out_q, carrying the state in the arena from step to step (and from call to call).
 * in_q: n int8 samples in the input quantisation (hx_model_input_quant); not modified.
 * out_q: n int8 samples written, output quantisation; may not overlap in_q unless equal to it.
 * n == 0 is a no-op. Returns HX_E_BAD_LENGTH (nothing processed) if n % block != 0. */
hx_status hx_model_process(hx_model *model, const int8_t *in_q, int8_t *out_q, size_t n);

/* hx_model_process for a 16x8 model: int16 samples in and out (any alignment), same contract.
 * HX_E_TYPE (nothing processed) on an int8 model, as hx_model_process is on a 16x8 one. */
hx_status hx_model_process_s16(hx_model *model, const int16_t *in_q, int16_t *out_q, size_t n);

/* HX_ACT_S8 or HX_ACT_S16: the model's sample type. 0 if the model is not initialised. */
uint32_t hx_model_act_bits(const hx_model *model);

/* Reset the state to silence: every state element set to its tensor's zero point (a real 0.0). */
hx_status hx_model_reset(hx_model *model);

/* Samples per step. 0 if the model is not initialised. */
uint32_t hx_model_block(const hx_model *model);

/* Quantisation of the input / output samples. HX_E_NOT_INITIALIZED leaves *q untouched. */
hx_status hx_model_input_quant(const hx_model *model, hx_quant *q);
hx_status hx_model_output_quant(const hx_model *model, hx_quant *q);

/* Bytes of a state snapshot (0 if the model is not initialised). */
size_t hx_model_state_bytes(const hx_model *model);

/* Copy the state into buf (len must equal hx_model_state_bytes) / restore it from buf. The bytes are
 * the int8 / int16 (native byte order) state tensors at their arena offsets (padding bytes are zero);
 * a snapshot is only meaningful for the same blob on the same byte order. */
hx_status hx_model_get_state(const hx_model *model, uint8_t *buf, size_t len);
hx_status hx_model_set_state(hx_model *model, const uint8_t *buf, size_t len);

/* "ref", "neon" or "x86": the kernel set this library was built with (HX_ARCH). */
const char *hx_arch(void);

/* Human-readable name of a status code ("HX_OK", "HX_E_CHECKSUM", ...). */
const char *hx_status_str(hx_status status);

/* ---- kernels (one per file in csrc/ref and csrc/opt/<arch>) ------------------------------ */
/* Kernels trust their parameters (hx_model_init validates them); buffers follow hx_types.h layout. */

/* Fold the input zero point into the bias: bias_eff[o] = bias[o] - input_zp * sum_{k,i} w[o,k,i]
 * (bias may be NULL for zeros). Returns HX_E_UNSUPPORTED if a folded bias or the accumulator bound
 * leaves the range where int32 accumulation is exact (|bias_eff| < 2^30, K*C_in <= 65536). */
hx_status hx_conv_fold_bias(const hx_conv_params *params, const int8_t *weights, const int32_t *bias,
                            int32_t *bias_eff);

/* 1-D VALID convolution. in: in_frames x in_channels; weights: out_channels x kernel x in_channels;
 * bias_eff/multiplier/shift: out_channels int32 each (shift in [-31, 30]); out: out_frames x
 * out_channels, must not overlap in. */
void hx_conv_s8(const hx_conv_params *params, const int8_t *in, const int8_t *weights, const int32_t *bias_eff,
                const int32_t *multiplier, const int32_t *shift, int8_t *out);

/* PRELU computed arithmetically (the reference; hx_model_init uses it to build the tables below).
 * in/out: frames x channels (out may equal in); alpha: alpha_count bytes. */
void hx_prelu_s8(const hx_prelu_params *params, const int8_t *in, const int8_t *alpha, int8_t *out);

/* Lookup tables equivalent to hx_prelu_s8: one 256-byte table per distinct alpha value (indexed by the
 * input byte as uint8), table_index[c] = the table of channel c (params->channels bytes).
 * tables must hold hx_prelu_table_count(params, alpha) * 256 bytes. Returns the table count. */
uint32_t hx_prelu_table_count(const hx_prelu_params *params, const int8_t *alpha);
uint32_t hx_prelu_make_tables(const hx_prelu_params *params, const int8_t *alpha, int8_t *tables,
                              uint8_t *table_index);

/* Per-channel table lookup: out[f, c] = tables[table_index[c] * 256 + (uint8_t)in[f, c]]
 * (out may equal in). */
void hx_lut_s8(uint32_t frames, uint32_t channels, const int8_t *tables, const uint8_t *table_index,
               const int8_t *in, int8_t *out);

/* The per-operand halves of ADD, one int32 per input byte q (index (uint8_t)q): the scaled operand of
 * the chunked elements for HX_ADD_VECTOR16 (srdhm((q - zp) << (left_shift + shift), m)), of every element
 * for HX_ADD_REFERENCE (rdbpot(srdhm((q - zp) << left_shift, m), -shift)). 256 int32 each. */
void hx_add_make_tables(const hx_add_params *params, int32_t *table1, int32_t *table2);

/* ADD of two equally shaped tensors with the tables of hx_add_make_tables (out may equal in1 or in2):
 * out = clamp(rdbpot(srdhm(table1[in1] + table2[in2], multiplier_out), -shift_out) + output_zp), with
 * LiteRT's int16 narrowing on the chunked elements in HX_ADD_VECTOR16 mode. */
void hx_add_s8(const hx_add_params *params, const int32_t *table1, const int32_t *table2, const int8_t *in1,
               const int8_t *in2, int8_t *out);

/* Concatenate n_inputs byte ranges (inputs[i], bytes[i]) into out, in order (time axis). */
void hx_concat_s8(const int8_t *const *inputs, const uint32_t *bytes, uint32_t n_inputs, int8_t *out);

/* Copy bytes bytes starting at in + offset into out (a slice along time). */
void hx_slice_s8(const int8_t *in, uint32_t offset, uint32_t bytes, int8_t *out);

/* ---- 16x8 kernels (int16 activations, int8 weights; csrc/ref/hx_*_s16.c and csrc/opt/<arch>) ---- */

/* TFLite's reduced multipliers of the int64 requantisation: rm[o] = m[o] < 0x7FFF0000 ? (m[o] + 2^15) >> 16
 * : 0x7FFF. Returns HX_E_UNSUPPORTED (rm untouched from the first bad channel) unless every m[o] >= 0,
 * shift[o] in [-31, 7] and |bias[o]| <= 2^46 (bias may be NULL), the range in which hx_conv_s16 is exact. */
hx_status hx_conv_s16_reduce(const hx_conv_s16_params *params, const int64_t *bias, const int32_t *multiplier,
                             const int32_t *shift, int32_t *reduced);

/* 16x8 1-D VALID convolution. in: in_frames x in_channels int16; weights: out_channels x kernel x in_channels
 * int8; bias: out_channels int64; reduced/shift: out_channels int32 (hx_conv_s16_reduce); out: out_frames x
 * out_channels int16, must not overlap in. */
void hx_conv_s16(const hx_conv_s16_params *params, const int16_t *in, const int8_t *weights, const int64_t *bias,
                 const int32_t *reduced, const int32_t *shift, int16_t *out);

/* int16 LEAKY_RELU (out may equal in). */
void hx_leaky_relu_s16(const hx_leaky_relu_s16_params *params, const int16_t *in, int16_t *out);

/* int16 ADD of two equally shaped tensors (out may equal in1 or in2). */
void hx_add_s16(const hx_add_s16_params *params, const int16_t *in1, const int16_t *in2, int16_t *out);

/* Concatenate n_inputs int16 ranges (inputs[i], counts[i] elements) into out, in order (time axis). */
void hx_concat_s16(const int16_t *const *inputs, const uint32_t *counts, uint32_t n_inputs, int16_t *out);

/* Copy count int16 elements starting at in + offset into out (a slice along time). */
void hx_slice_s16(const int16_t *in, uint32_t offset, uint32_t count, int16_t *out);

/* HX_CDEF_END */

#ifdef __cplusplus
}
#endif

#endif /* HX_H */
