/* The soft token: a file <dir>/<uuid>.soft holding the token's 32-byte KEK twice, encrypted
 * (AES-256-GCM) under a key derived from the PIN and from the PUK: HKDF-SHA256(ikm = scrypt(PIN,
 * salt), salt = the TPM-sealed device secret, info "trustme soft token slot v2"). Without the
 * device secret the file is no oracle for PIN guesses (docs/STORAGE.md):
 *
 *   {"version":2,"kdf":{"alg":"scrypt","N":32768,"r":8,"p":1},
 *    "pin":{"salt":b64(16),"nonce":b64(12),"ct":b64(32 + 16-byte tag)},
 *    "puk":{"salt":...,"nonce":...,"ct":...}}
 *
 * The AAD of each slot binds the container's UUID and the slot's name, so slots cannot be moved
 * between files or swapped. The file is read as untrusted input. Note that tampering with it
 * (a different salt or N) makes the right PIN look wrong: nothing can tell the two apart without
 * the KEK. */
#pragma once

#include <stdint.h>

#include "error.h"
#include "secmem.h"

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

/* A token file as read: nothing in it is secret. */
struct soft_token {
    uint64_t kdf_n;
    struct soft_slot_data slot[2];
};

/* A new token with a random KEK; replaces whatever is at path. */
int soft_token_create(const char *path, const char *uuid, uint64_t kdf_n, const char *pin,
                      const char *puk, const struct secret *device_secret, tm_err *err);
/* Read and check the file. -ENOKEY: there is none. */
int soft_token_load(const char *path, struct soft_token *ret, tm_err *err);
/* Check and parse a token file's bytes, read from path (for messages). */
int soft_token_parse(const char *data, size_t len, const char *path, struct soft_token *ret,
                     tm_err *err);
/* The KEK, opened with the PIN or the PUK. -EACCES means exactly "the secret is wrong" (nothing
 * else here returns it), so callers can count it. */
int soft_token_open(const struct soft_token *tok, const char *uuid, enum soft_slot slot,
                    const char *secret, const struct secret *device_secret,
                    struct secret **ret_kek, tm_err *err);
/* Encrypt the KEK under new_pin (fresh salt and nonce) and write the file; the PUK slot stays as
 * it is. */
int soft_token_set_pin(const char *path, struct soft_token *tok, const char *uuid,
                       const struct secret *kek, const char *new_pin,
                       const struct secret *device_secret, tm_err *err);
/* Crypto-erase: overwrite the file with random bytes, fsync, unlink, fsync the directory.
 * A missing file is fine. (On flash or copy-on-write storage an overwrite may leave old blocks
 * behind; the KEK is still wrapped by the PIN there, not stored in the clear.) */
int soft_token_erase(const char *path, tm_err *err);
