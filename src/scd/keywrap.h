/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The wrapped container key: a versioned binary blob that trustmed stores on disk.
 *
 *   offset  size  field
 *        0     4  magic "TMWK"
 *        4     1  version (1)
 *        5     1  flags: bit 0 = bound to the TPM-sealed device secret; others must be 0
 *        6     1  token type: 1 soft, 2 PKCS#11
 *        7     1  reserved, 0
 *        8    12  GCM nonce
 *       20    64  ciphertext of the 64-byte container key
 *       84    16  GCM tag
 *
 * AES-256-GCM, AAD = bytes 0..19 (the header up to and including the nonce) followed by the
 * container's UUID string, so a blob neither survives an edited header nor moves to another
 * container. For soft tokens the GCM key is HKDF-SHA256(ikm = the token's KEK, salt = the device
 * secret (empty only in unit tests), info = "trustme container key v1"); a PKCS#11 token computes
 * GCM itself with its KEK object over an inner key, which keywrap_p11_bind turns into the
 * container key with the device secret. The blob is untrusted input: keywrap_parse checks all of it before
 * any key touches it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "secmem.h"
#include "uuid.h"

#define KEYWRAP_MAGIC "TMWK"
#define KEYWRAP_VERSION 1
#define KEYWRAP_KEY_LEN 64
#define KEYWRAP_NONCE_OFFSET 8
#define KEYWRAP_NONCE_LEN 12
#define KEYWRAP_HEADER_LEN 20 /* magic .. nonce: the first part of the AAD */
#define KEYWRAP_CT_OFFSET 20
#define KEYWRAP_TAG_OFFSET 84
#define KEYWRAP_TAG_LEN 16
#define KEYWRAP_BLOB_LEN 100
#define KEYWRAP_AAD_LEN (KEYWRAP_HEADER_LEN + TM_UUID_STR_LEN)

#define KEYWRAP_FLAG_DEVICE_BOUND 0x01
/* The device secret tpmd unseals and trustmed passes to scd; it becomes the HKDF salt. */
#define KEYWRAP_DEVICE_SECRET_LEN 32

#define KEYWRAP_HKDF_INFO "trustme container key v1"
#define KEYWRAP_P11_BIND_INFO "trustme container key v1 pkcs11 device binding"

enum keywrap_token { KEYWRAP_TOKEN_SOFT = 1, KEYWRAP_TOKEN_PKCS11 = 2 };

struct keywrap_info {
    uint8_t version;
    uint8_t flags;
    enum keywrap_token token;
};

/* Check every header field and the length of an untrusted blob. device_bound says whether the
 * caller has a device secret: a blob must be bound exactly when it does (a bound blob cannot be
 * opened without the secret, and an unbound one is not accepted in its place — no downgrade).
 * Errors are -EINVAL (malformed) or -EOPNOTSUPP (a version this build does not read). */
int keywrap_parse(const uint8_t *blob, size_t len, bool device_bound, struct keywrap_info *ret, tm_err *err);

/* Start a blob: magic, version, flags, token type, a fresh random nonce. */
int keywrap_header_init(uint8_t blob[KEYWRAP_BLOB_LEN], enum keywrap_token token, bool device_bound, tm_err *err);
/* The AAD of a blob for a container: header bytes 0..19 followed by the UUID string. */
int keywrap_aad(const uint8_t blob[KEYWRAP_BLOB_LEN], const char *uuid, uint8_t aad[KEYWRAP_AAD_LEN], tm_err *err);

/* Soft tokens. kek: the token's 32-byte KEK. device_secret: the TPM-sealed 32-byte device
 * secret (docs/ATTESTATION.md), or NULL (unit tests); it sets flag bit 0 and is the HKDF salt. */
int keywrap_seal_soft(const struct secret *kek, const struct secret *device_secret, const char *uuid,
                      const struct secret *key, uint8_t blob[KEYWRAP_BLOB_LEN], tm_err *err);
/* PKCS#11 tokens wrap with their own KEK object, so the device secret cannot enter that key:
 * the token wraps an inner key instead, and the container key is
 * HKDF-SHA256(ikm = inner, salt = device secret, info = KEYWRAP_P11_BIND_INFO), 64 bytes. */
int keywrap_p11_bind(const struct secret *inner, const struct secret *device_secret, struct secret **ret_key,
                     tm_err *err);
/* -EBADMSG when the blob does not authenticate: another token's or container's blob, an altered
 * one, or the wrong device secret. ret_key (64 bytes) is written only on success. */
int keywrap_open_soft(const struct secret *kek, const struct secret *device_secret, const char *uuid,
                      const uint8_t *blob, size_t len, struct secret **ret_key, tm_err *err);
