/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Container migration, trustmed's state of it (docs/MIGRATION.md): the source's lock, the texts
 * the AKs sign (receipt, refusal, tombstone) and their check. The bundle is bundle.h's. */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon.h"
#include "error.h"

#define MIGRATE_SPKI_MAX 512

/* <container dir>/migrating: written (synced) before the bundle, so a container whose bundle may
 * exist never starts again here. */
struct migrate_lock {
    bool exported; /* the bundle was written completely (else: an export was under way) */
    char bundle_id[33];
    char offer_id[33];
    uint8_t ak_spki[MIGRATE_SPKI_MAX]; /* the target AK's public key, as the export verified it */
    size_t ak_spki_len;
    char path[PATH_MAX]; /* where the bundle goes; it is written as <path>.part first */
    char digest[65]; /* the bundle's head digest (bundle.h), once written: the receipt names it */
};

bool migrate_locked(const struct container *c);
/* 0, -ENOENT without a lock, or another -errno with err set (a lock that does not parse still
 * locks: migrate_locked only looks for the file). */
int migrate_lock_read(const struct container *c, struct migrate_lock *ret, tm_err *err);
int migrate_lock_write(const struct container *c, const struct migrate_lock *l, tm_err *err);
int migrate_lock_remove(const struct container *c, tm_err *err);
/* At start-up, for a lock a killed trustmed left: an export that never marked its lock exported
 * had no complete bundle under its name (it is renamed into place only after that mark), so its
 * <path>.part goes and the lock is released; an exported lock whose bundle is still <path>.part
 * (killed between the mark and the rename) gets the rename done. */
void migrate_recover(struct container *c);

/* The text an AK signs: "receipt", "refusal" (with the failing check) or "tombstone". A
 * receipt also names the bundle's head digest (digest; NULL for the others). */
int migrate_text(const char *kind, const char *bundle_id, const char *offer_id, const char *uuid, const char *check,
                 const char *digest, char *out, size_t size);
/* What tpmd's migrate_sign puts before the text it signs (with its NUL). */
#define MIGRATE_SIGN_TAG "trustme-migrate-v1"
/* An AK signature r || s as DER (OpenSSL's and scd's form): its length, or -1; *ret is
 * OPENSSL_malloc'ed. */
int migrate_sig_der(const uint8_t sig[64], uint8_t **ret);
/* ECDSA P-256 (r || s) of the AK over "trustme-migrate-v1\0" || text (tpmd's migrate_sign). */
int migrate_verify(const uint8_t *spki, size_t spki_len, const char *text, const uint8_t *sig, size_t sig_len,
                   tm_err *err);
