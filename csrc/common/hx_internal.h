/*
 * hx_internal.h - decoded op descriptors and blob layout shared by the executor and the
 * blob validator (internal to csrc/; not installed).
 *
 * Blob layout (all integers little-endian; offsets are from the start of the blob):
 *   header   HX_BLOB_HEADER_BYTES: magic "HXKB", u32 fields at the HXB_* offsets below
 *   tensors  n_tensors x HX_BLOB_TENSOR_BYTES: region, offset, frames, channels, zero_point, scale(f32), 2 x reserved
 *   ops      n_ops x HX_BLOB_OP_BYTES: 32 x u32/i32 words, HXO_* below
 *   data     weights (int8), per-channel int32 arrays (16x8 CONV: an int64 bias array first), PRELU
 *            alphas; each item 4-byte aligned
 *   crc32    u32 CRC-32 (IEEE, zlib's) of every byte before it
 */
#ifndef HX_INTERNAL_H
#define HX_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "hx/hx_types.h"

#if defined(HX_ARCH_REF) + defined(HX_ARCH_NEON) + defined(HX_ARCH_X86) != 1
#error "define exactly one of HX_ARCH_REF, HX_ARCH_NEON, HX_ARCH_X86 (build with HX_ARCH=ref|neon|x86)"
#endif

/* Header fields (byte offsets). */
#define HXB_MAGIC 0
#define HXB_VERSION 4
#define HXB_HEADER_BYTES 8
#define HXB_BLOB_BYTES 12
#define HXB_N_TENSORS 16
#define HXB_N_OPS 20
#define HXB_TENSOR_TABLE 24
#define HXB_OP_TABLE 28
#define HXB_DATA_OFFSET 32
#define HXB_DATA_BYTES 36
#define HXB_BLOCK 40
#define HXB_INPUT_TENSOR 44
#define HXB_OUTPUT_TENSOR 48
#define HXB_STATE_BYTES 52
#define HXB_SCRATCH_BYTES 56
#define HXB_ACT_BITS 60 /* hx_act_bits: 8 (int8 model) or 16 (16x8 model) */

/* Tensor record fields (byte offsets). */
#define HXT_REGION 0   /* HX_REGION_* */
#define HXT_OFFSET 4   /* byte offset inside its region */
#define HXT_FRAMES 8
#define HXT_CHANNELS 12
#define HXT_ZERO_POINT 16
#define HXT_SCALE 20

#define HX_REGION_SCRATCH 0u
#define HX_REGION_STATE 1u

/* Op record words (index of a 32-bit word). */
#define HXO_TYPE 0
#define HXO_N_IN 1
#define HXO_IN0 2      /* HXO_IN0 .. HXO_IN0 + HX_MAX_OP_INPUTS - 1; unused = 0xffffffff */
#define HXO_OUT 6
#define HXO_DATA_OFFSET 7
#define HXO_DATA_BYTES 8
#define HXO_P0 9       /* op parameters from here, see hx_blob.c */
#define HXO_WORDS 32

/* Sanity limits: far above any hearing-aid model, low enough that no product overflows 64 bits. */
#define HX_MAX_TENSORS 65536u
/* 4096 ops bound the dataflow check (O(ops^2), hx_blob.c) to milliseconds for any blob; the
 * exported SEANet step graphs have under a hundred. */
#define HX_MAX_OPS 4096u
#define HX_MAX_DIM 16777216u      /* frames, channels, kernel, stride, dilation */
#define HX_MAX_REGION 0x40000000u /* 1 GiB per arena region */

