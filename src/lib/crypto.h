/* The digest trustmed and the CLI need: SHA-256 (sha256.c, no libcrypto), and hex. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define TM_SHA256_HEX_LEN 64

/* Incremental hashing, for images hashed while they are read (the GuestOS store). */
struct tm_sha256_ctx {
    uint32_t h[8];
    uint64_t len;      /* bytes hashed so far */
    uint8_t buf[64];   /* a partial block */
    size_t buf_len;
};

void tm_sha256_init(struct tm_sha256_ctx *c);
void tm_sha256_update(struct tm_sha256_ctx *c, const void *data, size_t len);
void tm_sha256_final(struct tm_sha256_ctx *c, uint8_t out[32]);

int tm_sha256(const void *data, size_t len, uint8_t out[32]);
int tm_sha256_hex(const void *data, size_t len, char out[TM_SHA256_HEX_LEN + 1]);
void tm_hex(const uint8_t *in, size_t len, char *out);
