/*
 * semihost.h - Arm semihosting calls for a bare-metal M-profile firmware (bkpt 0xab).
 *
 * The debugger or emulator (qemu-system-arm -semihosting-config enable=on,target=native) traps
 * the breakpoint and performs the call on the host: files, console, command line, exit. This is
 * the firmware's only I/O; the kernel itself does none. Operation numbers and argument blocks
 * follow Arm's "Semihosting for AArch32 and AArch64" specification (version 2.0).
 */
#ifndef HX_SEMIHOST_H
#define HX_SEMIHOST_H

#include <stddef.h>
#include <stdint.h>

/* Open a host file; mode is an fopen()-style index (0 = "r", 1 = "rb", 5 = "wb"). -1 on error. */
int32_t sh_open(const char *path, uint32_t mode);
/* Close a handle from sh_open. 0 on success. */
int32_t sh_close(int32_t fd);
/* Read up to len bytes; returns the bytes read (0 at end of file), or -1. */
int32_t sh_read(int32_t fd, void *buf, uint32_t len);
/* Write len bytes; returns 0 when all were written, else -1. */
int32_t sh_write(int32_t fd, const void *buf, uint32_t len);
/* Write a NUL-terminated string to the host console. */
void sh_puts(const char *s);
/* The command line (qemu: the arg= values of -semihosting-config, joined by spaces) into buf. */
int32_t sh_cmdline(char *buf, uint32_t len);
/* End the program with an exit status for the host (SYS_EXIT_EXTENDED). Never returns. */
void sh_exit(int32_t status) __attribute__((noreturn));

/* Console helpers: an unsigned decimal, a "key value" line. */
void sh_put_u32(uint32_t v);
void sh_put_kv(const char *key, uint32_t value);

#endif /* HX_SEMIHOST_H */
