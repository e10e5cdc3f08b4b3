/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Key blobs at rest (store.c): one file per key in the keystore's state dir, <alias>.key,
 * encrypted and authenticated with AES-256-GCM under the container's keystore key, with the
 * container's UUID and the key's alias as associated data. A blob copied to another container
 * (another keystore key, another UUID), renamed to another alias, or taken to another device
 * (another device secret, so another keystore key) does not open.
 *
 *   "TMKS" | version 1 | nonce (12) | ciphertext of a KsKeyBlob | tag (16)
 *
 * With an index (blob_index.h, the service always has one) the file must also be the one whose
 * SHA-256 the TPM-anchored index holds for its alias: an older copy (a spent usage count) or the
 * blob of a deleted key, written back by root on the device, is refused. A put writes the new
 * blob beside the old one (<alias>.key.new), commits its hash to the index, then renames it into
 * place; a crash in between leaves either the old blob indexed, or the new one indexed and found
 * in <alias>.key.new by the next get.
 *
 * Errors are tm_err with a KsError as the code (keystore.pb-c.h). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "keystore.pb-c.h"
#include "secmem.h"

#define KS_ALIAS_MAX 64
#define KS_KEY_LEN 32

struct ks_index;
struct ks_tpm;

struct ks_store {
    const char *dir; /* the state dir (cwd-relative or absolute) */
    const struct secret *key; /* the container's keystore key, KS_KEY_LEN bytes */
    char uuid[64];
    struct ks_index *index; /* the blobs' anchored generations; NULL: none (unit tests) */
    struct ks_tpm *tpm; /* the container's vTPM (tpm_keys.h), for TPM-held keys */
};

/* [A-Za-z0-9._-]{1,64}, not starting with '.' */
bool ks_alias_valid(const char *alias);
/* Seal blob and replace <alias>.key atomically. */
int ks_store_put(const struct ks_store *st, const char *alias, const Trustme__Keystore__KsKeyBlob *blob, tm_err *err);
/* Open <alias>.key: the unpacked blob, which lives in locked memory (*ret_mem) until the caller
 * frees it with ks_store_blob_free. */
int ks_store_get(const struct ks_store *st, const char *alias, Trustme__Keystore__KsKeyBlob **ret,
                 struct secret **ret_mem, tm_err *err);
void ks_store_blob_free(Trustme__Keystore__KsKeyBlob *blob, struct secret *mem);
/* Whether the container has a key of that alias (an indexed one, with an index). */
bool ks_store_exists(const struct ks_store *st, const char *alias);
int ks_store_delete(const struct ks_store *st, const char *alias, tm_err *err);
/* Call fn for every alias of a key (in the index; without one, with a file). The blob is not
 * opened. */
int ks_store_each(const struct ks_store *st, void (*fn)(const char *alias, void *ud), void *ud, tm_err *err);
size_t ks_store_count(const struct ks_store *st);
