/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Cleanup functions for the OpenSSL types tpmd's certificate code holds (cleanup.h's idiom). */
#pragma once

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "cleanup.h"

static inline void bio_freep(BIO **b)
{
    BIO_free(*b);
}
static inline void pkey_freep(EVP_PKEY **k)
{
    EVP_PKEY_free(*k);
}
static inline void pkey_ctx_freep(EVP_PKEY_CTX **c)
{
    EVP_PKEY_CTX_free(*c);
}
static inline void req_freep(X509_REQ **r)
{
    X509_REQ_free(*r);
}
static inline void x509_freep(X509 **x)
{
    X509_free(*x);
}
static inline void ecdsa_sig_freep(ECDSA_SIG **s)
{
    ECDSA_SIG_free(*s);
}
static inline void osslfreep(unsigned char **p)
{
    OPENSSL_free(*p);
}
static inline void bn_freep(BIGNUM **b)
{
    BN_free(*b);
}
static inline void certs_freep(STACK_OF(X509) * *s)
{
    sk_X509_pop_free(*s, X509_free);
}
