/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "certified_key.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <string.h>
#include <tss2/tss2_mu.h>

#include "cleanup.h"
#include "pem_blocks.h"

struct bundle {
    const struct certified_key_format *f;
    X509_REQ *csr;
    TPMT_PUBLIC pub;
    uint8_t pub_raw[sizeof(TPMT_PUBLIC)];
    size_t pub_len;
    TPMS_ATTEST attest;
    uint8_t attest_raw[sizeof(TPMS_ATTEST)];
    size_t attest_len;
    TPMT_SIGNATURE sig;
    bool have_sig;
    STACK_OF(X509) * ak_chain;
};

static void bundle_free(struct bundle *b)
{
    X509_REQ_free(b->csr);
    sk_X509_pop_free(b->ak_chain, X509_free);
}

static inline void sig_freep(ECDSA_SIG **s)
{
    ECDSA_SIG_free(*s);
}
static inline void osslfreep(unsigned char **p)
{
    OPENSSL_free(*p);
}

static int take_block(const char *name, unsigned char **data, long n, void *userdata, tm_err *err)
{
    struct bundle *b = userdata;
    const unsigned char *p = *data;
    size_t off = 0;
    if (strcmp(name, PEM_STRING_X509_REQ) == 0 && !b->csr) {
        if (!(b->csr = d2i_X509_REQ(NULL, &p, n)) || p != *data + n)
            return ossl_fail(err, EINVAL, "the certificate request does not parse");
    } else if (strcmp(name, b->f->public_label) == 0 && !b->pub_len) {
        if (n <= 0 || n > (long)sizeof(b->pub_raw) ||
            Tss2_MU_TPMT_PUBLIC_Unmarshal(*data, (size_t)n, &off, &b->pub) != TSS2_RC_SUCCESS || off != (size_t)n)
            return tm_err_set(err, EINVAL, "the key's public area is not a TPMT_PUBLIC");
        memcpy(b->pub_raw, *data, (size_t)n);
        b->pub_len = (size_t)n;
    } else if (strcmp(name, b->f->attest_label) == 0 && !b->attest_len) {
        if (n <= 0 || n > (long)sizeof(b->attest_raw) ||
            Tss2_MU_TPMS_ATTEST_Unmarshal(*data, (size_t)n, &off, &b->attest) != TSS2_RC_SUCCESS || off != (size_t)n)
            return tm_err_set(err, EINVAL, "the certification is not a TPMS_ATTEST");
        memcpy(b->attest_raw, *data, (size_t)n);
        b->attest_len = (size_t)n;
    } else if (strcmp(name, b->f->sig_label) == 0 && !b->have_sig) {
        if (n <= 0 || Tss2_MU_TPMT_SIGNATURE_Unmarshal(*data, (size_t)n, &off, &b->sig) != TSS2_RC_SUCCESS ||
            off != (size_t)n)
            return tm_err_set(err, EINVAL, "the certification's signature is not a TPMT_SIGNATURE");
        b->have_sig = true;
    } else if (strcmp(name, PEM_STRING_X509) == 0) {
        X509 *x = d2i_X509(NULL, &p, n);
        if (!x || p != *data + n || !sk_X509_push(b->ak_chain, x)) {
            X509_free(x);
            return ossl_fail(err, EINVAL, "a certificate does not parse");
        }
    } else {
        return tm_err_set(err, EINVAL, "unexpected PEM block \"%s\"", name);
    }
    return 0;
}

/* k is a P-256 key whose point is pt (each coordinate left-padded to 32 bytes). */
static bool same_point(EVP_PKEY *k, const TPMS_ECC_POINT *pt)
{
    uint8_t buf[65], tx[32] = {0}, ty[32] = {0};
    size_t len = 0;
    char group[64] = "";
    if (EVP_PKEY_get_base_id(k) != EVP_PKEY_EC || EVP_PKEY_get_group_name(k, group, sizeof(group), &len) != 1 ||
        strcmp(group, "prime256v1") != 0 ||
        EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, buf, sizeof(buf), &len) != 1 ||
        len != 65 || buf[0] != 0x04 || pt->x.size > 32 || pt->y.size > 32) {
        ERR_clear_error();
        return false;
    }
    memcpy(tx + 32 - pt->x.size, pt->x.buffer, pt->x.size);
    memcpy(ty + 32 - pt->y.size, pt->y.buffer, pt->y.size);
    return memcmp(buf + 1, tx, 32) == 0 && memcmp(buf + 33, ty, 32) == 0;
}

/* The AK certificate: issued by this Device CA, valid now, an end entity. Its AK was enrolled
 * through credential activation, so its certifications speak for a TPM this CA already trusts. */
static int check_ak_cert(X509 *ak_cert, X509 *device_ca, tm_err *err)
{
    _cleanup_(X509_STORE_freep) X509_STORE *store = X509_STORE_new();
    _cleanup_(X509_STORE_CTX_freep) X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    if (!store || !ctx || X509_STORE_add_cert(store, device_ca) != 1 ||
        X509_STORE_CTX_init(ctx, store, ak_cert, NULL) != 1)
        return ossl_fail(err, ENOMEM, "cannot check the AK certificate");
    X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_X509_STRICT | X509_V_FLAG_PARTIAL_CHAIN);
    if (X509_verify_cert(ctx) != 1)
        return tm_err_set(err, EKEYREJECTED, "the AK certificate was not issued by this Device CA: %s",
                          X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
    ERR_clear_error();
    if (X509_check_ca(ak_cert) != 0)
        return tm_err_set(err, EKEYREJECTED, "the AK certificate is a CA certificate");
    return 0;
}

