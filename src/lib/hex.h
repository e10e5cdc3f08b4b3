/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The one hex codec of trustme: lower-case out, strict in.
 *
 * Digests, AK names, nonces and keys travel as hex in files, JSON and command lines. Decoding is
 * exact: a length that is not the one expected, an odd number of digits or a character that is
 * not a hex digit is refused with a message naming it, so one byte string has one spelling where
 * the spelling matters (signed files, the measurement log, the anchor table). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* Accept 'A'-'F' too (command-line arguments a person types or copies); files written by trustme
 * are lower-case only, and their parsers leave this flag off. */
#define TM_HEX_ANY_CASE 1u

/* Writes 2 * len lower-case hex digits and a NUL to out (2 * len + 1 bytes). */
void tm_hex(const uint8_t *in, size_t len, char *out);

/* The value of one hex digit, or -1 (upper case only with TM_HEX_ANY_CASE). */
int tm_hex_digit(char c, unsigned flags);

/* Decodes the hex_len digits at hex (not necessarily NUL-terminated) into exactly n bytes at out.
 * Returns 0, or -EINVAL with err saying why: an odd number of digits, a length other than 2 * n,
 * or the (1-based) position of the first character that is not a hex digit. out is written only
 * on success. */
int tm_hex_decode(const char *hex, size_t hex_len, uint8_t *out, size_t n, unsigned flags, tm_err *err);

/* tm_hex_decode of a NUL-terminated string. */
int tm_hex_decode_str(const char *hex, uint8_t *out, size_t n, unsigned flags, tm_err *err);
