/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A migration offer's life in the anchor table (docs/MIGRATION.md "Offers in the TPM"): the
 * entry "migrate-offer/<offer id>" records that this TPM made the offer, until when it may be
 * used, the digest of its key's public blob, and whether it was spent. A file operation (a
 * restored key blob, a deleted mark) cannot undo a spend: the table is the TPM's. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <tss2/tss2_esys.h>

#include "anchor.h"
#include "error.h"

#define MIGRATE_OFFER_LIFETIME_DEFAULT (24 * 3600) /* seconds */
#define MIGRATE_OFFER_LIFETIME_MAX (30 * 24 * 3600)
/* An expired offer's entry (open or spent) stays this long after its expiry, so that a retried
 * import still gets a signed refusal; then the entry and the key's files go. */
#define MIGRATE_OFFER_KEEP_EXPIRED (7 * 24 * 3600)

/* Record a new offer as open, valid until now + lifetime seconds (0: the default), bound to the
 * SHA-256 of its TPM2B_PUBLIC and keeping the source's nonce (32 bytes, migrate_nonce.h). Expired
 * entries (and their files) are swept in the same update. *ret_expires: unix seconds. */
int migrate_spend_open(ESYS_CONTEXT *esys, const char *data_dir, struct anchor_table *t, const char *offer_id,
                       const uint8_t *pub, size_t pub_len, const uint8_t *nonce, size_t nonce_len, uint32_t lifetime,
                       uint64_t *ret_expires, tm_err *err);

/* Spend the offer before its key is used: 0 when it was open, unexpired, its nonce names the
 * source AK source_ak_id (SHA-256 of the bundle signer's AK certificate DER, migrate_nonce.h) and
 * its public blob in data_dir/migrate is the recorded one, and the entry now says spent (one NV
 * write). -ENOENT: this TPM has no record of it (unknown, or swept). -EPERM: its nonce names
 * another source, or it keeps none (nothing is spent). -ESTALE: spent already, nothing
 * installed from it (a signed refusal is true). -EALREADY: a container was installed from it.
 * -ETIME: expired (it is marked spent now: it never decrypts). -EBADMSG: the key's public blob
 * is not the one recorded. */
int migrate_spend(ESYS_CONTEXT *esys, const char *data_dir, struct anchor_table *t, const char *offer_id,
                  const uint8_t *source_ak_id, size_t source_ak_id_len, tm_err *err);

/* The import installed a container from the spent offer: recorded before its receipt is
 * signed, so that no later import of the same offer gets a signed refusal (which would release
 * the source's lock while the container runs here). */
int migrate_spend_installed(ESYS_CONTEXT *esys, const char *data_dir, struct anchor_table *t, const char *offer_id,
                            tm_err *err);
