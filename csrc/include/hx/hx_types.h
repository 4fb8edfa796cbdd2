/*
 * hx_types.h - plain data types of the hx streaming kernel (C99): int8 graphs and 16x8 graphs
 * (int16 activations, int8 weights, int64 bias).
 *
 * Everything here is a plain struct or enum: no hidden state, no pointers owned by the
 * library. Tensors are int8 (or int16 in a 16x8 model, native endianness in memory), laid out NWC
 * with the batch and H = 1 dropped, i.e. a tensor of F frames and C channels is F*C elements,
 * frame-major: element (f, c) is at index f*C + c.
 * A quantised value q stands for the real number scale * (q - zero_point).
 *
 * The section between HX_CDEF_BEGIN and HX_CDEF_END is also read, verbatim minus
 * preprocessor lines, as the cffi cdef of the host build (runtime/backends/ckernel_build.py):
 * keep it to plain declarations and integer #defines.
 */
#ifndef HX_TYPES_H
#define HX_TYPES_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* HX_CDEF_BEGIN */

/* Blob format version this library reads (toolchain/export/ckernel/format.py FORMAT_VERSION). */
#define HX_BLOB_FORMAT_VERSION 2
/* Bytes of the fixed blob header. */
#define HX_BLOB_HEADER_BYTES 64
/* Bytes of one tensor record in the blob's tensor table. */
#define HX_BLOB_TENSOR_BYTES 32
/* Bytes of one op record in the blob's op table. */
#define HX_BLOB_OP_BYTES 128
/* Most inputs one op reads (CONCATENATION is the only op with more than 2). */
#define HX_MAX_OP_INPUTS 4
/* Arena bytes reserved per op for its decoded descriptor (see hx_model_state_size). */
#define HX_OP_SLOT_BYTES 192
/* Alignment of the arena regions (the arena pointer itself may have any alignment). */
#define HX_ARENA_ALIGN 16

/* Return codes of every hx_model_* function. Values are stable (part of the ABI). */
typedef enum hx_status {
    HX_OK = 0,                /* success */
    HX_E_NULL = 1,            /* a required pointer argument was NULL */
    HX_E_TRUNCATED = 2,       /* blob shorter than its header, or than the length it declares */
    HX_E_MAGIC = 3,           /* blob does not start with the magic "HXKB" */
    HX_E_VERSION = 4,         /* blob format version is not HX_BLOB_FORMAT_VERSION */
    HX_E_CHECKSUM = 5,        /* CRC-32 over the blob does not match its trailer */
    HX_E_MALFORMED = 6,       /* a size, offset, id or dimension is inconsistent or out of range */
    HX_E_UNSUPPORTED = 7,     /* unknown op type / rounding mode, or values outside the exact int32 range */
    HX_E_ARENA_TOO_SMALL = 8, /* arena_len is less than hx_model_state_size() reported */
    HX_E_NOT_INITIALIZED = 9, /* the hx_model was not set up by a successful hx_model_init */
    HX_E_BAD_LENGTH = 10,     /* n is not a multiple of the block, or a state buffer has the wrong size */
    HX_E_TYPE = 11            /* the call's sample type is not the model's (hx_model_process on a 16x8 model, ...) */
} hx_status;

/* Activation types of a model (the blob header's act_bits word). */
typedef enum hx_act_bits {
    HX_ACT_S8 = 8,   /* int8 activations, inputs, outputs and state (full-integer int8 graph) */
    HX_ACT_S16 = 16  /* int16 activations, inputs, outputs and state, zero point 0 (16x8 graph) */
} hx_act_bits;

/* How an int32 accumulator x is scaled by a fixed-point multiplier (m, e), real = m * 2^(e-31).
 * All three first shift x left by max(e, 0) (wrapping). The LiteRT builds differ in the rounding; the
 * blob records, per CONV op, which one to reproduce. */
