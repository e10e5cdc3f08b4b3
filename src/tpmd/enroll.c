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

static inline void bio_freep(BIO **b) { BIO_free(*b); }
static inline void cipher_ctx_freep(EVP_CIPHER_CTX **c) { EVP_CIPHER_CTX_free(*c); }
static inline void osslfreep(unsigned char **p) { OPENSSL_free(*p); }
static inline void osslstrfreep(char **p) { OPENSSL_free(*p); }

#define BLOCKS_MAX 16

struct blocks {
    _Bool have_blob, have_secret;
    TPM2B_ID_OBJECT blob;
    TPM2B_ENCRYPTED_SECRET secret;
    unsigned char *cert;  /* ENROLL_PEM_CERT's bytes */
    long cert_len;
};

static int decrypt_cert(const uint8_t key[ENROLL_CREDENTIAL_LEN], const unsigned char *in,
                        long len, unsigned char **ret_der, int *ret_len, tm_err *err)
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
        EVP_DecryptUpdate(ctx, NULL, &n, (const unsigned char *)ENROLL_AAD,
                          (int)strlen(ENROLL_AAD)) != 1 ||
        EVP_DecryptUpdate(ctx, out, &n, ct, ct_len) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, ENROLL_TAG_LEN, (void *)tag) != 1 ||
        EVP_DecryptFinal_ex(ctx, out + n, &fin) != 1) {
        ERR_clear_error();
        return tm_err_set(err, EBADMSG, "the encrypted certificate does not decrypt with the "
                          "activated credential");
    }
    *ret_der = steal_ptr(out);
    *ret_len = n + fin;
    return 0;
}

int enroll_unwrap(struct tpm *t, const uint8_t *pem, size_t len, char **ret, size_t *ret_len,
                  bool *ret_activated, tm_err *err)
{
    _cleanup_(bio_freep) BIO *in = BIO_new_mem_buf(pem, (int)len);
    _cleanup_(bio_freep) BIO *out = BIO_new(BIO_s_mem());
    _cleanup_(osslfreep) unsigned char *cert_data = NULL;
    long cert_len = 0;
    struct blocks b = {0};
    int r;
    if (!in || !out)
        return tm_err_set(err, ENOMEM, "out of memory");
    for (int i = 0;; i++) {
        _cleanup_(osslstrfreep) char *name = NULL, *header = NULL;
        _cleanup_(osslfreep) unsigned char *data = NULL;
        long n = 0;
        if (PEM_read_bio(in, &name, &header, &data, &n) != 1) {
            unsigned long e = ERR_peek_last_error();
            ERR_clear_error();
            if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
                break;
            return tm_err_set(err, EINVAL, "PEM block %d does not parse", i + 1);
        }
        if (i >= BLOCKS_MAX)
            return tm_err_set(err, EINVAL, "more than %d PEM blocks", BLOCKS_MAX);
        size_t off = 0;
        if (strcmp(name, ENROLL_PEM_CREDENTIAL) == 0 && !b.have_blob) {
            if (Tss2_MU_TPM2B_ID_OBJECT_Unmarshal(data, (size_t)n, &off, &b.blob) != TSS2_RC_SUCCESS ||
                off != (size_t)n)
                return tm_err_set(err, EINVAL, "the credential blob is not a TPM2B_ID_OBJECT");
            b.have_blob = 1;
        } else if (strcmp(name, ENROLL_PEM_SECRET) == 0 && !b.have_secret) {
            if (Tss2_MU_TPM2B_ENCRYPTED_SECRET_Unmarshal(data, (size_t)n, &off, &b.secret) !=
                    TSS2_RC_SUCCESS || off != (size_t)n)
                return tm_err_set(err, EINVAL, "the encrypted secret is not a "
                                  "TPM2B_ENCRYPTED_SECRET");
            b.have_secret = 1;
        } else if (strcmp(name, ENROLL_PEM_CERT) == 0 && !cert_data) {
            cert_data = steal_ptr(data);
            cert_len = n;
        } else if (strcmp(name, PEM_STRING_X509) == 0) {
            if (PEM_write_bio(out, PEM_STRING_X509, "", data, n) <= 0)
                return tm_err_set(err, ENOMEM, "out of memory");
        } else {
            return tm_err_set(err, EINVAL, "unexpected PEM block \"%s\" (a certificate, or the "
                              "Device CA's encrypted certificate, expected)", name);
        }
    }
    bool activated = b.have_blob || b.have_secret || cert_data;
    if (activated) {
        if (!b.have_blob || !b.have_secret || !cert_data)
            return tm_err_set(err, EINVAL, "the encrypted certificate needs its credential blob, "
                              "encrypted secret and certificate, once each");
        TPM2B_DIGEST cred = {0};
        if ((r = tpm_activate_credential(t, &b.blob, &b.secret, &cred, err)) < 0)
            return r;
        if (cred.size != ENROLL_CREDENTIAL_LEN) {
            explicit_bzero(&cred, sizeof(cred));
            return tm_err_set(err, EINVAL, "the credential has %u bytes, not %d", cred.size,
                              ENROLL_CREDENTIAL_LEN);
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
