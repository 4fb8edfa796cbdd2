/*
 * hx_fuzz_blob.c - libFuzzer harness for blob parsing and model set-up (hx_model_state_size,
 * hx_model_init), then a short stream through whatever model the blob turned out to be.
 *
 * Input: one flags byte, then the blob.
 *   bit 0  recompute the CRC-32 trailer over the blob's declared length before parsing, so
 *          mutations get past the checksum and reach the structural checks behind it
 *   bit 1  set the header's blob_bytes field to the input length first (same reason)
 *   bits 2..4  misalign the arena by that many bytes (hx_model_init must align it itself)
 *
 * Properties checked (a violation calls __builtin_trap, which libFuzzer reports as a crash):
 *   - a refused blob reports arena size 0, and hx_model_init refuses it with the same status;
 *   - an accepted blob is refused with HX_E_ARENA_TOO_SMALL in an arena one byte short, and set
 *     up in an arena of exactly the reported size (allocated exactly, so ASan sees any overrun);
 *   - processing: a length that is not a multiple of the block is refused without touching the
 *     output; hx_model_reset makes the model repeat its output for the same input; a state
 *     snapshot restores exactly.
 * Memory errors and undefined behaviour are caught by ASan + UBSan (-fno-sanitize-recover).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hx/hx.h"
#include "hx_internal.h"

/* Models bigger than this are validated but not set up: the fuzzer's memory is bounded, and a
 * blob that asks for a gigabyte arena is already exercised by the size checks. */
#define FUZZ_MAX_ARENA (8u << 20)
/* Samples streamed through an accepted model, at most (bounds the time per input). */
#define FUZZ_MAX_SAMPLES 4096u

#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void wr_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void fix_crc(uint8_t *blob, size_t n) {
    uint64_t total;
    if (n < (size_t)HX_BLOB_HEADER_BYTES + 4u) {
        return;
    }
    total = hx_rd_u32(blob + HXB_BLOB_BYTES);
    if (total < (uint64_t)HX_BLOB_HEADER_BYTES + 4u || total > n) {
        total = n;
    }
    wr_u32(blob + total - 4u, hx_crc32(blob, (size_t)total - 4u));
}

/* n samples of the model's type (int8 or int16) from in to out; buffers are malloc'd (aligned) and
 * offsets whole samples. */
static hx_status process(hx_model *m, const uint8_t *in, uint8_t *out, size_t n) {
    if (hx_model_act_bits(m) == (uint32_t)HX_ACT_S16) {
        return hx_model_process_s16(m, (const int16_t *)(const void *)in, (int16_t *)(void *)out, n);
    }
    return hx_model_process(m, (const int8_t *)in, (int8_t *)out, n);
}

static void stream_checks(hx_model *m, const uint8_t *data, size_t size) {
    const uint32_t block = hx_model_block(m);
    const size_t e = hx_model_act_bits(m) == (uint32_t)HX_ACT_S16 ? 2u : 1u;
    size_t n, i, sb;
    uint8_t *in, *out1, *out2;
    uint8_t *snap;
    CHECK(block > 0u);
    n = (FUZZ_MAX_SAMPLES / block) * block;
    if (n == 0u) {
        n = block;
    }
    if (n > 4u * (size_t)block) {
        n = 4u * (size_t)block;
    }
    in = (uint8_t *)malloc((n + 1u) * e);
    out1 = (uint8_t *)malloc((n + 1u) * e);
    out2 = (uint8_t *)malloc((n + 1u) * e);
    sb = hx_model_state_bytes(m);
    snap = (uint8_t *)malloc(sb ? sb : 1u);
    if (in == NULL || out1 == NULL || out2 == NULL || snap == NULL) {
        free(in), free(out1), free(out2), free(snap);
        return;
    }
    for (i = 0; i < (n + 1u) * e; ++i) {
        in[i] = data[i % size];
    }
    /* A bad length is refused and the output is left alone; so is the other sample type's call. */
    memset(out1, 0x5a, (n + 1u) * e);
    CHECK(process(m, in, out1, n + 1u) == HX_E_BAD_LENGTH);
    CHECK((e == 2u ? hx_model_process(m, (const int8_t *)in, (int8_t *)out1, n)
                   : hx_model_process_s16(m, (const int16_t *)(const void *)in, (int16_t *)(void *)out1, n)) == HX_E_TYPE);
    for (i = 0; i < (n + 1u) * e; ++i) {
        CHECK(out1[i] == 0x5au);
    }
    /* Reset repeats: the same input from a reset state gives the same output. */
    CHECK(process(m, in, out1, n) == HX_OK);
    CHECK(hx_model_reset(m) == HX_OK);
    CHECK(process(m, in, out2, n) == HX_OK);
    CHECK(memcmp(out1, out2, n * e) == 0);
    /* A snapshot restores exactly: process, rewind, process again. */
    CHECK(hx_model_get_state(m, snap, sb) == HX_OK);
    CHECK(process(m, in + e, out1, block) == HX_OK);
    CHECK(hx_model_set_state(m, snap, sb) == HX_OK);
    CHECK(process(m, in + e, out2, block) == HX_OK);
    CHECK(memcmp(out1, out2, block * e) == 0);
    free(in);
    free(out1);
    free(out2);
    free(snap);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t flags;
    uint8_t *blob, *alloc;
    size_t n, need = 0, skew;
    hx_status st, st2;
    hx_model m;

    if (size < 1u) {
        return 0;
    }
    flags = data[0];
    n = size - 1u;
    /* An exactly sized copy, so a read past the blob's end is an ASan report. */
    blob = (uint8_t *)malloc(n ? n : 1u);
    if (blob == NULL) {
        return 0;
    }
    if (n) {
        memcpy(blob, data + 1, n);
    }
    if ((flags & 2u) && n >= (size_t)HXB_BLOB_BYTES + 4u) {
        wr_u32(blob + HXB_BLOB_BYTES, (uint32_t)n);
    }
    if (flags & 1u) {
        fix_crc(blob, n);
    }

    st = hx_model_state_size(blob, n, &need);
    if (st != HX_OK) {
        uint8_t small[64];
        CHECK(need == 0u);
        st2 = hx_model_init(&m, blob, n, small, sizeof(small));
        CHECK(st2 == st);
        CHECK(m.live == 0u);
        CHECK(hx_model_block(&m) == 0u);
        free(blob);
        return 0;
    }
    CHECK(need > 0u);
    if (need > FUZZ_MAX_ARENA) {
        free(blob);
        return 0;
    }
    skew = (flags >> 2) & 7u;
    /* One byte short: refused, whatever the alignment. */
    alloc = (uint8_t *)malloc(skew + need - 1u + 1u);
    if (alloc != NULL) {
        CHECK(hx_model_init(&m, blob, n, alloc + skew, need - 1u) == HX_E_ARENA_TOO_SMALL);
        free(alloc);
    }
    alloc = (uint8_t *)malloc(skew + need);
    if (alloc == NULL) {
        free(blob);
        return 0;
    }
    st = hx_model_init(&m, blob, n, alloc + skew, need);
    if (st == HX_OK) {
        CHECK(m.live == HX_MODEL_LIVE);
        stream_checks(&m, data, size);
    } else {
        /* Validation passed, so set-up may only refuse what it computes itself (folded biases). */
        CHECK(st == HX_E_UNSUPPORTED);
        CHECK(m.live == 0u);
    }
    free(alloc);
    free(blob);
    return 0;
}
