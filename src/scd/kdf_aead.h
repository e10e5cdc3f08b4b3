/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The symmetric primitives of scd, on OpenSSL 3 EVP: AES-256-GCM with a 12-byte nonce and a
 * 16-byte tag, HKDF-SHA256 and scrypt. Keys go in and come out as secrets (secmem.h). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "secmem.h"

#define AEAD_KEY_LEN 32
#define AEAD_NONCE_LEN 12
#define AEAD_TAG_LEN 16

/* ct (len bytes) and tag out; ct may equal pt. */
int aead_seal(const struct secret *key, const uint8_t nonce[AEAD_NONCE_LEN], const void *aad, size_t aad_len,
              const uint8_t *pt, size_t len, uint8_t *ct, uint8_t tag[AEAD_TAG_LEN], tm_err *err);
/* -EBADMSG (message "authentication failed") when the tag does not match: wrong key, or altered
 * nonce, AAD, ciphertext or tag. Nothing is written to pt then. */
int aead_open(const struct secret *key, const uint8_t nonce[AEAD_NONCE_LEN], const void *aad, size_t aad_len,
              const uint8_t *ct, size_t len, const uint8_t tag[AEAD_TAG_LEN], struct secret *pt, tm_err *err);

/* HKDF-SHA256 (RFC 5869): out->len bytes. An empty salt means the RFC's default (zeros). */
int kdf_hkdf_sha256(const struct secret *ikm, const uint8_t *salt, size_t salt_len, const char *info,
                    struct secret *out, tm_err *err);

/* scrypt(pass, salt, N, r, p) into out->len bytes. */
int kdf_scrypt(const char *pass, const uint8_t *salt, size_t salt_len, uint64_t n, uint32_t r, uint32_t p,
               struct secret *out, tm_err *err);
