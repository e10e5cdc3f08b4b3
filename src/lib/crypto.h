/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The digest trustmed and the CLI need: SHA-256 (sha256.c, no libcrypto); hex is hex.h's. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nettle/sha2.h>

#include "error.h"
#include "hex.h"

#define TM_SHA256_HEX_LEN 64

/* Incremental hashing, for images hashed while they are read (the GuestOS store). The
 * implementation is chosen at tm_sha256_init (sha256.c): trustme's SHA-NI code or nettle. */
struct tm_sha256_ctx {
    bool own;
    union {
        struct {
            uint32_t h[8];
            uint64_t len; /* bytes hashed so far */
            uint8_t buf[64]; /* a partial block */
            size_t buf_len;
        } s;
        struct sha256_ctx nettle;
    } u;
};

void tm_sha256_init(struct tm_sha256_ctx *c);
void tm_sha256_update(struct tm_sha256_ctx *c, const void *data, size_t len);
void tm_sha256_final(struct tm_sha256_ctx *c, uint8_t out[32]);

int tm_sha256(const void *data, size_t len, uint8_t out[32]);
int tm_sha256_hex(const void *data, size_t len, char out[TM_SHA256_HEX_LEN + 1]);

/* Hashes the whole file behind fd, from offset 0 to its end, with pread: fd's offset is left as it
 * was (so fd must be a regular file or a block device, not a pipe). *size (if non-NULL) receives
 * the number of bytes hashed. progress (if non-NULL) is called with the bytes hashed so far each
 * time another 16 MiB are done, and once at the end with the total. Returns 0, or -errno with err
 * saying what failed. (sha256_fd.c) */
int tm_sha256_fd(int fd, uint8_t out[32], uint64_t *ret_size, void (*progress)(uint64_t done, void *ud), void *ud,
                 tm_err *err);

/* The implementation is chosen for the CPU at the first use: "sha-ni" (trustme's own block
 * function for the x86 SHA extensions) or "nettle". tm_sha256_force_nettle(true) pins nettle,
 * false goes back to the best one: for the tests and the benchmark, which must cover nettle on
 * any CPU. It applies to the whole process, from the next tm_sha256_init on (a hash in progress
 * keeps its implementation). tm_sha256_impl() names the one in use. */
void tm_sha256_force_nettle(bool nettle);
const char *tm_sha256_impl(void);

/* HKDF-SHA256 (RFC 5869) with nettle: out_len (<= 255 * 32) bytes into out. salt may be NULL
 * (then 32 zero bytes). For trustmed's few key derivations (the keystore keys); scd and the
 * services use OpenSSL's. */
void tm_hkdf_sha256(const void *ikm, size_t ikm_len, const void *salt, size_t salt_len, const void *info,
                    size_t info_len, uint8_t *out, size_t out_len);
