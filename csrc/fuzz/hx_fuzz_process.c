/*
 * hx_fuzz_process.c - libFuzzer harness for hx_model_process and the state calls on a real model.
 *
 * The model is the blob named by $HX_FUZZ_BLOB (read once, in LLVMFuzzerInitialize). Each input is
 * a program of commands run on two independent instances of that model (separate arenas, both
 * exactly sized), which must stay identical throughout:
 *
 *   op % 6 == 0  process k = 1 + (next % 4) blocks of the following bytes (zero padded)
 *             1  reset
 *             2  set the state to the next state_bytes bytes (any bytes: a corrupted snapshot
 *                must still be safe to run)
 *             3  snapshot, process one block, restore, process it again: same output
 *             4  process a length that is not a multiple of the block: refused, output untouched
 *             5  process one block in place (in_q == out_q, which the API allows)
 *
 * Two instances catch hidden shared state and reads of uninitialised arena memory (their arenas
 * are filled with different bytes before hx_model_init, so such a read would make the outputs
 * differ); ASan + UBSan catch memory errors and undefined behaviour (signed overflow, shifts) in
 * the kernels for any int8 (or, with a 16x8 blob, int16) input and state.
 *
 * Both models are set up once, and each input starts from a byte copy of the arenas as
 * hx_model_init left them (same addresses, so the model structs stay valid): exactly a fresh
 * set-up, at a fraction of its cost under the fuzzer's instrumentation (set-up is fuzzed by
 * hx_fuzz_blob), and every input is reproducible on its own.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hx/hx.h"

#include "fuzz_check.h"

#define MAX_BLOCKS 4u

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    hx_model m;
    uint8_t *arena;
    uint8_t *pristine; /* the arena right after hx_model_init */
    uint8_t *out;
} instance;

static uint8_t *g_blob;
static size_t g_blob_len;
static size_t g_arena_len;
static instance g_a, g_b;

static void open_instance(instance *t, uint8_t fill) {
    t->arena = (uint8_t *)malloc(g_arena_len);
    t->pristine = (uint8_t *)malloc(g_arena_len);
    if (t->arena == NULL || t->pristine == NULL) {
        fprintf(stderr, "hx_fuzz_process: out of memory\n");
        exit(2);
    }
    memset(t->arena, fill, g_arena_len); /* different bytes in each: uninitialised reads show */
    if (hx_model_init(&t->m, g_blob, g_blob_len, t->arena, g_arena_len) != HX_OK) {
        fprintf(stderr, "hx_fuzz_process: hx_model_init failed\n");
        exit(2);
    }
    memcpy(t->pristine, t->arena, g_arena_len);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *path = getenv("HX_FUZZ_BLOB");
    FILE *f;
    long len;
    (void)argc;
    (void)argv;
    if (path == NULL) {
        fprintf(stderr, "hx_fuzz_process: set HX_FUZZ_BLOB to a model blob (kernel/model.hxb)\n");
        exit(2);
    }
    f = fopen(path, "rb");
    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) <= 0 || fseek(f, 0, SEEK_SET) != 0) {
        fprintf(stderr, "hx_fuzz_process: cannot read %s\n", path);
        exit(2);
    }
    g_blob_len = (size_t)len;
    g_blob = (uint8_t *)malloc(g_blob_len);
    if (g_blob == NULL || fread(g_blob, 1, g_blob_len, f) != g_blob_len) {
        fprintf(stderr, "hx_fuzz_process: cannot read %s\n", path);
        exit(2);
    }
    fclose(f);
    if (hx_model_state_size(g_blob, g_blob_len, &g_arena_len) != HX_OK) {
        fprintf(stderr, "hx_fuzz_process: %s is not a valid blob\n", path);
        exit(2);
    }
    open_instance(&g_a, 0x00);
    open_instance(&g_b, 0xa5);
    return 0;
}

