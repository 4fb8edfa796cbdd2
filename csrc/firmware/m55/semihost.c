/*
 * semihost.c - the semihosting calls of semihost.h (Arm semihosting v2.0, AArch32 / Thumb).
 *
 * A call puts the operation in r0 and a pointer to its argument block in r1, executes
 * "bkpt 0xab", and finds the result in r0. The memory clobber keeps the compiler from caching
 * the argument blocks or the buffers across the trap.
 */
#include "semihost.h"

enum {
    SYS_OPEN = 0x01,
    SYS_CLOSE = 0x02,
    SYS_WRITE0 = 0x04,
    SYS_WRITE = 0x05,
    SYS_READ = 0x06,
    SYS_GET_CMDLINE = 0x15,
    SYS_EXIT = 0x18,
    SYS_EXIT_EXTENDED = 0x20
};

/* ADP_Stopped_ApplicationExit: the reason code of a normal program exit. */
#define ADP_STOPPED_APPLICATION_EXIT 0x20026u

static int32_t sh_call(uint32_t op, const void *arg) {
    register uint32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return (int32_t)r0;
}

static uint32_t str_len(const char *s) {
    uint32_t n = 0;
    while (s[n] != '\0') {
        ++n;
    }
    return n;
}

int32_t sh_open(const char *path, uint32_t mode) {
    uint32_t args[3];
    args[0] = (uint32_t)(uintptr_t)path;
    args[1] = mode;
    args[2] = str_len(path);
    return sh_call(SYS_OPEN, args);
}

int32_t sh_close(int32_t fd) {
    uint32_t args[1];
    args[0] = (uint32_t)fd;
    return sh_call(SYS_CLOSE, args);
}

int32_t sh_read(int32_t fd, void *buf, uint32_t len) {
    uint32_t args[3];
    int32_t left;
    args[0] = (uint32_t)fd;
    args[1] = (uint32_t)(uintptr_t)buf;
    args[2] = len;
    left = sh_call(SYS_READ, args); /* bytes NOT read */
    return (left < 0 || (uint32_t)left > len) ? -1 : (int32_t)(len - (uint32_t)left);
}

int32_t sh_write(int32_t fd, const void *buf, uint32_t len) {
    uint32_t args[3];
    args[0] = (uint32_t)fd;
    args[1] = (uint32_t)(uintptr_t)buf;
    args[2] = len;
    return sh_call(SYS_WRITE, args) == 0 ? 0 : -1;
}

void sh_puts(const char *s) {
    (void)sh_call(SYS_WRITE0, s);
}

int32_t sh_cmdline(char *buf, uint32_t len) {
    uint32_t args[2];
    args[0] = (uint32_t)(uintptr_t)buf;
    args[1] = len;
    return sh_call(SYS_GET_CMDLINE, args);
}

void sh_exit(int32_t status) {
    uint32_t args[2];
    args[0] = ADP_STOPPED_APPLICATION_EXIT;
    args[1] = (uint32_t)status;
    (void)sh_call(SYS_EXIT_EXTENDED, args);
    /* A host without the extended call: plain exit (status 0 or 1 only). */
    (void)sh_call(SYS_EXIT, (const void *)(uintptr_t)(status == 0 ? ADP_STOPPED_APPLICATION_EXIT : 0x20023u));
    for (;;) {
    }
}

void sh_put_u32(uint32_t v) {
    char buf[11];
    int i = 10;
    buf[10] = '\0';
    do {
        buf[--i] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v != 0u && i > 0);
    sh_puts(buf + i);
}

void sh_put_kv(const char *key, uint32_t value) {
    sh_puts(key);
    sh_puts(" ");
    sh_put_u32(value);
    sh_puts("\n");
}
