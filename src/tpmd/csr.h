/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Device identity (docs/ATTESTATION.md "Device identity and provisioning"): a PKCS#10 request
 * for the attestation key signed by the AK itself, and the installation of the certificate chain
 * the Device CA issues for it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "tpm.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#define CSR_CN_MAX 64 /* X.509 ub-common-name */
#define CERT_CHAIN_MAX 8
#define CERT_CHAIN_PEM_MAX (256 * 1024)

/* The AK's public key as a PEM SubjectPublicKeyInfo (malloc'ed, NUL-terminated). */
int ak_public_pem(const struct tpm *t, char **ret_pem, size_t *ret_len, tm_err *err);
/* The EK's public key as a PEM SubjectPublicKeyInfo (malloc'ed, NUL-terminated). */
int ek_public_pem(const struct tpm *t, char **ret_pem, size_t *ret_len, tm_err *err);
/* The first PEM certificate in pem certifies this TPM's EK. */
bool cert_is_for_ek(const struct tpm *t, const uint8_t *pem, size_t len);
/* The enrollment bundle: a PEM certificate request for the AK, subject CN cn (NULL or empty:
 * "trustme device <first 8 bytes of the AK name, hex>"), signed in the TPM and verified before it
 * is returned; the AK's TPMT_PUBLIC (ENROLL_PEM_AK_PUBLIC); then ek_chain, the EK's certificate
 * chain as installed (may be empty). */
int device_csr(struct tpm *t, const char *cn, const char *ek_chain, size_t ek_chain_len, char **ret_pem,
               size_t *ret_len, tm_err *err);
/* Check chain (PEM, leaf first, 1..8 certificates) certifies the AK (for_ek: the EK) and return
 * it re-encoded (only the certificates, no other text) for storing. */
int check_ak_chain(const struct tpm *t, const uint8_t *pem, size_t len, char **ret_pem, size_t *ret_len, tm_err *err);
int check_ek_chain(const struct tpm *t, const uint8_t *pem, size_t len, char **ret_pem, size_t *ret_len, tm_err *err);
/* Key attestation (docs/KEYSTORE.md): a certificate for a container's attestation key (spki: an
 * EC P-256 SubjectPublicKeyInfo, DER), subject CN cn, issued by the AK under the subject of
 * ak_chain's leaf (the installed AK certificate; ENOENT when there is none), CA:TRUE pathlen 0,
 * keyUsage keyCertSign, valid until the AK certificate is, with identity in the extension
 * TM_OID_CONTAINER_IDENTITY. Signed in the TPM (as the CSR is) and verified; DER, malloc'd. */
int container_cert(struct tpm *t, const char *ak_chain, size_t ak_chain_len, const uint8_t *spki, size_t spki_len,
                   const char *cn, const uint8_t *identity, size_t identity_len, uint8_t **ret_der, size_t *ret_len,
                   tm_err *err);
/* The TLS client key's enrollment bundle (enrollment.h ENROLL_PEM_TLS_*): a PEM certificate
 * request for the TLS key (subject CN cn, default as device_csr's), signed by that key in the
 * TPM; its TPMT_PUBLIC; the AK's TPM2_Certify of it; then ak_chain (the installed AK chain:
 * ENOENT when there is none, since the Device CA takes the TLS key on the certified AK's word). */
int tls_csr(struct tpm *t, const char *data_dir, const char *cn, const char *ak_chain, size_t ak_chain_len,
            char **ret_pem, size_t *ret_len, tm_err *err);

/* Shared with vtpm_issuer.c. OpenSSL's last reason appended to what (the queue cleared). */
int ossl_err(tm_err *err, int code, const char *what);
/* A P-256 public key from a TPMS_ECC_POINT. */
int point_pkey(const TPMS_ECC_POINT *pt, const char *what, EVP_PKEY **ret, tm_err *err);
/* A memory BIO's contents, copied and NUL-terminated. */
int bio_take(BIO *bio, char **ret, size_t *ret_len, tm_err *err);
/* A printable ASCII common name of at most CSR_CN_MAX bytes. */
int check_cn(const char *cn, tm_err *err);
/* The request's signature (ECDSA r, s) and algorithm set. */
int set_signature(X509_REQ *req, const uint8_t r[32], const uint8_t s[32], tm_err *err);
/* A DER certificate from its tbs (naming ecdsa-with-SHA256) and an ECDSA signature (malloc'd). */
int assemble_cert(const uint8_t *tbs, size_t tbs_len, const uint8_t r[32], const uint8_t s[32], uint8_t **ret,
                  size_t *ret_len, tm_err *err);
/* certs (leaf first) re-encoded as PEM for storing, once each was issued by the next. */
int linked_chain_pem(STACK_OF(X509) * certs, char **ret_pem, size_t *ret_len, tm_err *err);
/* One X.509v3 extension from its OpenSSL config text; -1 on failure. */
int add_ext(X509 *x, int nid, const char *value);
