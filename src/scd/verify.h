/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Signature and certificate-chain verification: the service the signed-GuestOS issue calls
 * through scd, so that root never parses untrusted certificates.
 *
 * The chain is built to the given trust anchors only: a certificate is never trusted because it
 * was sent. It is checked with X509_V_FLAG_X509_STRICT (and, when CRLs are given,
 * X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL: then every CA in the chain needs a current
 * CRL). The leaf must have keyUsage digitalSignature and the required extendedKeyUsage. The
 * signature over the data must be ECDSA P-256 with SHA-256 (DER-encoded, as `openssl dgst
 * -sha256 -sign` writes it) or RSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt (RSA keys
 * of 2048 bits or more); the leaf's key type decides which, and anything else is refused.
 *
 * Errors, each saying precisely what failed:
 *   -EINVAL       malformed input (PEM, DER, sizes), named
 *   -EKEYREJECTED the chain does not verify ("<OpenSSL's reason> at depth N (<subject>)"), or the
 *                 leaf lacks the key usage or extended key usage
 *   -EKEYREVOKED  the chain does not verify because a certificate of it is revoked
 *   -ENODATA      the revocation status cannot be established: a CA of the chain has no CRL,
 *                 or its CRL is expired, not yet valid, badly signed or not a CRL at all
 *   -ENOKEY       the chain does not pass through one of required_pem marked for GuestOS signing
 *   -EOPNOTSUPP   the leaf's key is of a type or size not accepted
 *   -EBADMSG      the signature does not verify over the data
 *
 * The caller learns every certificate of the verified chain by its SHA-256 (chain_sha256), so
 * that it can require a particular intermediate CA (trustmed: a registered GuestOS-signing CA). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "error.h"

/* The certificate policy that marks a CA for GuestOS signing (docs/PKI.md): trustme-pki puts it
 * into every GuestOS Signing CA it makes. A CA registered as a GuestOS Signing CA, and the one a
 * GuestOS's chain passes through (required_pem), must carry it, so that neither the General root
 * nor the Device CA nor any other CA under the General root can act as one. An OID of the
 * UUID arc (ITU-T X.667), which needs no registration. */
#define VERIFY_GUESTOS_CA_POLICY_OID "2.25.92386413451986243705873209642221728993"

#define VERIFY_CHAIN_MAX 8 /* leaf and intermediates; a verified chain has at most 2 more */
#define VERIFY_ANCHORS_MAX 64
#define VERIFY_CRLS_MAX 64
#define VERIFY_PEM_MAX (1 << 20) /* bytes, each of chain, anchors, CRLs */
#define VERIFY_NAME_MAX 512

struct verify_request {
    const uint8_t *data;
    size_t data_len;
    const uint8_t *sig; /* detached signature, see above */
    size_t sig_len;
    const char *chain_pem; /* leaf first, then intermediates */
    size_t chain_len;
    const char *anchors_pem; /* one or more root CAs */
    size_t anchors_len;
    const char *crls_pem; /* optional: NULL or empty for no revocation checking */
    size_t crls_len;
    /* The extendedKeyUsage the leaf must have: a name ("codeSigning") or a dotted OID
     * ("1.3.6.1.5.5.7.3.3"); if NULL, eku_nid (e.g. NID_code_sign). One of them is required. */
    const char *eku;
    int eku_nid;
    time_t time; /* the moment to verify at; 0 = now */
    /* Verify a CA certificate instead of a signature (registering a GuestOS-signing CA): the
     * chain's first certificate must be a CA (basicConstraints CA:TRUE, keyUsage keyCertSign)
     * marked VERIFY_GUESTOS_CA_POLICY_OID that chains to the anchors without being one of them;
     * data, sig and eku are not used. */
    bool cert_only;
    /* Verify a leaf certificate's chain and usages (keyUsage digitalSignature, the eku) without
     * a signature over data: the leaf's key signs something the caller checks itself (a TPM
     * quote, whose signature format this file does not know). data and sig are not used. */
    bool leaf_only;
    /* Optional: CA certificates (PEM) of which the verified chain must contain one between the
     * leaf and the anchor, marked VERIFY_GUESTOS_CA_POLICY_OID — how a device accepts only
     * GuestOSes of its registered GuestOS-signing CAs. */
    const char *required_pem;
    size_t required_len;
    /* Keep what this request decodes and a verified chain for later requests with the same
     * bytes (verify_cache.h, docs/SECURITY.md "Verifier cache"): for a verifier that checks many
     * responses. Every check still runs per request; only work whose result is fixed by the
     * bytes (and, for the chain, by the time lying between the same validity dates) is reused. */
    bool cache;
};

enum verify_alg { VERIFY_ECDSA_P256_SHA256 = 1, VERIFY_RSA_PSS_SHA256 = 2 };

struct verify_result {
    char leaf_subject[VERIFY_NAME_MAX]; /* RFC 2253 form */
    char anchor_subject[VERIFY_NAME_MAX]; /* the trust anchor the chain ends in */
    uint8_t anchor_sha256[32]; /* SHA-256 over the anchor's DER */
    char anchor_sha256_hex[65];
    int chain_len; /* certificates in the verified chain, leaf and anchor included */
    uint8_t chain_sha256[VERIFY_CHAIN_MAX + 2][32]; /* SHA-256 of each one's DER, leaf first */
    enum verify_alg alg; /* 0 with cert_only or leaf_only: no signature was checked */
    int required_index; /* with required_pem: the index in chain_sha256 of the CA it matched */
};

/* res is written only on success. */
int verify_signed(const struct verify_request *rq, struct verify_result *res, tm_err *err);
