/* Internal to sha256*.c: the round constants and the compression functions, so that the x86 code
 * (sha256_x86.c, built with the SHA extensions enabled) shares them with the portable code. */
#pragma once

#include <stddef.h>
#include <stdint.h>

extern const uint32_t tm_sha256_k[64];

/* Each hashes n whole 64-byte blocks from p into the state h. */
void tm_sha256_blocks_portable(uint32_t h[8], const uint8_t *p, size_t n);
#if defined(__x86_64__)
void tm_sha256_blocks_shani(uint32_t h[8], const uint8_t *p, size_t n);
#endif
