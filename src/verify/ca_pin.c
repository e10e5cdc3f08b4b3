/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "ca_pin.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <string.h>

#include "cleanup.h"
#include "crypto.h"
#include "ossl.h"

int ca_pins_parse(const char *pem, size_t len, const char *what, struct ca_pins *ret, tm_err *err)
{
    struct ca_pins out = {0};
    if (!pem || len == 0 || len > VERIFY_PEM_MAX)
        return tm_err_set(err, EINVAL, "%s: no certificate", what);
    _cleanup_(BIO_freep) BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio)
        return tm_err_set(err, ENOMEM, "out of memory");
    for (;;) {
        char *name = NULL, *header = NULL;
        unsigned char *der = NULL;
        long dlen = 0;
        if (!PEM_read_bio(bio, &name, &header, &der, &dlen)) {
            unsigned long e = ERR_peek_last_error();
            ERR_clear_error();
            if (ERR_GET_REASON(e) == PEM_R_NO_START_LINE && out.n > 0)
                break;
            return tm_err_set(err, EINVAL, "%s: %s", what,
                              out.n ? "a PEM block after the certificates is malformed" : "no PEM certificate");
        }
        const unsigned char *p = der;
        X509 *x = strcmp(name, "CERTIFICATE") == 0 ? d2i_X509(NULL, &p, dlen) : NULL;
        bool exact = x && p == der + dlen;
        int is_ca = exact ? X509_check_ca(x) : 0;
        if (exact && out.n < VERIFY_ANCHORS_MAX)
            tm_sha256(der, (size_t)dlen, out.sha256[out.n]);
        OPENSSL_free(name);
        OPENSSL_free(header);
        OPENSSL_free(der);
        X509_free(x);
        ERR_clear_error();
        if (!exact)
            return tm_err_set(err, EINVAL, "%s: certificate %zu is not a DER certificate", what, out.n + 1);
        if (out.n == VERIFY_ANCHORS_MAX)
            return tm_err_set(err, EINVAL, "%s: more than %d certificates", what, VERIFY_ANCHORS_MAX);
        if (is_ca != 1)
            return tm_err_set(err, EINVAL, "%s: certificate %zu is not a CA certificate", what, out.n + 1);
        out.n++;
    }
    *ret = out;
    return 0;
}

bool ca_pins_issued(const struct ca_pins *pins, const struct verify_result *res)
{
    if (!pins || res->chain_len < 2)
        return false;
    for (size_t i = 0; i < pins->n; i++)
        if (memcmp(pins->sha256[i], res->chain_sha256[1], 32) == 0)
            return true;
    return false;
}

int pem_leaf_is_ca(const char *pem, size_t len)
{
    if (!pem || len == 0 || len > VERIFY_PEM_MAX)
        return -EINVAL;
    _cleanup_(BIO_freep) BIO *bio = BIO_new_mem_buf(pem, (int)len);
    X509 *x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    ERR_clear_error();
    if (!x)
        return -EINVAL;
    /* EXFLAG_CA: basicConstraints CA:TRUE (X509_check_ca would also count an old v1 root or
     * keyCertSign alone; a leaf with those fails verify.c's usage checks anyway). */
    bool ca = X509_get_extension_flags(x) & EXFLAG_CA;
    X509_free(x);
    return ca ? 1 : 0;
}
