/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The nonce of a migration offer, bound to one source device (docs/MIGRATION.md "Source
 * binding"): the source makes it as r || SHA-256("trustme migrate source" || AK id || r)[:16],
 * with r 16 random bytes and the AK id the SHA-256 of its AK certificate's DER. The target keeps
 * it with the offer and installs only a bundle signed by the AK whose certificate it names; the
 * source exports only for a nonce that names its own AK. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MIGRATE_NONCE_LEN 32
#define MIGRATE_NONCE_RANDOM_LEN 16
#define MIGRATE_AK_ID_LEN 32 /* SHA-256 of the AK certificate's DER */
#define MIGRATE_NONCE_LABEL "trustme migrate source"

/* nonce = r || commitment(ak_id, r), r being nonce's first 16 bytes as given. */
void migrate_nonce_bind(const uint8_t ak_id[MIGRATE_AK_ID_LEN], uint8_t nonce[MIGRATE_NONCE_LEN]);
/* Whether nonce commits to ak_id. */
bool migrate_nonce_names(const uint8_t nonce[MIGRATE_NONCE_LEN], const uint8_t ak_id[MIGRATE_AK_ID_LEN]);

/* The anchor-table entry "migrate-offer/<offer id>" that tpmd keeps of an offer (docs/MIGRATION.md
 * "Offers in the TPM"): state, creation and expiry (unix seconds, big endian), the SHA-256 of the
 * key's TPM2B_PUBLIC, and the source's nonce (an older tpmd's entry has none). tpmd writes it;
 * trustmed's migration endpoint reads it to know whether an announced offer is one this TPM made
 * and which source it is for. */
#define MIGRATE_OFFER_PREFIX "migrate-offer/"
#define MIGRATE_OFFER_OPEN 'o'
#define MIGRATE_OFFER_SPENT 's' /* spent, and no container was installed from it (so far) */
#define MIGRATE_OFFER_INSTALLED 'i' /* spent, and a container was installed from it */
#define MIGRATE_OFFER_VALUE_LEN_V1 (1 + 8 + 8 + 32)
#define MIGRATE_OFFER_VALUE_LEN (MIGRATE_OFFER_VALUE_LEN_V1 + MIGRATE_NONCE_LEN)

struct migrate_offer_entry {
    uint8_t state;
    uint64_t created, expires;
    uint8_t pub_sha256[32];
    bool has_nonce;
    uint8_t nonce[MIGRATE_NONCE_LEN];
};

/* false: not an offer entry (another length or state). */
bool migrate_offer_entry_decode(const uint8_t *value, size_t len, struct migrate_offer_entry *ret);
