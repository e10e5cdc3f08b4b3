/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Base64 for the fixed-size binary fields of scd's JSON files. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define B64_MAX_BYTES 64

/* Encode len (<= B64_MAX_BYTES) bytes; out needs 4 * ceil(len / 3) + 1 characters. */
void b64_encode(const uint8_t *in, size_t len, char *out);
/* Decode s into exactly want (<= B64_MAX_BYTES) bytes. Only the canonical encoding of want bytes
 * is accepted (length, alphabet, padding, unused bits): the files are untrusted input, and there
 * should be one way to write a value. Errors name path. */
int b64_decode_exact(const char *path, const char *s, uint8_t *out, size_t want, tm_err *err);
