/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The soft token: a file <dir>/<uuid>.soft holding the token's 32-byte KEK, encrypted
 * (AES-256-GCM) under a key derived from the PIN, HKDF-SHA256(ikm = scrypt(PIN, salt), salt = the
 * TPM-sealed device secret, info "trustme soft token slot v3"), and sealed for the PUK side.
 * Without the device secret the file is no oracle for PIN or PUK guesses (docs/STORAGE.md).
 *
 * Version 3 (written since re-keying PIN changes, docs/STORAGE.md):
 *
 *   {"version":3,"kdf":{"alg":"scrypt","N":32768,"r":8,"p":1},
 *    "pin":{"salt":b64(16),"nonce":b64(12),"ct":b64(32 + 16)},      KEK under the PIN
 *    "puk":{"salt":...,"nonce":...,"ct":...},                      PUK key pair's private key
 *                                                                  under the PUK (same KDF)
 *    "puk_pub":b64(32),                                            its X25519 public key
 *    "sealed":{"epk":b64(32),"nonce":b64(12),"ct":b64(48)},         KEK sealed to puk_pub
 *                                                                  (x25519_seal.h)
 *    "puk_key":{"nonce":b64(12),"ct":b64(48)}}                     only when migrated, below
 *
 * The PUK side is public-key so that a PIN change, which does not know the PUK, can still give
 * the token a NEW KEK: it seals the new KEK to puk_pub. A PIN change and a PUK unlock both
 * re-key (soft_token_rekey); the old file with the old PIN yields only the old KEK, which opens
 * nothing wrapped since.
 *
 * Version 2 (read, never written): "pin" and "puk" both hold the KEK, AAD/info "v2". A v2 file
 * becomes v3 at its next PIN change or PUK unlock. A PUK unlock knows the PUK and writes a plain
 * v3 file. A PIN change does not: it keeps the v2 PUK slot (the PUK opens the v2 file's KEK,
 * KEK0) and encrypts the new key pair's private key under HKDF(KEK0, device secret, "trustme soft
 * token puk key v3") in "puk_key". Only the v2 file and its PIN still reach KEK0, so they keep
 * a way to the PUK side until the next PUK unlock drops "puk_key" (docs/STORAGE.md).
 *
 * AADs: "trustme soft token v<slot version>:<uuid>:<pin|puk|puk-key|sealed>", so parts cannot be
 * moved between files or swapped. The file is read as untrusted input. Note that tampering with
 * it (a different salt or N) makes the right PIN look wrong: nothing can tell the two apart
 * without the KEK. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "error.h"
#include "secmem.h"
#include "x25519_seal.h"

#define SOFT_KEK_LEN 32
#define SOFT_SALT_LEN 16
#define SOFT_KDF_N_MIN (UINT64_C(1) << 10)
#define SOFT_KDF_N_MAX (UINT64_C(1) << 20) /* 1 GiB of scrypt memory at r = 8 */
#define SOFT_KDF_R 8
#define SOFT_KDF_P 1

#define SOFT_CT_LEN (SOFT_KEK_LEN + 16) /* KEK + GCM tag */

enum soft_slot { SOFT_SLOT_PIN, SOFT_SLOT_PUK };

struct soft_slot_data {
    uint8_t salt[SOFT_SALT_LEN];
    uint8_t nonce[12];
    uint8_t ct[SOFT_CT_LEN];
};

struct soft_box {
    uint8_t nonce[12];
    uint8_t ct[SOFT_CT_LEN];
};

/* A token file as read: nothing in it is secret. */
struct soft_token {
    int version; /* 2 or 3 as read; only 3 is written */
    uint64_t kdf_n;
    struct soft_slot_data slot[2];
    /* version 3 */
    uint8_t puk_pub[X25519_KEY_LEN];
    struct x25519_box sealed;
    bool puk_legacy; /* migrated from v2 without the PUK: puk_key is there */
    struct soft_box puk_key;
};

/* A new token with a random KEK; replaces whatever is at path. */
int soft_token_create(const char *path, const char *uuid, uint64_t kdf_n, const char *pin, const char *puk,
                      const struct secret *device_secret, tm_err *err);
/* Read and check the file. -ENOKEY: there is none. */
int soft_token_load(const char *path, struct soft_token *ret, tm_err *err);
/* Check and parse a token file's bytes, read from path (for messages). */
int soft_token_parse(const char *data, size_t len, const char *path, struct soft_token *ret, tm_err *err);
/* The KEK, opened with the PIN or the PUK. -EACCES means exactly "the secret is wrong" (nothing
 * else here returns it), so callers can count it. */
int soft_token_open(const struct soft_token *tok, const char *uuid, enum soft_slot slot, const char *secret,
                    const struct secret *device_secret, struct secret **ret_kek, tm_err *err);
/* Re-key: a new random KEK (ret_kek) under new_pin and sealed for the PUK side, in *ret (version
 * 3; nothing is written). kek is tok's current KEK (opened by the caller). puk: given (a PUK
 * unlock), the PUK side is made anew for it; NULL (a PIN change), it stays and the new KEK is
 * sealed to its public key (a v2 tok is migrated as the top describes). */
int soft_token_rekey(const struct soft_token *tok, const char *uuid, const struct secret *kek, const char *new_pin,
                     const char *puk, const struct secret *device_secret, struct soft_token *ret,
                     struct secret **ret_kek, tm_err *err);
/* The file's bytes (JSON; *ret malloc'ed), and writing them atomically to path. */
int soft_token_format(const struct soft_token *tok, char **ret, size_t *ret_len, tm_err *err);
int soft_token_store(const char *path, const struct soft_token *tok, tm_err *err);
/* What a migration carries of a slot (docs/MIGRATION.md "The token"): its salt and the scrypt
 * output of its secret, before the device secret is mixed in (so the target can mix in its own). */
struct soft_carried_slot {
    uint8_t salt[SOFT_SALT_LEN];
    struct secret *ikm; /* 32 bytes */
};
/* scrypt(secret, the slot's salt) with tok's parameters: the slot's carried form. */
int soft_token_ikm(const struct soft_token *tok, enum soft_slot slot, const char *secret, struct secret **ret,
                   tm_err *err);
/* A new token file (version 3, a new KEK) whose PIN and PUK are the carried ones: their slots
 * keep the carried salts, their keys are derived with this device's secret. Replaces path. */
int soft_token_create_carried(const char *path, const char *uuid, uint64_t kdf_n, const struct soft_carried_slot *pin,
                              const struct soft_carried_slot *puk, const struct secret *device_secret, tm_err *err);
/* Crypto-erase: overwrite the file with random bytes, fsync, unlink, fsync the directory.
 * A missing file is fine. (On flash or copy-on-write storage an overwrite may leave old blocks
 * behind; the KEK is still wrapped by the PIN there, not stored in the clear.) */
int soft_token_erase(const char *path, tm_err *err);
