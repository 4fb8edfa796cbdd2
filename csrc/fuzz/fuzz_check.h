/* The harnesses' assertion: a violated invariant traps, so libFuzzer records the input as a crash
 * (assert() would vanish under NDEBUG). */
#ifndef HX_FUZZ_CHECK_H
#define HX_FUZZ_CHECK_H

#define CHECK(cond)            \
    do {                       \
        if (!(cond)) {         \
            __builtin_trap();  \
        }                      \
    } while (0)

#endif
