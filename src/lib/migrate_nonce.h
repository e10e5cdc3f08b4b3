/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The nonce of a migration offer, bound to one source device (docs/MIGRATION.md "Source
 * binding"): the source makes it as r || SHA-256("trustme migrate source" || AK id || r)[:16],
 * with r 16 random bytes and the AK id the SHA-256 of its AK certificate's DER. The target keeps
 * it with the offer and installs only a bundle signed by the AK whose certificate it names; the
 * source exports only for a nonce that names its own AK. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#define MIGRATE_NONCE_LEN 32
#define MIGRATE_NONCE_RANDOM_LEN 16
#define MIGRATE_AK_ID_LEN 32 /* SHA-256 of the AK certificate's DER */
#define MIGRATE_NONCE_LABEL "trustme migrate source"

/* nonce = r || commitment(ak_id, r), r being nonce's first 16 bytes as given. */
void migrate_nonce_bind(const uint8_t ak_id[MIGRATE_AK_ID_LEN], uint8_t nonce[MIGRATE_NONCE_LEN]);
/* Whether nonce commits to ak_id. */
bool migrate_nonce_names(const uint8_t nonce[MIGRATE_NONCE_LEN], const uint8_t ak_id[MIGRATE_AK_ID_LEN]);