/* The AK's ECDSA signature over the TPMS_ATTEST, with the AK certificate's key. */
static int check_certify_sig(const struct bundle *b, EVP_PKEY *ak, tm_err *err)
{
    const TPMT_SIGNATURE *s = &b->sig;
    if (s->sigAlg != TPM2_ALG_ECDSA || s->signature.ecdsa.hash != TPM2_ALG_SHA256 ||
        s->signature.ecdsa.signatureR.size > 32 || s->signature.ecdsa.signatureS.size > 32)
        return tm_err_set(err, EKEYREJECTED, "the certification is not signed with ECDSA SHA-256");
    _cleanup_(sig_freep) ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(s->signature.ecdsa.signatureR.buffer, s->signature.ecdsa.signatureR.size, NULL);
    BIGNUM *sv = BN_bin2bn(s->signature.ecdsa.signatureS.buffer, s->signature.ecdsa.signatureS.size, NULL);
    if (!sig || !r || !sv || ECDSA_SIG_set0(sig, r, sv) != 1) {
        BN_free(r);
        BN_free(sv);
        return tm_err_set(err, ENOMEM, "out of memory");
    }
    _cleanup_(osslfreep) unsigned char *der = NULL;
    int der_len = i2d_ECDSA_SIG(sig, &der);
    _cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (der_len <= 0 || !md || EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, ak) != 1 ||
        EVP_DigestVerify(md, der, (size_t)der_len, b->attest_raw, b->attest_len) != 1) {
        ERR_clear_error();
        return tm_err_set(err, EKEYREJECTED,
                          "the certification of the key is not signed by the attestation key of the bundle's AK "
                          "certificate");
    }
    return 0;
}

static int check(struct bundle *b, X509 *device_ca, tm_err *err)
{
    if (!b->csr || !b->pub_len || !b->attest_len || !b->have_sig || sk_X509_num(b->ak_chain) == 0)
        return tm_err_set(err, EKEYREJECTED, "%s", b->f->not_a_bundle);
    X509 *ak_cert = sk_X509_value(b->ak_chain, 0);
    int r = check_ak_cert(ak_cert, device_ca, err);
    if (r < 0)
        return r;
    EVP_PKEY *ak = X509_get0_pubkey(ak_cert);
    if (!ak)
        return tm_err_set(err, EKEYREJECTED, "the AK certificate's key cannot be read");
    if ((r = check_certify_sig(b, ak, err)) < 0)
        return r;
    /* What the AK certified: this public area (its name), for this request. */
    const TPMS_ATTEST *a = &b->attest;
    uint8_t name[34] = {TPM2_ALG_SHA256 >> 8, TPM2_ALG_SHA256 & 0xff}, req_hash[32];
    _cleanup_(osslfreep) unsigned char *der = NULL;
    int der_len = b->f->qualify_whole_request ? i2d_X509_REQ(b->csr, &der) : i2d_re_X509_REQ_tbs(b->csr, &der);
    if (der_len <= 0 || EVP_Digest(b->pub_raw, b->pub_len, name + 2, NULL, EVP_sha256(), NULL) != 1 ||
        EVP_Digest(der, (size_t)der_len, req_hash, NULL, EVP_sha256(), NULL) != 1)
        return ossl_fail(err, EIO, "SHA-256 failed");
    if (a->magic != TPM2_GENERATED_VALUE || a->type != TPM2_ST_ATTEST_CERTIFY)
        return tm_err_set(err, EKEYREJECTED, "the certification is not a TPM2_Certify");
    if (a->attested.certify.name.size != sizeof(name) || memcmp(a->attested.certify.name.name, name, sizeof(name)))
        return tm_err_set(err, EKEYREJECTED, "the AK certified another key than the bundle's public area");
    if (a->extraData.size != 32 || memcmp(a->extraData.buffer, req_hash, 32) != 0)
        return tm_err_set(err, EKEYREJECTED, "the certification was not made for this request but another request");
    const TPMT_PUBLIC *p = &b->pub;
    if (p->type != TPM2_ALG_ECC || p->nameAlg != TPM2_ALG_SHA256 ||
        p->parameters.eccDetail.curveID != TPM2_ECC_NIST_P256)
        return tm_err_set(err, EKEYREJECTED, "the certified key is not an ECC P-256 key with nameAlg SHA-256");
    EVP_PKEY *csr_key = X509_REQ_get0_pubkey(b->csr);
    if (!csr_key || X509_REQ_verify(b->csr, csr_key) != 1) {
        ERR_clear_error();
        return tm_err_set(err, EKEYREJECTED, "the request's self-signature does not verify");
    }
    if (!same_point(csr_key, &p->unique.ecc))
        return tm_err_set(err, EKEYREJECTED, "the request's key is not the certified TPM key");
    if (X509_NAME_entry_count(X509_REQ_get_subject_name(b->csr)) == 0)
        return tm_err_set(err, EINVAL, "the request's subject is empty");
    return 0;
}

int certified_key_read(const char *path, const struct certified_key_format *f, X509 *device_ca, X509_REQ **ret_req,
                       TPMT_PUBLIC *ret_pub, tm_err *err)
{
    _cleanup_(bundle_free) struct bundle b = {.f = f, .ak_chain = sk_X509_new_null()};
    _cleanup_(BIO_freep) BIO *in = BIO_new_file(path, "r");
    if (!b.ak_chain || !in)
        return ossl_fail(err, ENOENT, "cannot open %s", path);
    if (tm_pem_each_block(in, 16, take_block, &b, err) < 0 || check(&b, device_ca, err) < 0)
        return tm_err_prefix(err, "%s", path);
    *ret_pub = b.pub;
    *ret_req = steal_ptr(b.csr);
    return 0;
}