typedef enum hx_rounding {
    HX_ROUND_DOUBLE_AWAY = 0, /* gemmlowp SaturatingRoundingDoublingHighMul (round(x*m/2^31), half up) then
                                 RoundingDivideByPOT by -e (half away from zero): TFLite reference kernels,
                                 and PRELU / ADD everywhere */
    HX_ROUND_DOUBLE_UP = 1,   /* ruy x86 AVX2/AVX-512: (x*m + 2^30) >> 31, then a rounding right shift by -e,
                                 both half up (LiteRT CONV_2D on an x86 host) */
    HX_ROUND_SINGLE_UP = 2    /* ruy NEON / reference, TFLITE_SINGLE_ROUNDING: one rounding half up of
                                 x*m*2^(e-31) (LiteRT CONV_2D on an ARM board) */
} hx_rounding;

/* Which arithmetic an int8 ADD reproduces (TFLite has two, both bit-exact targets). */
typedef enum hx_add_mode {
    HX_ADD_VECTOR16 = 0,  /* LiteRT's optimized kernel (NEON on ARM, NEON_2_SSE on x86): elements in whole
                             16-element chunks scale each operand as srdhm((q - zp) << (left_shift + shift), m)
                             (one rounding) and narrow through int16; the tail < 16 elements as the reference */
    HX_ADD_REFERENCE = 1  /* TFLite's reference kernel: every element srdhm((q - zp) << left_shift, m) then a
                             rounding divide by 2^-shift (two roundings) */
} hx_add_mode;

/* Op codes of the blob's op table. */
typedef enum hx_op_type {
    HX_OP_CONV = 1,   /* 1-D VALID convolution (TFLite CONV_2D with H = 1) */
    HX_OP_PRELU = 2,  /* TFLite PRELU, alpha per channel or a single value */
    HX_OP_ADD = 3,    /* TFLite ADD, equal shapes, general rescaling */
    HX_OP_CONCAT = 4, /* TFLite CONCATENATION along time (byte concatenation) */
    HX_OP_COPY = 5,   /* contiguous byte range copy (TFLite STRIDED_SLICE along time) */
    HX_OP_LEAKY_RELU = 6 /* TFLite int16 LEAKY_RELU (16x8 models; int8 ones run it as a PRELU) */
} hx_op_type;

/* Quantisation of one tensor: real = scale * (q - zero_point). */
typedef struct hx_quant {
    float scale;        /* > 0, IEEE single precision, as stored in the .tflite */
    int32_t zero_point; /* in [-128, 127] for int8 tensors; 0 for int16 tensors */
} hx_quant;

/* Parameters of hx_conv_s8: out[t, o] = clamp(requant(bias_eff[o] + sum_{k,i} in[t*stride + k*dilation, i]
 * * w[o, k, i]) + output_zp). The input zero point is folded into bias_eff by hx_conv_fold_bias. */
typedef struct hx_conv_params {
    uint32_t in_frames;    /* W_in >= 1: frames of the input tensor (in_frames * in_channels bytes) */
    uint32_t in_channels;  /* C_in >= 1 */
    uint32_t out_frames;   /* W_out = (W_in - dilation*(kernel-1) - 1) / stride + 1, >= 1 */
    uint32_t out_channels; /* C_out >= 1: also the length of bias_eff, multiplier and shift */
    uint32_t kernel;       /* K >= 1 taps; weights are C_out x K x C_in bytes, tap-major per channel */
    uint32_t stride;       /* >= 1 frames between output frames */
    uint32_t dilation;     /* >= 1 frames between taps */
    int32_t input_zp;      /* zero point of the input, [-128, 127] (used by hx_conv_fold_bias only) */
    int32_t output_zp;     /* zero point added after requantisation, [-128, 127] */
    int32_t act_min;       /* lower clamp of the output, [-128, act_max] (fused activation) */
    int32_t act_max;       /* upper clamp of the output, [act_min, 127] */
    uint32_t rounding;     /* an hx_rounding value */
} hx_conv_params;

