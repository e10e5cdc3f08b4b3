/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The store's cryptography (OpenSSL): HKDF-SHA256, HMAC-SHA256, AES-256-GCM. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define SSTORE_NONCE_LEN 12
#define SSTORE_TAG_LEN 16

/* out[0..32) = HKDF-SHA256(ikm, salt, info). */
int sstore_hkdf(const uint8_t *ikm, size_t ikm_len, const void *salt, size_t salt_len, const void *info,
                size_t info_len, uint8_t out[32], tm_err *err);
int sstore_hmac(const uint8_t key[32], const void *data, size_t len, uint8_t out[32], tm_err *err);
/* out = nonce || ciphertext || tag (len + 28 bytes), a random nonce. */
int sstore_seal(const uint8_t key[32], const void *aad, size_t aad_len, const uint8_t *in, size_t len, uint8_t *out,
                tm_err *err);
/* in = nonce || ciphertext || tag; out gets in_len - 28 bytes. -EBADMSG when it does not open. */
int sstore_open_sealed(const uint8_t key[32], const void *aad, size_t aad_len, const uint8_t *in, size_t in_len,
                       uint8_t *out, tm_err *err);
