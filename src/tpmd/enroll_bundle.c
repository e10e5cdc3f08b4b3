/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The bundle `trustme device cert install` hands tpmd: what the Device CA issued, untrusted
 * until the credential activation and the chain checks (enroll.c, csr.c) accept it. Parsing only;
 * no TPM, so tests/fuzz/fuzz_enroll_bundle.c runs it on arbitrary bytes. */
#include "enroll.h"

#include <errno.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <tss2/tss2_mu.h>

#include "cleanup.h"
#include "enrollment.h"
#include "pem_blocks.h"

static inline void bio_freep(BIO **b)
{
    BIO_free(*b);
}

#define BLOCKS_MAX 16

void enroll_blocks_free(struct enroll_blocks *b)
{
    OPENSSL_free(b->cert);
    BIO_free(b->clear);
    explicit_bzero(b, sizeof(*b));
}

static int take_block(const char *name, unsigned char **data, long n, void *userdata, tm_err *err)
{
    struct enroll_blocks *b = userdata;
    size_t off = 0;
    if (strcmp(name, ENROLL_PEM_CREDENTIAL) == 0 && !b->have_blob) {
        if (Tss2_MU_TPM2B_ID_OBJECT_Unmarshal(*data, (size_t)n, &off, &b->blob) != TSS2_RC_SUCCESS || off != (size_t)n)
            return tm_err_set(err, EINVAL, "the credential blob is not a TPM2B_ID_OBJECT");
        b->have_blob = 1;
    } else if (strcmp(name, ENROLL_PEM_SECRET) == 0 && !b->have_secret) {
        if (Tss2_MU_TPM2B_ENCRYPTED_SECRET_Unmarshal(*data, (size_t)n, &off, &b->secret) != TSS2_RC_SUCCESS ||
            off != (size_t)n)
            return tm_err_set(err, EINVAL,
                              "the encrypted secret is not a "
                              "TPM2B_ENCRYPTED_SECRET");
        b->have_secret = 1;
    } else if (strcmp(name, ENROLL_PEM_CERT) == 0 && !b->cert) {
        b->cert = steal_ptr(*data);
        b->cert_len = n;
    } else if (strcmp(name, PEM_STRING_X509) == 0) {
        if (PEM_write_bio(b->clear, PEM_STRING_X509, "", *data, n) <= 0)
            return tm_err_set(err, ENOMEM, "out of memory");
    } else {
        return tm_err_set(err, EINVAL,
                          "unexpected PEM block \"%s\" (a certificate, or the "
                          "Device CA's encrypted certificate, expected)",
                          name);
    }
    return 0;
}

int enroll_parse(const uint8_t *pem, size_t len, struct enroll_blocks *b, tm_err *err)
{
    if (len > INT_MAX)
        return tm_err_set(err, EINVAL, "the certificate bundle has %zu bytes", len);
    *b = (struct enroll_blocks){0};
    _cleanup_(bio_freep) BIO *in = BIO_new_mem_buf(pem, (int)len);
    if (!in || !(b->clear = BIO_new(BIO_s_mem())))
        return tm_err_set(err, ENOMEM, "out of memory");
    int r = tm_pem_each_block(in, BLOCKS_MAX, take_block, b, err);
    if (r < 0)
        return r;
    if ((b->have_blob || b->have_secret || b->cert) && (!b->have_blob || !b->have_secret || !b->cert))
        return tm_err_set(err, EINVAL,
                          "the encrypted certificate needs its credential blob, "
                          "encrypted secret and certificate, once each");
    return 0;
}
