/* SPDX-License-Identifier: GPL-2.0-or-later */
/* verify_signed's cache, for requests with cache set (verify.h): a verifier that checks many
 * responses against the same anchors and CRLs, and the same device's chain again and again.
 *
 * Two tables, each keyed by SHA-256 of the exact bytes it was made from, so that changed input
 * (a new CRL, a re-issued certificate, another device) is a new key and never meets an old entry:
 *  - decoded PEM: the certificates or CRLs a PEM text decodes to (what pem_each made of it);
 *  - verified chains: X509_verify_cert's success for (chain, anchors, CRLs), with the interval of
 *    time around the moment it was computed in which no notBefore, notAfter, lastUpdate,
 *    nextUpdate or revocation date of those inputs lies. X509_verify_cert is a function of its
 *    inputs and of the time only through comparisons with those dates, so inside the interval it
 *    returns what it returned; outside, the entry is not used and the chain is verified again.
 * A third table keeps signatures over data that verified, by the data's, the signature's and the
 * signer certificate's hashes. Failures are never kept. Both tables are bounded (least recently used entry replaced) and
 * locked: the fleet's worker threads share them. docs/SECURITY.md "Verifier cache". */
#pragma once

#include <openssl/x509.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "verify.h"

#define VCACHE_PEM_ENTRIES 128
#define VCACHE_CHAIN_ENTRIES 128

enum vcache_kind { VCACHE_CERTS = 1, VCACHE_CRLS = 2 };

/* A copy of the decoded stack for pem's hash (up-referenced objects, the caller frees the
 * stack): 1; 0 if not cached. */
int vcache_certs_get(const uint8_t hash[32], STACK_OF(X509) * *ret);
int vcache_crls_get(const uint8_t hash[32], STACK_OF(X509_CRL) * *ret);
/* The first certificate of the cached stack for hash (up-referenced): 1; 0 if not cached. */
int vcache_leaf(const uint8_t hash[32], X509 **ret);
void vcache_certs_put(const uint8_t hash[32], STACK_OF(X509) * sk);
void vcache_crls_put(const uint8_t hash[32], STACK_OF(X509_CRL) * sk);

/* What a verified chain left behind: the chain X509_verify_cert built (leaf first, anchor last)
 * and what verify_signed derives from it alone. */
struct vcache_chain {
    STACK_OF(X509) * verified;
    size_t n_chain; /* certificates in the request's chain PEM */
    struct verify_result res; /* chain_sha256, anchor_*, leaf_subject, chain_len */
};

/* key: SHA-256 of the chain, the anchors and the CRLs (zeros: none) PEM, concatenated. A hit at
 * time t, strictly inside the entry's interval: 1 and out filled (verified up-referenced); 0
 * otherwise. */
int vcache_chain_get(const uint8_t key[96], time_t t, struct vcache_chain *out);
/* Keep c (its verified stack up-referenced) for key, valid strictly between lo and hi. */
void vcache_chain_put(const uint8_t key[96], time_t lo, time_t hi, const struct vcache_chain *c);

/* The interval around t in which no validity date of the certificates in the stacks and no
 * update or revocation date of the CRLs lies: false if a date cannot be read or one is t itself
 * (then the result is not kept). */
bool vcache_interval(const STACK_OF(X509) *const *certs, size_t ncerts, const STACK_OF(X509_CRL) * crls, time_t t,
                     time_t *ret_lo, time_t *ret_hi);

/* A signature that verified: key is SHA-256 of the data, of the signature and of the signer's
 * certificate (DER). Whether a signature verifies over data with a key is fixed by those bytes. */
#define VCACHE_SIG_ENTRIES 64
int vcache_sig_get(const uint8_t key[96], enum verify_alg *ret_alg);
void vcache_sig_put(const uint8_t key[96], enum verify_alg alg);

struct vcache_stats {
    uint64_t pem_hits, pem_misses, chain_hits, chain_misses, sig_hits, sig_misses;
};
void vcache_stats(struct vcache_stats *ret);
/* Empty both tables (tests). */
void vcache_flush(void);
