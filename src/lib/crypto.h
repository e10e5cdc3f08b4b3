/* The digest trustmed and the CLI need: SHA-256 (sha256.c, no libcrypto), and hex. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define TM_SHA256_HEX_LEN 64

int tm_sha256(const void *data, size_t len, uint8_t out[32]);
int tm_sha256_hex(const void *data, size_t len, char out[TM_SHA256_HEX_LEN + 1]);
void tm_hex(const uint8_t *in, size_t len, char *out);
