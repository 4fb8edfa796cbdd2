/*
 * startup.c - reset and fault handling of the bare-metal Cortex-M55 firmware (Corstone-300 /
 * qemu mps3-an547 memory map; see m55.ld).
 *
 * The vector table sits at 0x0 (ITCM), where the core fetches it at reset; its first word is
 * the initial stack pointer, the top of DTCM (0x20080000). Reset enables the FPU and Helium
 * (CPACR CP10/CP11 full access) before any code that may use an FP or MVE register runs, copies
 * .data from its load image in ITCM, clears .bss, paints the stack for a high-water measure,
 * runs main() and reports its status to the host through semihosting. Any fault prints one line
 * and exits with status 9, so a crash under the emulator ends the run instead of hanging it.
 */
#include <stdint.h>

#include "semihost.h"

/* Linker script symbols (m55.ld). */
extern uint32_t __data_load__, __data_start__, __data_end__, __bss_start__, __bss_end__;
extern uint32_t __stack_limit__, __stack_top__;

int main(void);
void Reset_Handler(void);
void hx_fw_start(void);
uint32_t hx_fw_stack_used(void);

/* The value painted over the unused stack; words still holding it were never written. */
#define STACK_PAINT 0xA5C3A5C3u
/* Bytes below the current stack pointer left unpainted while painting (the painter's own frame). */
#define PAINT_MARGIN 64u

static void fault(const char *what) {
    sh_puts("hx_fw: fault: ");
    sh_puts(what);
    sh_puts("\n");
    sh_exit(9);
}

static void hard_fault(void) { fault("HardFault"); }
static void mem_fault(void) { fault("MemManage"); }
static void bus_fault(void) { fault("BusFault"); }
static void usage_fault(void) { fault("UsageFault"); }
static void secure_fault(void) { fault("SecureFault"); }
static void unexpected(void) { fault("unexpected exception"); }

typedef void (*hx_vector)(void);

/* Armv8-M exception numbers 0..15: initial SP, Reset, NMI, HardFault, MemManage, BusFault,
 * UsageFault, SecureFault, 3 reserved, SVCall, DebugMonitor, reserved, PendSV, SysTick. */
struct hx_vector_table {
    const void *initial_sp;
    hx_vector handlers[15];
};

__attribute__((section(".vectors"), used)) static const struct hx_vector_table vectors = {
    &__stack_top__,
    {Reset_Handler, unexpected, hard_fault, mem_fault, bus_fault, usage_fault, secure_fault, 0, 0, 0, unexpected,
     unexpected, 0, unexpected, unexpected},
};

/* No C before the coprocessors are on: the compiler may use FP or MVE registers anywhere else. */
__attribute__((naked, noreturn)) void Reset_Handler(void) {
    __asm__ volatile(
        "ldr r0, =0xE000ED88\n"      /* CPACR */
        "ldr r1, [r0]\n"
        "orr r1, r1, #(0xF << 20)\n" /* CP10, CP11: full access (FPU and MVE) */
        "str r1, [r0]\n"
        "dsb\n"
        "isb\n"
        "b hx_fw_start\n");
}

void hx_fw_start(void) {
    uint32_t *src = &__data_load__, *dst = &__data_start__, *p;
    uint32_t *const sp_now = (uint32_t *)__builtin_frame_address(0);
    while (dst < &__data_end__) {
        *dst++ = *src++;
    }
    for (dst = &__bss_start__; dst < &__bss_end__; ++dst) {
        *dst = 0u;
    }
    for (p = &__stack_limit__; p < sp_now - PAINT_MARGIN / 4u; ++p) {
        *p = STACK_PAINT;
    }
    sh_exit(main());
}

uint32_t hx_fw_stack_used(void) {
    const uint32_t *p = &__stack_limit__;
    while (p < &__stack_top__ && *p == STACK_PAINT) {
        ++p;
    }
    return (uint32_t)((uintptr_t)&__stack_top__ - (uintptr_t)p);
}