/* n samples of the model's type from in to out (malloc'd buffers; offsets are whole samples). */
static hx_status process(hx_model *m, const uint8_t *in, uint8_t *out, size_t n) {
    if (hx_model_act_bits(m) == (uint32_t)HX_ACT_S16) {
        return hx_model_process_s16(m, (const int16_t *)(const void *)in, (int16_t *)(void *)out, n);
    }
    return hx_model_process(m, (const int8_t *)in, (int8_t *)out, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    instance a = g_a, b = g_b;
    size_t pos = 0, block, sb, cap, i, e;
    uint8_t *in;
    uint8_t *snap_a, *snap_b;

    /* A fresh set-up: the arenas as hx_model_init left them. */
    memcpy(a.arena, a.pristine, g_arena_len);
    memcpy(b.arena, b.pristine, g_arena_len);
    in = NULL;
    snap_a = snap_b = NULL;
    block = hx_model_block(&a.m);
    CHECK(block > 0u && block == hx_model_block(&b.m));
    e = hx_model_act_bits(&a.m) == (uint32_t)HX_ACT_S16 ? 2u : 1u;
    cap = (MAX_BLOCKS * block + 1u) * e;
    a.out = (uint8_t *)malloc(cap);
    b.out = (uint8_t *)malloc(cap);
    in = (uint8_t *)malloc(cap);
    sb = hx_model_state_bytes(&a.m);
    snap_a = (uint8_t *)malloc(sb ? sb : 1u);
    snap_b = (uint8_t *)malloc(sb ? sb : 1u);
    if (a.out == NULL || b.out == NULL || in == NULL || snap_a == NULL || snap_b == NULL) {
        goto done;
    }

    while (pos < size) {
        const uint8_t op = (uint8_t)(data[pos++] % 6u);
        size_t k = 1, n;
        if (op == 0u || op == 4u) {
            k = 1u + (pos < size ? data[pos++] % MAX_BLOCKS : 0u);
        }
        n = k * block;
        memset(in, 0, cap);
        for (i = 0; i < (n + 1u) * e && pos < size; ++i) {
            in[i] = data[pos++];
        }
        switch (op) {
        case 0:
            CHECK(process(&a.m, in, a.out, n) == HX_OK);
            CHECK(process(&b.m, in, b.out, n) == HX_OK);
            CHECK(memcmp(a.out, b.out, n * e) == 0);
            break;
        case 1:
            CHECK(hx_model_reset(&a.m) == HX_OK);
            CHECK(hx_model_reset(&b.m) == HX_OK);
            break;
        case 2: {
            /* Arbitrary state bytes: the input bytes again, repeated to fill the snapshot. */
            for (i = 0; i < sb; ++i) {
                snap_a[i] = in[i % ((n + 1u) * e)];
            }
            CHECK(hx_model_set_state(&a.m, snap_a, sb) == HX_OK);
            CHECK(hx_model_set_state(&b.m, snap_a, sb) == HX_OK);
            break;
        }
        case 3:
            CHECK(hx_model_get_state(&a.m, snap_a, sb) == HX_OK);
            CHECK(process(&a.m, in, a.out, block) == HX_OK);
            CHECK(hx_model_set_state(&a.m, snap_a, sb) == HX_OK);
            CHECK(process(&a.m, in, b.out, block) == HX_OK);
            CHECK(memcmp(a.out, b.out, block * e) == 0);
            /* b follows the same path so the two stay in step. */
            CHECK(process(&b.m, in, b.out, block) == HX_OK);
            CHECK(hx_model_get_state(&a.m, snap_a, sb) == HX_OK);
            CHECK(hx_model_get_state(&b.m, snap_b, sb) == HX_OK);
            CHECK(memcmp(snap_a, snap_b, sb) == 0);
            break;
        case 4:
            memset(a.out, 0x33, cap);
            CHECK(process(&a.m, in, a.out, n + 1u) == HX_E_BAD_LENGTH);
            for (i = 0; i < cap; ++i) {
                CHECK(a.out[i] == 0x33);
            }
            break;
        default: /* 5: in place */
            memcpy(a.out, in, block * e);
            CHECK(process(&a.m, a.out, a.out, block) == HX_OK);
            CHECK(process(&b.m, in, b.out, block) == HX_OK);
            CHECK(memcmp(a.out, b.out, block * e) == 0);
            break;
        }
    }
    CHECK(hx_model_get_state(&a.m, snap_a, sb) == HX_OK);
    CHECK(hx_model_get_state(&b.m, snap_b, sb) == HX_OK);
    CHECK(memcmp(snap_a, snap_b, sb) == 0);

done:
    free(a.out);
    free(b.out);
    free(in);
    free(snap_a);
    free(snap_b);
    return 0;
}
