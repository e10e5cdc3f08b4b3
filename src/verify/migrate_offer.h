/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The migration key of an offer (docs/MIGRATION.md "Export"): after attest_check_quote found the
 * offer's quote trusted, this checks that the AK of that quote certified (TPM2_Certify over the
 * same nonce) a key that cannot leave its TPM, decrypts only, and is usable only with the boot
 * state the quote showed, and hands out what the source encrypts to and checks receipts with. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "attest.pb-c.h"
#include "error.h"

struct migrate_offer_key {
    uint8_t wrap_spki[600]; /* the migration key, RSA-2048, DER SubjectPublicKeyInfo */
    size_t wrap_spki_len;
    uint8_t ak_spki[200]; /* the AK, DER */
    size_t ak_spki_len;
    uint8_t ak_name[34]; /* the AK's TPM name: 0x000b || SHA-256 of its TPMT_PUBLIC */
};

/* 0, or -EKEYREJECTED with err naming the failing check ("migration key certification: ..."). */
int migrate_offer_check(const Trustme__Attest__Quote *q, const uint8_t *key_public, size_t key_public_len,
                        const uint8_t *certify_attest, size_t certify_attest_len, const uint8_t *certify_sig,
                        size_t certify_sig_len, const uint8_t *nonce, size_t nonce_len, struct migrate_offer_key *ret,
                        tm_err *err);
