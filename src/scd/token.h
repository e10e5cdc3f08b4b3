/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The token core of trustme-scd: each container's token (a soft token file or a PKCS#11 token),
 * which wraps and unwraps the container's 512-bit storage key.
 *
 * Files, all in <state_dir>/tokens/, mode 0600, replaced atomically:
 *   <uuid>.token   the record: which kind of token, and for PKCS#11 where it is
 *   <uuid>.soft    a soft token (token_soft.h)
 *   <uuid>.soft.new  a changed soft token, pending until the caller has anchored it
 *   <uuid>.tries   failed PIN and PUK attempts (tries.h)
 *
 * Every function returns 0 (or a documented non-negative value) or a negative errno with err
 * filled. The errno says what happened, so callers can act on it:
 *   -EACCES       wrong PIN or PUK (the message says how many tries are left)
 *   -EPERM        locked after TOKEN_PIN_TRIES wrong PINs: unlock with the PUK
 *   -EKEYREVOKED  blocked for good after TOKEN_PUK_TRIES wrong PUKs: only a wipe helps
 *   -ENOKEY       the container has no token (not paired, or wiped)
 *   -EEXIST       the container already has a token
 *   -EBADMSG      the key blob does not authenticate (another container's or token's, altered)
 *   -EINVAL       bad arguments or a malformed blob or file (the message names the field)
 *   -EIO          a state file cannot be read or written (never -EACCES or -EPERM for that)
 *   -ENOENT, -ELIBBAD, -ENODEV, -ENOTUNIQ   PKCS#11: no module file, not a module, no matching
 *                 token, several matching tokens (none of these costs a PIN attempt)
 * Operations on one state dir are serialised with flock(2) on the tokens directory, so several
 * processes may share it.
 *
 * PINs and PUKs are C strings. A caller that receives one with a length (an IPC message) must
 * pass it through token_check_secret_bytes first, which refuses NUL bytes: otherwise "1234\0..."
 * would silently become "1234". */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "keywrap.h"
#include "secmem.h"

#define TOKEN_PIN_MIN 4
#define TOKEN_PIN_MAX 64
#define TOKEN_PUK_MIN 8 /* soft tokens; a PKCS#11 token's PUK is its SO PIN, whatever it is */
#define TOKEN_PUK_MAX 64
#define TOKEN_PIN_TRIES 3
#define TOKEN_PUK_TRIES 10
#define TOKEN_SOFT_KDF_N_DEFAULT (UINT64_C(1) << 15)

enum token_type {
    TOKEN_NONE = 0,
    TOKEN_SOFT = KEYWRAP_TOKEN_SOFT,
    TOKEN_PKCS11 = KEYWRAP_TOKEN_PKCS11,
};

struct token_ctx {
    const char *state_dir;
    /* scrypt N for soft tokens whose spec says 0; 0 here means TOKEN_SOFT_KDF_N_DEFAULT. */
    uint64_t soft_kdf_n;
    /* The TPM-sealed 32-byte device secret (docs/ATTESTATION.md), once trustmed has passed it on;
     * NULL before (scd then refuses key requests) and in unit tests. Every blob made with it is
     * bound to it (keywrap.h, flag bit 0): a soft token's KEK is HKDF-salted with it, a PKCS#11
     * token's inner key is turned into the container key with it (keywrap_p11_bind). */
    const struct secret *device_secret;
    /* The caller counts PIN and PUK attempts where root cannot roll them back (trustmed: in
     * the TPM, before each attempt) and checks the limits: scd then keeps no tries file of its
     * own (it would only cost fsyncs on every start). Unit tests leave it false. */
    bool caller_counts;
    /* The digest of the token's files (token_files_digest) that the caller anchored for this
     * request, or NULL. Given, the operations on a paired token check it against the very bytes
     * they then parse and use: a check over one read and a use of a second would let root swap
     * an older file in between. */
    const uint8_t *anchor;
};

struct token_spec {
    enum token_type type;
    uint64_t soft_kdf_n; /* soft: scrypt N, a power of two in 2^10..2^20; 0 = the ctx's */
    const char *pkcs11_module; /* pkcs11: absolute path of the module */
    const char *pkcs11_label; /* pkcs11: the token's label (<= 32 bytes), or NULL */
    const char *pkcs11_serial; /* pkcs11: the token's serial (<= 16 bytes), or NULL */
};

struct token_status {
    bool paired;
    enum token_type type;
    bool locked; /* PIN locked: unlock with the PUK */
    bool blocked; /* PUK blocked: only a wipe helps */
    unsigned pin_failures, pin_tries_left;
    unsigned puk_failures, puk_tries_left;
    uint8_t files_sha256[32]; /* token_files_digest, when paired */
};

