/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The steps every X.509 object tpmd makes shares (csr.c, vtpm_issuer.c): a PKCS#10 request or a
 * certificate whose signature a key in the TPM makes, and the bundle of a key the AK certifies
 * (src/lib/enrollment.h). */
#pragma once

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stddef.h>
#include <stdint.h>
#include <tss2/tss2_tpm2_types.h>

#include "error.h"

/* Signs to-be-signed bytes with a key in the TPM: ECDSA P-256 over their SHA-256, r and s
 * big-endian, left-padded to 32 bytes. */
typedef int tbs_signer(void *ctx, const uint8_t *tbs, size_t tbs_len, uint8_t r[32], uint8_t s[32], tm_err *err);

/* A request for pkey, subject CN cn, signed by sign (pkey's private half in the TPM) and
 * verified with pkey. */
int tpm_signed_request(EVP_PKEY *pkey, const char *cn, tbs_signer *sign, void *ctx, X509_REQ **ret, tm_err *err);

/* A random positive 128-bit serial number. */
int random_serial(ASN1_INTEGER **ret, tm_err *err);

/* Finish x (every field and extension set): its tbs names ecdsa-with-SHA256, sign signs it, the
 * result verifies with issuer_key. what names the certificate in messages. DER, malloc'd. */
int tpm_signed_cert(X509 *x, tbs_signer *sign, void *ctx, EVP_PKEY *issuer_key, const char *what, uint8_t **ret_der,
                    size_t *ret_len, tm_err *err);

/* A key the AK certifies, as its bundle carries it: the request the key signed, its public area,
 * TPM2_Certify's TPMS_ATTEST and TPMT_SIGNATURE, and the PEM labels of the three. */
struct certified_key {
    X509_REQ *req;
    const TPMT_PUBLIC *pub;
    const uint8_t *attest, *sig;
    size_t attest_len, sig_len;
    const char *public_label, *attest_label, *sig_label;
    const char *what; /* the key's name in messages */
};
/* The bundle: the request, the three TPM structures, then ak_chain (the AK's chain as installed). */
int certified_key_pem(const struct certified_key *k, const char *ak_chain, size_t ak_chain_len, char **ret_pem,
                      size_t *ret_len, tm_err *err);