/* Parameters of hx_prelu_s8: v = in - input_zp; out = clamp(v >= 0 ? rq(v, pos) : rq(v * (alpha - alpha_zp), neg)
 * + output_zp), requantisation HX_ROUND_DOUBLE_AWAY. */
typedef struct hx_prelu_params {
    uint32_t frames;         /* >= 1 */
    uint32_t channels;       /* >= 1; in and out are frames*channels bytes (may be the same buffer) */
    uint32_t alpha_count;    /* 1 (one slope) or channels (one slope per channel, broadcast over frames) */
    int32_t input_zp;        /* [-128, 127] */
    int32_t alpha_zp;        /* [-128, 127] */
    int32_t output_zp;       /* [-128, 127] */
    int32_t multiplier_pos;  /* [0, 2^31): fixed-point input_scale / output_scale */
    int32_t shift_pos;       /* [-31, 30]: its power-of-two exponent */
    int32_t multiplier_neg;  /* [0, 2^31): fixed-point input_scale * alpha_scale / output_scale */
    int32_t shift_neg;       /* [-31, 30] */
} hx_prelu_params;

/* Parameters of hx_add_s8 (TFLite's 8-bit ADD): each input (q - zp) << left_shift is scaled by its
 * multiplier, the sum scaled by the output multiplier (see hx_add_mode for the exact roundings). */
typedef struct hx_add_params {
    uint32_t count;         /* >= 1 elements in each of in1, in2, out (out may alias in1 or in2) */
    int32_t input1_zp;      /* [-128, 127] */
    int32_t input2_zp;      /* [-128, 127] */
    int32_t output_zp;      /* [-128, 127] */
    int32_t left_shift;     /* [0, 22] (TFLite uses 20 for int8) */
    int32_t multiplier1;    /* [0, 2^31) */
    int32_t shift1;         /* [-31, 0] */
    int32_t multiplier2;    /* [0, 2^31) */
    int32_t shift2;         /* [-31, 0] */
    int32_t multiplier_out; /* [0, 2^31) */
    int32_t shift_out;      /* [-31, 0] */
    int32_t act_min;        /* lower clamp, [-128, act_max] */
    int32_t act_max;        /* upper clamp, [act_min, 127] */
    uint32_t mode;          /* an hx_add_mode value */
} hx_add_params;

/* Parameters of hx_conv_s16 (TFLite reference_integer_ops::ConvPerChannel, int16 x int8, int64 bias):
 * out[t, o] = clamp(rq64(bias[o] + sum_{k,i} in[t*stride + k*dilation, i] * w[o, k, i], rm[o], shift[o]))
 * with rq64(x, rm, s) = (x * rm + 2^(14 - s)) >> (15 - s) wrapped to int32 (one rounding, half up) and
 * rm the reduced multiplier of hx_conv_s16_reduce. Zero points are 0 (TFLite's 16x8 scheme). */
typedef struct hx_conv_s16_params {
    uint32_t in_frames;    /* W_in >= 1 (in_frames * in_channels int16 elements) */
    uint32_t in_channels;  /* C_in >= 1 */
    uint32_t out_frames;   /* W_out = (W_in - dilation*(kernel-1) - 1) / stride + 1, >= 1 */
    uint32_t out_channels; /* C_out >= 1: the length of bias, rm and shift */
    uint32_t kernel;       /* K >= 1 taps; weights are C_out x K x C_in int8, tap-major per channel; K*C_in <= 65536 */
    uint32_t stride;       /* >= 1 */
    uint32_t dilation;     /* >= 1 */
    int32_t act_min;       /* lower clamp, [-32768, act_max] */
    int32_t act_max;       /* upper clamp, [act_min, 32767] */
} hx_conv_s16_params;

