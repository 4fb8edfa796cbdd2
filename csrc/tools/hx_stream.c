/*
 * hx_stream - run an hx kernel blob over raw int8 audio (the on-device streaming driver).
 *
 *   hx_stream [-t] MODEL.hxb IN.raw OUT.raw   stream IN (int8 samples, or little-endian int16 ones for a
 *                                             16x8 model, in the model's input
 *                                             quantisation) through the model into OUT, block by
 *                                             block with state; -t times every block (one
 *                                             hx_model_process call each) and prints mean, min,
 *                                             p50, p99 and max in microseconds on stderr
 *   hx_stream --check BLOB...                 validate each blob, print "<status> <file>" per line
 *   hx_stream --info MODEL.hxb                print block, arena and state sizes, quantisation
 *
 * Trailing samples that do not fill a block are dropped (reported on stderr). The tool itself
 * uses malloc and stdio; the kernel calls (hx_*) do not.
 * Exit: 0 ok, 2 usage, 3 I/O error, 4 the kernel returned an error status.
 */
#define _POSIX_C_SOURCE 199309L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hx/hx.h"

#define HX_CHUNK_BLOCKS 64u

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : (x > y ? 1 : 0);
}

static uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    size_t cap = 0, n = 0;
    if (f == NULL) {
        return NULL;
    }
    for (;;) {
        size_t got;
        if (n == cap) {
            uint8_t *nb;
            cap = cap ? cap * 2u : 65536u;
            nb = (uint8_t *)realloc(buf, cap);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            break;
        }
    }
    if (ferror(f)) {
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    {
        /* Exactly sized, so a sanitizer sees any read past the file's end. */
        uint8_t *exact = (uint8_t *)realloc(buf, n ? n : 1u);
        if (exact == NULL) {
            free(buf);
            return NULL;
        }
        buf = exact;
    }
    *len = n;
    return buf;
}

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int check_blobs(int n, char **paths) {
    int i, bad = 0;
    for (i = 0; i < n; ++i) {
        size_t len = 0, arena = 0;
        uint8_t *blob = read_file(paths[i], &len);
        hx_status st;
        if (blob == NULL) {
            printf("IO_ERROR %s\n", paths[i]);
            bad = 1;
            continue;
        }
        st = hx_model_state_size(blob, len, &arena);
        if (st == HX_OK) {
            /* Also run init (and one step of silence) over an exactly sized arena. */
            void *mem = malloc(arena ? arena : 1u);
            hx_model m;
            st = mem ? hx_model_init(&m, blob, len, mem, arena) : HX_E_NULL;
            if (st == HX_OK) {
                const uint32_t block = hx_model_block(&m);
                int16_t *io = (int16_t *)calloc(block, sizeof(int16_t));
                if (io == NULL) {
                    st = HX_E_NULL;
                } else if (hx_model_act_bits(&m) == (uint32_t)HX_ACT_S16) {
                    st = hx_model_process_s16(&m, io, io, block);
                } else {
                    st = hx_model_process(&m, (int8_t *)(void *)io, (int8_t *)(void *)io, block);
                }
                free(io);
            }
            free(mem);
        }
        printf("%s %s\n", hx_status_str(st), paths[i]);
        free(blob);
    }
    return bad ? 3 : 0;
}

