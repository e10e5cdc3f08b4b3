/* SPDX-License-Identifier: GPL-2.0-or-later */
/* OpenSSL glue shared by scd's files: cleanup functions for its types, and errors from its error
 * queue in the tm_err idiom. */
#pragma once

#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cleanup.h"
#include "error.h"

/* Fill err with "<what>: <first OpenSSL reason>" and empty OpenSSL's error queue, so that a later,
 * unrelated failure does not report a stale reason. */
int ossl_fail(tm_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define OSSL_DEFINE_FREEP(type, fn)    \
    static inline void fn##p(type **p) \
    {                                  \
        if (*p)                        \
            fn(*p);                    \
    }

OSSL_DEFINE_FREEP(EVP_CIPHER_CTX, EVP_CIPHER_CTX_free)
OSSL_DEFINE_FREEP(EVP_KDF, EVP_KDF_free)
OSSL_DEFINE_FREEP(EVP_KDF_CTX, EVP_KDF_CTX_free)
OSSL_DEFINE_FREEP(EVP_MD_CTX, EVP_MD_CTX_free)
OSSL_DEFINE_FREEP(EVP_PKEY, EVP_PKEY_free)
OSSL_DEFINE_FREEP(BIO, BIO_free)
OSSL_DEFINE_FREEP(X509, X509_free)
OSSL_DEFINE_FREEP(X509_STORE, X509_STORE_free)
OSSL_DEFINE_FREEP(X509_STORE_CTX, X509_STORE_CTX_free)
OSSL_DEFINE_FREEP(EXTENDED_KEY_USAGE, EXTENDED_KEY_USAGE_free)
OSSL_DEFINE_FREEP(ASN1_OBJECT, ASN1_OBJECT_free)

static inline void x509_stack_freep(STACK_OF(X509) * *p)
{
    if (*p)
        sk_X509_pop_free(*p, X509_free);
}
static inline void crl_stack_freep(STACK_OF(X509_CRL) * *p)
{
    if (*p)
        sk_X509_CRL_pop_free(*p, X509_CRL_free);
}
