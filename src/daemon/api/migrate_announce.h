/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The announcement of a bundle over the migration endpoint (docs/MIGRATION.md "Over TCP", "The
 * announcement"). Before the target reserves a byte or takes an upload slot, the uploader
 * proves that it is the source device the offer was made for: the source's AK signs the offer id,
 * the bundle (id, container, head digest), its size and the connection's fresh challenge; the
 * target checks the chain against its own General root, CRLs and Device CA (source_auth.h), that
 * its TPM recorded the offer (the anchor entry migrate-offer/<id>), and that the offer's nonce
 * names the AK that signed (migrate_nonce.h, "Source binding"). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "control.h"
#include "migrate_nonce.h"

#define MIGRATE_CHALLENGE_LEN 32
#define MIGRATE_ANNOUNCE_KIND "upload" /* the signed text's first line: no receipt, refusal, ... */

/* What an announcement names: the bundle that must follow; and who signed it: signer_id is the
 * SHA-256 of its AK certificate's DER (the leaf), which the upload slots are counted by. */
struct migrate_announced {
    char offer_id[33], bundle_id[33], uuid[37], digest[65];
    uint64_t size;
    uint8_t signer_id[MIGRATE_AK_ID_LEN];
};

/* Source, `trustme migrate announce C --challenge HEX --size N` (the CLI's send runs it): the AK
 * signs the announcement of C's exported bundle (its lock names the offer, bundle and digest). */
void migrate_announce(struct conn *conn, uint64_t id, const Trustme__MigrateRequest *rq);

/* Target: err NULL and state the offer's (MIGRATE_OFFER_OPEN, _SPENT or _INSTALLED): the source is
 * authenticated for a of that offer. Otherwise err names the failing check. Called once. */
typedef void (*migrate_announce_fn)(struct daemon *d, const struct migrate_announced *a, uint8_t state,
                                    const char *signer, const tm_err *err, void *userdata);

/* Target: check u, made for challenge, as above. <0 (err set) when it fails at once (malformed);
 * then fn is not called. */
int migrate_announce_check(struct daemon *d, const Trustme__MigrateUpload *u,
                           const uint8_t challenge[MIGRATE_CHALLENGE_LEN], migrate_announce_fn fn, void *userdata,
                           tm_err *err);
