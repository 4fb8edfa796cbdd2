/*
 * hx_concat_s16.c (x86) - element copies (memcpy), the same code as the portable set.
 */
#include "../../ref/hx_concat_s16.c"