/* One decoded op, stored in an HX_OP_SLOT_BYTES slot of the arena. */
typedef struct hx_op {
    uint32_t type;                        /* hx_op_type */
    uint32_t n_in;                        /* inputs used, 1..HX_MAX_OP_INPUTS */
    const int8_t *in[HX_MAX_OP_INPUTS];   /* input tensors (arena) */
    uint32_t in_bytes[HX_MAX_OP_INPUTS];  /* their sizes (CONCAT) */
    int8_t *out;                          /* output tensor (arena) */
    const int8_t *weights;                /* CONV weights / PRELU alpha (blob) */
    const int32_t *bias;                  /* CONV folded bias (arena) */
    const int32_t *mult;                  /* CONV per-channel multipliers (arena) */
    const int32_t *shift;                 /* CONV per-channel exponents (arena) */
    const int32_t *table1;                /* ADD: operand-1 rescaling table, 256 int32 (arena) */
    const int32_t *table2;                /* ADD: operand-2 rescaling table, 256 int32 (arena) */
    const int8_t *luts;                   /* PRELU: n x 256 output tables (arena) */
    const uint8_t *lut_index;             /* PRELU: table of each channel (arena) */
    const int64_t *bias64;                /* 16x8 CONV: bias (arena, 8-aligned) */
    union {
        hx_conv_params conv;
        hx_prelu_params prelu;
        hx_add_params add;
        hx_conv_s16_params conv16;
        hx_leaky_relu_s16_params leaky16;
        hx_add_s16_params add16;
        struct {
            uint32_t offset;              /* COPY: source byte offset */
            uint32_t bytes;               /* COPY: bytes copied */
        } copy;
    } p;
} hx_op;

typedef char hx_check_op_slot[sizeof(hx_op) <= HX_OP_SLOT_BYTES ? 1 : -1];

/* Little-endian readers (no alignment requirement). */
static inline uint32_t hx_rd_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline int32_t hx_rd_i32(const uint8_t *p) {
    const uint32_t u = hx_rd_u32(p);
    return u <= 0x7fffffffu ? (int32_t)u : (int32_t)(u - 0x80000000u) - 0x7fffffff - 1;
}

static inline uint64_t hx_rd_u64(const uint8_t *p) {
    return (uint64_t)hx_rd_u32(p) | ((uint64_t)hx_rd_u32(p + 4) << 32);
}

static inline int64_t hx_rd_i64(const uint8_t *p) {
    const uint64_t u = hx_rd_u64(p);
    return u <= 0x7fffffffffffffffull ? (int64_t)u : (int64_t)(u - 0x8000000000000000ull) - 0x7fffffffffffffffll - 1;
}

/* Sizes the arena layout is made of, from a validated blob. */
typedef struct hx_layout {
    size_t state_bytes;   /* header state_bytes */
    size_t scratch_bytes; /* header scratch_bytes */
    size_t param_bytes;   /* set-up tables: CONV 12 x C_out, ADD 2048, PRELU align4(C) + 256 x distinct alphas;
                             16x8: CONV 16 x C_out, nothing else */
    uint32_t act_bits;    /* HX_ACT_S8 or HX_ACT_S16 */
    size_t op_bytes;      /* n_ops x HX_OP_SLOT_BYTES */
    size_t total;         /* arena bytes: slack + aligned regions */
} hx_layout;

/* Arena bytes of the set-up tables of one op (see hx_layout.param_bytes). */
#define HX_ADD_TABLE_BYTES 2048u
/* 16x8 CONV: int64 bias + int32 reduced multiplier + int32 shift per output channel (a multiple of 8, so
 * every op's int64 bias stays 8-aligned in the arena). */
#define HX_CONV16_PARAM_BYTES 16u
/* Largest |bias| of a 16x8 CONV: with |sum x*w| <= 2^38 the int64 requantisation stays exact. */
#define HX_BIAS64_LIMIT ((int64_t)1 << 46)

/* Full validation of a blob; fills *layout on HX_OK (hx_blob.c). */
hx_status hx_blob_validate(const uint8_t *blob, size_t blob_len, hx_layout *layout);

/* CRC-32 (IEEE 802.3, reflected, as zlib.crc32). */
uint32_t hx_crc32(const uint8_t *data, size_t len);

#endif /* HX_INTERNAL_H */
