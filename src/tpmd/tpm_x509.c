/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "tpm_x509.h"

#include <errno.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <tss2/tss2_mu.h>

#include "csr.h"
#include "ossl_cleanup.h"
#include "secmem.h"

int tpm_signed_request(EVP_PKEY *pkey, const char *cn, tbs_signer *sign, void *ctx, X509_REQ **ret, tm_err *err)
{
    _cleanup_(req_freep) X509_REQ *req = X509_REQ_new();
    if (!req || X509_REQ_set_version(req, X509_REQ_VERSION_1) != 1 ||
        X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN", MBSTRING_ASC, (const unsigned char *)cn, -1,
                                   -1, 0) != 1 ||
        X509_REQ_set_pubkey(req, pkey) != 1)
        return ossl_err(err, ENOMEM, "cannot build the certificate request");
    _cleanup_(osslfreep) unsigned char *tbs = NULL;
    int tbs_len = i2d_re_X509_REQ_tbs(req, &tbs);
    if (tbs_len <= 0)
        return ossl_err(err, ENOMEM, "cannot encode the certificate request");
    uint8_t sig_r[32], sig_s[32];
    int r;
    if ((r = sign(ctx, tbs, (size_t)tbs_len, sig_r, sig_s, err)) < 0 || (r = set_signature(req, sig_r, sig_s, err)) < 0)
        return r;
    if (X509_REQ_verify(req, pkey) != 1)
        return ossl_err(err, EIO, "the TPM's signature of the certificate request does not verify");
    *ret = steal_ptr(req);
    return 0;
}

int random_serial(ASN1_INTEGER **ret, tm_err *err)
{
    uint8_t serial[16];
    int r = secure_random(serial, sizeof(serial), err);
    if (r < 0)
        return r;
    serial[0] &= 0x7f;
    BIGNUM *sn = BN_bin2bn(serial, sizeof(serial), NULL);
    ASN1_INTEGER *asn = sn ? BN_to_ASN1_INTEGER(sn, NULL) : NULL;
    BN_free(sn);
    if (!asn)
        return ossl_err(err, ENOMEM, "cannot make a serial number");
    *ret = asn;
    return 0;
}

int tpm_signed_cert(X509 *x, tbs_signer *sign, void *ctx, EVP_PKEY *issuer_key, const char *what, uint8_t **ret_der,
                    size_t *ret_len, tm_err *err)
{
    char msg[128];
    /* A throwaway key signs first only so that OpenSSL writes ecdsa-with-SHA256 into the tbs. */
    _cleanup_(pkey_freep) EVP_PKEY *dummy = EVP_EC_gen("P-256");
    if (!dummy || X509_sign(x, dummy, EVP_sha256()) <= 0) {
        snprintf(msg, sizeof(msg), "cannot build the %s", what);
        return ossl_err(err, ENOMEM, msg);
    }
    _cleanup_(osslfreep) unsigned char *tbs = NULL;
    int tbs_len = i2d_re_X509_tbs(x, &tbs);
    if (tbs_len <= 0) {
        snprintf(msg, sizeof(msg), "cannot encode the %s", what);
        return ossl_err(err, ENOMEM, msg);
    }
    uint8_t sig_r[32], sig_s[32];
    _cleanup_free_ uint8_t *der = NULL;
    size_t len = 0;
    int r;
    if ((r = sign(ctx, tbs, (size_t)tbs_len, sig_r, sig_s, err)) < 0 ||
        (r = assemble_cert(tbs, (size_t)tbs_len, sig_r, sig_s, &der, &len, err)) < 0)
        return r;
    const unsigned char *p = der;
    _cleanup_(x509_freep) X509 *check = d2i_X509(NULL, &p, (long)len);
    if (!check || p != der + len || X509_verify(check, issuer_key) != 1) {
        snprintf(msg, sizeof(msg), "the TPM's signature of the %s does not verify", what);
        return ossl_err(err, EIO, msg);
    }
    *ret_der = steal_ptr(der);
    *ret_len = len;
    return 0;
}

int certified_key_pem(const struct certified_key *k, const char *ak_chain, size_t ak_chain_len, char **ret_pem,
                      size_t *ret_len, tm_err *err)
{
    uint8_t pub_buf[sizeof(TPMT_PUBLIC)];
    size_t pub_len = 0;
    if (Tss2_MU_TPMT_PUBLIC_Marshal(k->pub, pub_buf, sizeof(pub_buf), &pub_len) != TSS2_RC_SUCCESS)
        return tm_err_set(err, EIO, "cannot marshal the %s", k->what);
    _cleanup_(bio_freep) BIO *bio = BIO_new(BIO_s_mem());
    if (!bio || PEM_write_bio_X509_REQ(bio, k->req) != 1 ||
        PEM_write_bio(bio, k->public_label, "", pub_buf, (long)pub_len) <= 0 ||
        PEM_write_bio(bio, k->attest_label, "", k->attest, (long)k->attest_len) <= 0 ||
        PEM_write_bio(bio, k->sig_label, "", k->sig, (long)k->sig_len) <= 0 ||
        BIO_write(bio, ak_chain, (int)ak_chain_len) != (int)ak_chain_len)
        return ossl_err(err, ENOMEM, "cannot encode the certificate request");
    return bio_take(bio, ret_pem, ret_len, err);
}
