/*
 * hx_prelu_s8.c (x86) - PRELU runs only at set-up (it builds the lookup tables the hot path
 * uses), so the x86 set uses the portable kernel as it is rather than a copy of it.
 */
#include "../../ref/hx_prelu_s8.c"
