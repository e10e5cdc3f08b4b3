/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The AK certificate as the Device CA sends it: encrypted under a credential that only this TPM
 * can activate (docs/ATTESTATION.md "Enrollment"). */
#include "enroll.h"

#include <errno.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>
#include <tss2/tss2_mu.h>

#include "cleanup.h"
#include "enrollment.h"

static inline void bio_freep(BIO **b)
{
    BIO_free(*b);
}
static inline void cipher_ctx_freep(EVP_CIPHER_CTX **c)
{
    EVP_CIPHER_CTX_free(*c);
}
static inline void enroll_blocks_freep(struct enroll_blocks *b)
{
    enroll_blocks_free(b);
}

static int decrypt_cert(const uint8_t key[ENROLL_CREDENTIAL_LEN], const unsigned char *in, long len,
                        unsigned char **ret_der, int *ret_len, tm_err *err)
{
    if (len <= ENROLL_IV_LEN + ENROLL_TAG_LEN || len > 64 * 1024)
        return tm_err_set(err, EINVAL, "the encrypted certificate has %ld bytes", len);
    const unsigned char *iv = in, *ct = in + ENROLL_IV_LEN;
    int ct_len = (int)(len - ENROLL_IV_LEN - ENROLL_TAG_LEN);
    const unsigned char *tag = ct + ct_len;
    _cleanup_(cipher_ctx_freep) EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    _cleanup_free_ unsigned char *out = malloc((size_t)ct_len);
    int n = 0, fin = 0;
    if (!ctx || !out)
        return tm_err_set(err, ENOMEM, "out of memory");
    if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, ENROLL_IV_LEN, NULL) != 1 ||
        EVP_DecryptInit_ex(ctx, NULL, NULL, key, iv) != 1 ||
        EVP_DecryptUpdate(ctx, NULL, &n, (const unsigned char *)ENROLL_AAD, (int)strlen(ENROLL_AAD)) != 1 ||
        EVP_DecryptUpdate(ctx, out, &n, ct, ct_len) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, ENROLL_TAG_LEN, (void *)tag) != 1 ||
        EVP_DecryptFinal_ex(ctx, out + n, &fin) != 1) {
        ERR_clear_error();
        return tm_err_set(err, EBADMSG,
                          "the encrypted certificate does not decrypt with the "
                          "activated credential");
    }
    *ret_der = steal_ptr(out);
    *ret_len = n + fin;
    return 0;
}

int enroll_unwrap(struct tpm *t, const uint8_t *pem, size_t len, char **ret, size_t *ret_len, bool *ret_activated,
                  tm_err *err)
{
    _cleanup_(enroll_blocks_freep) struct enroll_blocks b = {0};
    int r = enroll_parse(pem, len, &b, err);
    if (r < 0)
        return r;
    _cleanup_(bio_freep) BIO *out = steal_ptr(b.clear);
    unsigned char *cert_data = b.cert;
    long cert_len = b.cert_len;
    bool activated = b.have_blob || b.have_secret || cert_data;
    if (activated) {
        /* (enroll_parse saw all three) */
        TPM2B_DIGEST cred = {0};
        if ((r = tpm_activate_credential(t, &b.blob, &b.secret, &cred, err)) < 0)
            return r;
        if (cred.size != ENROLL_CREDENTIAL_LEN) {
            explicit_bzero(&cred, sizeof(cred));
            return tm_err_set(err, EINVAL, "the credential has %u bytes, not %d", cred.size, ENROLL_CREDENTIAL_LEN);
        }
        _cleanup_free_ unsigned char *der = NULL;
        int der_len = 0;
        r = decrypt_cert(cred.buffer, cert_data, cert_len, &der, &der_len, err);
        explicit_bzero(&cred, sizeof(cred));
        if (r < 0)
            return r;
        /* The leaf first, then the CA certificates that came in clear. */
        _cleanup_(bio_freep) BIO *all = BIO_new(BIO_s_mem());
        char *rest;
        long rest_len = BIO_get_mem_data(out, &rest);
        if (!all || PEM_write_bio(all, PEM_STRING_X509, "", der, der_len) <= 0 ||
            (rest_len > 0 && BIO_write(all, rest, (int)rest_len) != (int)rest_len))
            return tm_err_set(err, ENOMEM, "out of memory");
        BIO_free(out);
        out = steal_ptr(all);
    }
    char *p;
    long n = BIO_get_mem_data(out, &p);
    char *copy = n > 0 ? malloc((size_t)n + 1) : NULL;
    if (n <= 0)
        return tm_err_set(err, EINVAL, "no PEM certificate in the chain");
    if (!copy)
        return tm_err_set(err, ENOMEM, "out of memory");
    memcpy(copy, p, (size_t)n);
    copy[n] = '\0';
    *ret = copy;
    *ret_len = (size_t)n;
    *ret_activated = activated;
    return 0;
}
