/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Installing what the Device CA issued (docs/ATTESTATION.md "Enrollment"). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <openssl/bio.h>
#include <stdint.h>
#include <tss2/tss2_tpm2_types.h>

#include "error.h"
#include "tpm.h"

/* The PEM blocks of the bundle (enroll_bundle.c): the Device CA's encrypted certificate
 * (ENROLL_PEM_CREDENTIAL, _SECRET, _CERT: each once, all three or none) and the plain
 * CERTIFICATE blocks, re-encoded in order into clear. At most 16 blocks; anything else is
 * -EINVAL. On failure *b holds what was parsed so far: enroll_blocks_free it either way. */
struct enroll_blocks {
    bool have_blob, have_secret;
    TPM2B_ID_OBJECT blob;
    TPM2B_ENCRYPTED_SECRET secret;
    unsigned char *cert; /* ENROLL_PEM_CERT's bytes (OPENSSL_malloc'ed), or NULL */
    long cert_len;
    BIO *clear; /* memory BIO: the plain certificates, PEM */
};
int enroll_parse(const uint8_t *pem, size_t len, struct enroll_blocks *b, tm_err *err);
void enroll_blocks_free(struct enroll_blocks *b);

/* pem: what `trustme device cert install` sent. Plain CERTIFICATE blocks are passed on as they
 * are. The Device CA's encrypted certificate (ENROLL_PEM_CREDENTIAL, _SECRET, _CERT: each once)
 * is decrypted with the credential TPM2_ActivateCredential recovers in this TPM with its EK and
 * AK; its certificate comes first in *ret. *ret: PEM certificates only, malloc'ed. */
int enroll_unwrap(struct tpm *t, const uint8_t *pem, size_t len, char **ret, size_t *ret_len, bool *ret_activated,
                  tm_err *err);