const char *token_type_name(enum token_type t);
/* Refuses NUL bytes and more than TOKEN_PIN_MAX bytes in a PIN or PUK received with a length. */
int token_check_secret_bytes(const void *data, size_t len, tm_err *err);

/* Create the container's token and its record. Soft: a new random KEK, wrapped under pin and puk
 * (TOKEN_PUK_MIN..TOKEN_PUK_MAX bytes, not equal to the PIN). PKCS#11: logs in with pin (checking
 * it; this uses the token's own counter only, there are no tries of ours yet) and generates the
 * KEK object, refusing a token that already holds one for this UUID; puk is ignored (may be
 * NULL). -EEXIST if the container already has a token. */
int token_pair(const struct token_ctx *ctx, const char *uuid, const struct token_spec *spec, const char *pin,
               const char *puk, tm_err *err);

/* First start: a new random 64-byte key (ret_key) and its wrapped form (blob), which the caller
 * stores. ret_key is written only on success and belongs to the caller (secret_free). given
 * (given_len bytes, soft tokens only): wrap this key instead of a new one — the data key a
 * migration carried (docs/MIGRATION.md); NULL for a new key. */
int token_new_key(const struct token_ctx *ctx, const char *uuid, const char *pin, const uint8_t *given,
                  size_t given_len, struct secret **ret_key, uint8_t blob[KEYWRAP_BLOB_LEN], tm_err *err);

/* Later starts: the key in blob. The blob is checked before the PIN is tried, so a malformed
 * blob costs no attempt. */
int token_unwrap(const struct token_ctx *ctx, const char *uuid, const char *pin, const uint8_t *blob, size_t blob_len,
                 struct secret **ret_key, tm_err *err);

/* What a PIN change or PUK unlock of a soft token made: it re-keys (a new KEK), so the container
 * key's wrap changes too. */
struct token_rekeyed {
    bool pending; /* <uuid>.soft.new was written: commit it (token_commit) */
    uint8_t pending_sha256[32]; /* the token files' digest with it (token_files_digest) */
    bool has_wrapped; /* a blob was given: here it is, wrapped under the new KEK */
    uint8_t wrapped[KEYWRAP_BLOB_LEN];
};

/* Change the PIN. A soft token is re-keyed: a new KEK for the new PIN and for the PUK side
 * (token_soft.h), and blob (the container's wrapped key, NULL before its first start) wrapped
 * anew into ret->wrapped. With ctx->anchor the new token file is only pending (ret->pending);
 * without, it replaces the old one at once. A PKCS#11 token changes its PIN on the token (ret
 * says nothing is pending). */
int token_change_pin(const struct token_ctx *ctx, const char *uuid, const char *old_pin, const char *new_pin,
                     const uint8_t *blob, size_t blob_len, struct token_rekeyed *ret, tm_err *err);

/* Set a new PIN with the PUK (for PKCS#11: the SO PIN, C_InitPIN), clearing the PIN counter.
 * A soft token is re-keyed as by token_change_pin, its PUK side made anew. */
int token_unlock(const struct token_ctx *ctx, const char *uuid, const char *puk, const char *new_pin,
                 const uint8_t *blob, size_t blob_len, struct token_rekeyed *ret, tm_err *err);

/* Settle a pending change whose digest the caller has anchored (pending) beside the current one
 * (ctx->anchor): a pending file with that digest is renamed into place; any other pending file
 * is removed. 0 when the token files are now either generation (token_status says which), and
 * -ESTALE when they are neither. */
int token_commit(const struct token_ctx *ctx, const char *uuid, const uint8_t pending[32], tm_err *err);

#define TOKEN_WIPE_KEY_LEFT 1
/* Crypto-erase the container's token and forget it; idempotent (no token: 0).
 * Soft: the token file is overwritten with random bytes, synced and removed — every blob it
 * wrapped is unreadable from then on. PKCS#11: with a PIN, the KEK object is destroyed (a
 * counted PIN attempt: a wrong PIN returns -EACCES and wipes nothing, so the user can retry);
 * with pin NULL, or when the record cannot be read, only the record is forgotten and the key
 * object stays on the token: the return value is then TOKEN_WIPE_KEY_LEFT. */
int token_wipe(const struct token_ctx *ctx, const char *uuid, const char *pin, tm_err *err);

/* SHA-256 over the token's files (record, soft token file; a missing one counts as missing, not
 * empty): trustmed anchors it in the TPM, and scd refuses token files that differ from the
 * anchored digest (docs/STORAGE.md). The tries file is not part of it: the anchored counts rule. */
int token_files_digest(const struct token_ctx *ctx, const char *uuid, uint8_t out[32], tm_err *err);

/* Never fails for a container without a token: paired = false then. */
int token_status(const struct token_ctx *ctx, const char *uuid, struct token_status *ret, tm_err *err);