/* Parameters of hx_leaky_relu_s16 (TFLite QuantizeLeakyRelu, int16, zero points 0):
 * out = clamp(in >= 0 ? mbqm(in, multiplier_identity, shift_identity) : mbqm(in, multiplier_alpha, shift_alpha)),
 * mbqm the double-rounding MultiplyByQuantizedMultiplier (HX_ROUND_DOUBLE_AWAY). */
typedef struct hx_leaky_relu_s16_params {
    uint32_t count;              /* >= 1 elements in in and out (out may equal in) */
    int32_t multiplier_identity; /* [0, 2^31): fixed-point input_scale / output_scale */
    int32_t shift_identity;      /* [-31, 30] */
    int32_t multiplier_alpha;    /* [0, 2^31): fixed-point input_scale * alpha / output_scale */
    int32_t shift_alpha;         /* [-31, 30] */
} hx_leaky_relu_s16_params;

/* Parameters of hx_add_s16 (TFLite's int16 ADD, general-scale path, zero points 0): each input
 * q << left_shift is scaled by its multiplier, the sum by the output multiplier (double rounding),
 * clamped in int32. HX_ADD_VECTOR16: elements in whole 16-element chunks scale each operand once,
 * srdhm(q << (left_shift + shift), m) (a negative count shifts right, flooring), as LiteRT's
 * AddElementwiseInt16 NEON body; HX_ADD_REFERENCE (and the tail) rdbpot(srdhm(q << left_shift, m), -shift). */
typedef struct hx_add_s16_params {
    uint32_t count;         /* >= 1 elements in each of in1, in2, out (out may alias in1 or in2) */
    int32_t left_shift;     /* [0, 15] (TFLite uses 15 for int16) */
    int32_t multiplier1;    /* [0, 2^31) */
    int32_t shift1;         /* [-31, 0] */
    int32_t multiplier2;    /* [0, 2^31) */
    int32_t shift2;         /* [-31, 0] */
    int32_t multiplier_out; /* [0, 2^31) */
    int32_t shift_out;      /* [-31, 0] */
    int32_t act_min;        /* lower clamp, [-32768, act_max] */
    int32_t act_max;        /* upper clamp, [act_min, 32767] */
    uint32_t mode;          /* an hx_add_mode value */
} hx_add_s16_params;

/* A model set up by hx_model_init. The caller owns this struct, the blob and the arena; every pointer
 * below points into the caller's blob or arena, which must outlive the model. Read it through the
 * accessors in hx.h; the fields are public only so the struct can live on the stack or in static memory. */
typedef struct hx_model {
    uint32_t live;            /* HX_MODEL_LIVE after a successful init; anything else: not usable */
    uint32_t block;           /* samples per step (input and output), >= 1 */
    uint32_t n_ops;           /* ops in the schedule */
    uint32_t n_tensors;       /* tensors in the blob's table */
    const uint8_t *blob;      /* the caller's blob (weights are read from it in place) */
    size_t blob_len;          /* its length in bytes */
    uint8_t *arena;           /* the caller's arena, as passed */
    size_t arena_len;         /* its length in bytes */
    uint8_t *state;           /* persistent state region (aligned, inside the arena) */
    size_t state_bytes;       /* its length: the snapshot size of hx_model_get_state */
    uint8_t *scratch;         /* per-step activation region (aligned, inside the arena) */
    size_t scratch_bytes;     /* its length */
    void *ops;                /* n_ops decoded op descriptors (internal layout, inside the arena) */
    int8_t *input;            /* block samples in scratch where each step's input block is copied */
    const int8_t *output;     /* block samples in scratch holding each step's output block */
    uint32_t act_bits;        /* an hx_act_bits value: the sample type of input, output and state */
    hx_quant input_quant;     /* quantisation of the input samples */
    hx_quant output_quant;    /* quantisation of the output samples */
} hx_model;

/* HX_CDEF_END */

/* Value of hx_model.live once initialised ("HXLV"). */
#define HX_MODEL_LIVE 0x56584c48u

#ifdef __cplusplus
}
#endif

#endif /* HX_TYPES_H */
