/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The TPM side of container migration (docs/MIGRATION.md): the per-offer migration key, its
 * one-shot decryption and the AK's signature over receipts, refusals and tombstones. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "secmem.h"
#include "tpm.h"

#define MIGRATE_OFFER_ID_LEN 32 /* hex digits */
#define MIGRATE_SPARE "spare" /* the key made ahead, not an offer id (those are hex) */

struct migrate_offer {
    char offer_id[MIGRATE_OFFER_ID_LEN + 1];
    uint8_t *key_public; /* TPM2B_PUBLIC, marshalled */
    size_t key_public_len;
    uint8_t *certify_attest, *certify_sig;
    size_t certify_attest_len, certify_sig_len;
};

/* A fresh RSA-2048 OAEP decrypt-only key under the SRK, authPolicy PolicyPCR(boot_pcr = now),
 * kept in data_dir/migrate/<offer id>.pub, .priv, certified by the AK over nonce. */
int migrate_offer(struct tpm *t, const char *data_dir, uint32_t boot_pcr, const uint8_t *nonce, size_t nonce_len,
                  struct migrate_offer *ret, tm_err *err);
void migrate_offer_free(struct migrate_offer *o);
/* Make the spare key the next offer takes (<data_dir>/migrate/spare.{pub,priv}), unless one under
 * the current boot PCR's policy is there: creating an RSA key is most of an offer's time, so
 * tpmd makes the next one after answering an offer. The spare is an ordinary migration key that
 * no offer names yet; the offer renames it to its own id, so no two offers ever share a key. */
int migrate_spare(struct tpm *t, const char *data_dir, uint32_t boot_pcr, tm_err *err);

/* RSA-OAEP decryption with the offer's key in a PolicyPCR session. The offer is consumed
 * (renamed away, synced) before the TPM sees the key and removed after: one decryption ever. */
int migrate_decrypt(struct tpm *t, const char *data_dir, uint32_t boot_pcr, const char *offer_id,
                    const uint8_t *ciphertext, size_t len, struct secret **ret, tm_err *err);
/* Whether name (the manifest's target AK) is this TPM's AK: -EXDEV with err saying whose not. */
int migrate_check_target(const struct tpm *t, const uint8_t *name, size_t len, tm_err *err);

/* The AK's ECDSA (r || s) over "trustme-migrate-v1\0" || data. */
int migrate_sign(struct tpm *t, const uint8_t *data, size_t len, uint8_t sig[64], tm_err *err);
