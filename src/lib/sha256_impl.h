/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Internal to sha256*.c: the round constants and the SHA-NI block function (sha256_x86.c, built
 * with the SHA extensions enabled). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#if defined(__x86_64__)
extern const uint32_t tm_sha256_k[64];

/* Hashes n whole 64-byte blocks from p into the state h. */
void tm_sha256_blocks_shani(uint32_t h[8], const uint8_t *p, size_t n);
#endif
