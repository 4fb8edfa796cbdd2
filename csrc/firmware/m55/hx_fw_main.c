/*
 * hx_fw_main.c - the hx Cortex-M55 firmware: stream int8 audio through a linked-in model blob.
 *
 * The model is the bundle's kernel/model_blob.h (toolchain export --target cortex-m55), compiled
 * into flash as a const array: there is no file system on the device. The arena is a static
 * array of the size the export computed (HX_MODEL_BLOB_ARENA_BYTES), checked against
 * hx_model_state_size at start-up. Audio comes and goes through semihosting files, the
 * emulator's stand-in for the codec's DMA buffers:
 *
 *   qemu-system-arm -M mps3-an547 -nographic -semihosting-config enable=on,target=native,\
 *       arg=hx_fw,arg=IN.raw,arg=OUT.raw -kernel hx_fw.elf
 *
 * IN holds int8 samples in the model's input quantisation; OUT gets the int8 output, block by
 * block with the state carried, exactly as the host's hx_stream writes it. On the console:
 * "key value" lines (arch, block, arena_bytes, state_bytes, blocks, stack_used_bytes) and
 * "status HX_OK". Exit: 0 ok, 2 usage, 3 I/O error, 4 the kernel returned an error status.
 */
#include <stdint.h>

#include "hx/hx.h"
#include "semihost.h"

#ifndef HX_FW_BLOB_HEADER
#error "build with -DHX_FW_BLOB_HEADER='\"path/to/kernel/model_blob.h\"' (make -C csrc cortex-m55 HX_BLOB_H=...)"
#endif
#include HX_FW_BLOB_HEADER

/* Blocks per semihosting read/write: I/O buffers of HX_FW_CHUNK_BLOCKS * block bytes each. */
#define HX_FW_CHUNK_BLOCKS 64u
/* Largest block the I/O buffers take (samples). */
#define HX_FW_MAX_BLOCK 64u

uint32_t hx_fw_stack_used(void);

static uint8_t arena[HX_MODEL_BLOB_ARENA_BYTES] __attribute__((aligned(16)));
static int8_t in_buf[HX_FW_CHUNK_BLOCKS * HX_FW_MAX_BLOCK];
static int8_t out_buf[HX_FW_CHUNK_BLOCKS * HX_FW_MAX_BLOCK];
static char cmdline[512];

/* The n-th space-separated word of the command line (0: the program name), NUL-terminated in place. */
static const char *word(char *line, int n) {
    char *p = line;
    int i;
    for (i = 0;; ++i) {
        char *start;
        while (*p == ' ') {
            ++p;
        }
        if (*p == '\0') {
            return 0;
        }
        start = p;
        while (*p != ' ' && *p != '\0') {
            ++p;
        }
        if (i == n) {
            *p = '\0';
            return start;
        }
    }
}

static int fail(const char *what, hx_status st) {
    sh_puts("hx_fw: ");
    sh_puts(what);
    sh_puts(": ");
    sh_puts(hx_status_str(st));
    sh_puts("\n");
    return 4;
}

int main(void) {
    hx_model model;
    size_t need = 0;
    hx_status st;
    uint32_t block, chunk, blocks = 0;
    int32_t fin, fout;
    const char *in_path, *out_path;
    char line2[sizeof(cmdline)];
    uint32_t i;

    if (sh_cmdline(cmdline, sizeof(cmdline)) != 0) {
        sh_puts("hx_fw: no command line (semihosting arg=hx_fw,arg=IN.raw,arg=OUT.raw)\n");
        return 2;
    }
    for (i = 0; i < sizeof(cmdline); ++i) {
        line2[i] = cmdline[i];
    }
    in_path = word(cmdline, 1);
    out_path = word(line2, 2);
    if (in_path == 0 || out_path == 0) {
        sh_puts("hx_fw: usage: hx_fw IN.raw OUT.raw\n");
        return 2;
    }
    st = hx_model_state_size(hx_model_blob, HX_MODEL_BLOB_LEN, &need);
    if (st != HX_OK) {
        return fail("blob", st);
    }
    if (need > sizeof(arena)) {
        sh_puts("hx_fw: the blob needs a larger arena than the header declared\n");
        return 4;
    }
    st = hx_model_init(&model, hx_model_blob, HX_MODEL_BLOB_LEN, arena, sizeof(arena));
    if (st != HX_OK) {
        return fail("init", st);
    }
    block = hx_model_block(&model);
    if (block == 0u || block > HX_FW_MAX_BLOCK) {
        sh_puts("hx_fw: model block larger than the firmware's I/O buffers\n");
        return 4;
    }
    chunk = HX_FW_CHUNK_BLOCKS * block;
    fin = sh_open(in_path, 1u);  /* "rb" */
    fout = sh_open(out_path, 5u); /* "wb" */
    if (fin < 0 || fout < 0) {
        sh_puts("hx_fw: cannot open the input or the output file\n");
        return 3;
    }
    for (;;) {
        int32_t got = sh_read(fin, in_buf, chunk);
        uint32_t n;
        if (got < 0) {
            sh_puts("hx_fw: read error\n");
            return 3;
        }
        n = (uint32_t)got / block * block;
        if (n == 0u) {
            break;
        }
        st = hx_model_process(&model, in_buf, out_buf, n);
        if (st != HX_OK) {
            return fail("process", st);
        }
        if (sh_write(fout, out_buf, n) != 0) {
            sh_puts("hx_fw: write error\n");
            return 3;
        }
        blocks += n / block;
        if ((uint32_t)got < chunk) {
            break;
        }
    }
    if (sh_close(fin) != 0 || sh_close(fout) != 0) {
        sh_puts("hx_fw: close error\n");
        return 3;
    }
    sh_puts("arch ");
    sh_puts(hx_arch());
    sh_puts("\n");
    sh_put_kv("block", block);
    sh_put_kv("arena_bytes", (uint32_t)need);
    sh_put_kv("state_bytes", (uint32_t)hx_model_state_bytes(&model));
    sh_put_kv("blocks", blocks);
    sh_put_kv("stack_used_bytes", hx_fw_stack_used());
    sh_puts("status HX_OK\n");
    return 0;
}
