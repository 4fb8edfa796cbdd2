/*
 * hx_concat_s16.c (neon) - int16 CONCATENATION along time: a sequence of element copies (memcpy is
 * already vectorised by the C library), the same code as csrc/ref/hx_concat_s16.c.
 */
#include "../../ref/hx_concat_s16.c"