int main(int argc, char **argv) {
    int timing = 0, argi = 1, rc = 0;
    size_t blob_len = 0, in_len = 0, arena_len = 0, pos, n_blocks;
    uint8_t *blob, *in;
    void *arena;
    int8_t *out;
    hx_model model;
    hx_status st;
    hx_quant qi, qo;
    uint32_t block, elem;
    FILE *fo;
    double t_min = 1e30, t_max = 0.0, t_sum = 0.0, *times = NULL;

    if (argc >= 2 && strcmp(argv[1], "--check") == 0) {
        return check_blobs(argc - 2, argv + 2);
    }
    if (argc == 3 && strcmp(argv[1], "--info") == 0) {
        blob = read_file(argv[2], &blob_len);
        if (blob == NULL) {
            fprintf(stderr, "hx_stream: cannot read %s\n", argv[2]);
            return 3;
        }
        st = hx_model_state_size(blob, blob_len, &arena_len);
        arena = st == HX_OK ? malloc(arena_len) : NULL;
        if (st == HX_OK) {
            st = arena ? hx_model_init(&model, blob, blob_len, arena, arena_len) : HX_E_NULL;
        }
        if (st != HX_OK) {
            fprintf(stderr, "hx_stream: %s: %s\n", argv[2], hx_status_str(st));
            return 4;
        }
        hx_model_input_quant(&model, &qi);
        hx_model_output_quant(&model, &qo);
        printf("arch %s\nact_bits %u\nblock %u\narena_bytes %lu\nstate_bytes %lu\ninput %.9g %d\noutput %.9g %d\n",
               hx_arch(), (unsigned)hx_model_act_bits(&model), (unsigned)hx_model_block(&model), (unsigned long)arena_len,
               (unsigned long)hx_model_state_bytes(&model), (double)qi.scale, (int)qi.zero_point,
               (double)qo.scale, (int)qo.zero_point);
        free(arena);
        free(blob);
        return 0;
    }
    if (argc > argi && strcmp(argv[argi], "-t") == 0) {
        timing = 1;
        ++argi;
    }
    if (argc - argi != 3) {
        fprintf(stderr, "usage: hx_stream [-t] MODEL.hxb IN.raw OUT.raw | --check BLOB... | --info MODEL.hxb\n");
        return 2;
    }
    blob = read_file(argv[argi], &blob_len);
    in = read_file(argv[argi + 1], &in_len);
    if (blob == NULL || in == NULL) {
        fprintf(stderr, "hx_stream: cannot read %s\n", blob == NULL ? argv[argi] : argv[argi + 1]);
        return 3;
    }
    st = hx_model_state_size(blob, blob_len, &arena_len);
    if (st != HX_OK) {
        fprintf(stderr, "hx_stream: %s: %s\n", argv[argi], hx_status_str(st));
        return 4;
    }
    arena = malloc(arena_len);
    if (arena == NULL) {
        return 3;
    }
    st = hx_model_init(&model, blob, blob_len, arena, arena_len);
    if (st != HX_OK) {
        fprintf(stderr, "hx_stream: init: %s\n", hx_status_str(st));
        return 4;
    }
    block = hx_model_block(&model);
    elem = hx_model_act_bits(&model) == (uint32_t)HX_ACT_S16 ? 2u : 1u;
    n_blocks = in_len / (block * elem);
    if (in_len % (block * elem)) {
        fprintf(stderr, "hx_stream: dropping %lu trailing bytes (block %u x %u bytes)\n",
                (unsigned long)(in_len % (block * elem)), (unsigned)block, (unsigned)elem);
    }
    out = (int8_t *)malloc(n_blocks * block * elem + 2u);
    times = timing ? (double *)malloc((n_blocks + 1u) * sizeof(double)) : NULL;
    fo = fopen(argv[argi + 2], "wb");
    if (out == NULL || fo == NULL || (timing && times == NULL)) {
        fprintf(stderr, "hx_stream: cannot write %s\n", argv[argi + 2]);
        return 3;
    }
    for (pos = 0; pos < n_blocks; pos += timing ? 1u : HX_CHUNK_BLOCKS) {
        const size_t nb = timing ? 1u : (n_blocks - pos < HX_CHUNK_BLOCKS ? n_blocks - pos : HX_CHUNK_BLOCKS);
        const double t0 = timing ? now_us() : 0.0;
        /* in (realloc) and out (malloc) are suitably aligned for int16, and every offset is even. */
        st = elem == 2u ? hx_model_process_s16(&model, (const int16_t *)(const void *)(in + pos * block * 2u),
                                               (int16_t *)(void *)(out + pos * block * 2u), nb * block)
                        : hx_model_process(&model, (const int8_t *)in + pos * block, out + pos * block, nb * block);
        if (timing) {
            const double dt = now_us() - t0;
            times[pos] = dt;
            t_sum += dt;
            t_min = dt < t_min ? dt : t_min;
            t_max = dt > t_max ? dt : t_max;
        }
        if (st != HX_OK) {
            fprintf(stderr, "hx_stream: process: %s\n", hx_status_str(st));
            rc = 4;
            break;
        }
    }
    if (rc == 0 && fwrite(out, 1, n_blocks * block * elem, fo) != n_blocks * block * elem) {
        rc = 3;
    }
    if (fclose(fo) != 0) {
        rc = 3;
    }
    if (timing && n_blocks > 0u) {
        qsort(times, n_blocks, sizeof(double), cmp_double);
        fprintf(stderr, "blocks %lu mean_us %.3f min_us %.3f p50_us %.3f p99_us %.3f max_us %.3f arch %s\n",
                (unsigned long)n_blocks, t_sum / (double)n_blocks, t_min, times[n_blocks / 2u],
                times[(size_t)((double)(n_blocks - 1u) * 0.99)], t_max, hx_arch());
    }
    free(times);
    free(out);
    free(arena);
    free(in);
    free(blob);
    return rc;
}
