/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The Device CA's check of a vTPM-issuing key's request (docs/VTPM.md "EK certificates"): the
 * key is certified only when the device's AK, which this Device CA certified through credential
 * activation, vouches (TPM2_Certify) that it is a TPM key that cannot leave the TPM, made for
 * signing and nothing else, and that it is this request's key. */
#include <errno.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <string.h>
#include <tss2/tss2_mu.h>

#include "cleanup.h"
#include "crypto.h"
#include "enrollment.h"
#include "pem_blocks.h"
#include "pki.h"

#define ISSUER_ATTRIBUTES                                                                                          \
    (TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH | \
     TPMA_OBJECT_NODA | TPMA_OBJECT_SIGN_ENCRYPT)

struct issuer_bundle {
    X509_REQ *csr;
    uint8_t pub_raw[sizeof(TPMT_PUBLIC)];
    size_t pub_len;
    TPMT_PUBLIC pub;
    uint8_t attest[sizeof(TPMS_ATTEST)];
    size_t attest_len;
    TPMT_SIGNATURE sig;
    bool have_sig;
    STACK_OF(X509) * ak_chain;
};

static void bundle_free(struct issuer_bundle *b)
{
    X509_REQ_free(b->csr);
    sk_X509_pop_free(b->ak_chain, X509_free);
}

static int take_block(const char *name, unsigned char **data, long n, void *userdata, tm_err *err)
{
    struct issuer_bundle *b = userdata;
    const unsigned char *p = *data;
    size_t off = 0;
    if (strcmp(name, PEM_STRING_X509_REQ) == 0 && !b->csr) {
        if (!(b->csr = d2i_X509_REQ(NULL, &p, n)) || p != *data + n)
            return ossl_fail(err, EINVAL, "the certificate request does not parse");
    } else if (strcmp(name, VTPM_ISSUER_PEM_PUBLIC) == 0 && !b->pub_len) {
        if (n <= 0 || n > (long)sizeof(b->pub_raw) ||
            Tss2_MU_TPMT_PUBLIC_Unmarshal(*data, (size_t)n, &off, &b->pub) != TSS2_RC_SUCCESS || off != (size_t)n)
            return tm_err_set(err, EINVAL, "the issuing key's public area is not a TPMT_PUBLIC");
        memcpy(b->pub_raw, *data, (size_t)n);
        b->pub_len = (size_t)n;
    } else if (strcmp(name, VTPM_ISSUER_PEM_ATTEST) == 0 && !b->attest_len) {
        if (n <= 0 || n > (long)sizeof(b->attest))
            return tm_err_set(err, EINVAL, "the certification is too long");
        memcpy(b->attest, *data, (size_t)n);
        b->attest_len = (size_t)n;
    } else if (strcmp(name, VTPM_ISSUER_PEM_SIGNATURE) == 0 && !b->have_sig) {
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

/* The ECDSA P-256 point of a key as 32-byte x and y. */
static int point_of(EVP_PKEY *k, uint8_t x[32], uint8_t y[32])
{
    uint8_t buf[65];
    size_t len = 0;
    if (EVP_PKEY_get_octet_string_param(k, "encoded-pub-key", buf, sizeof(buf), &len) != 1 || len != 65 ||
        buf[0] != 0x04) {
        ERR_clear_error();
        return -1;
    }
    memcpy(x, buf + 1, 32);
    memcpy(y, buf + 33, 32);
    return 0;
}

static bool same_point(EVP_PKEY *k, const TPMS_ECC_POINT *pt)
{
    uint8_t x[32], y[32], tx[32] = {0}, ty[32] = {0};
    if (point_of(k, x, y) < 0 || pt->x.size > 32 || pt->y.size > 32)
        return false;
    memcpy(tx + 32 - pt->x.size, pt->x.buffer, pt->x.size);
    memcpy(ty + 32 - pt->y.size, pt->y.buffer, pt->y.size);
    return memcmp(x, tx, 32) == 0 && memcmp(y, ty, 32) == 0;
}

/* The TPM's ECDSA signature over SHA-256(attest) verifies with the AK certificate's key. */
static int check_signature(const struct issuer_bundle *b, X509 *ak_cert, tm_err *err)
{
    if (b->sig.sigAlg != TPM2_ALG_ECDSA || b->sig.signature.ecdsa.hash != TPM2_ALG_SHA256)
        return tm_err_set(err, EKEYREJECTED, "the certification is not an ECDSA SHA-256 signature");
    const TPMS_SIGNATURE_ECC *e = &b->sig.signature.ecdsa;
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(e->signatureR.buffer, e->signatureR.size, NULL);
    BIGNUM *s = BN_bin2bn(e->signatureS.buffer, e->signatureS.size, NULL);
    if (!sig || !r || !s || ECDSA_SIG_set0(sig, r, s) != 1) {
        ECDSA_SIG_free(sig);
        BN_free(r);
        BN_free(s);
        return tm_err_set(err, ENOMEM, "out of memory");
    }
    unsigned char *der = NULL;
    int der_len = i2d_ECDSA_SIG(sig, &der);
    ECDSA_SIG_free(sig);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = der_len > 0 && ctx &&
             EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, X509_get0_pubkey(ak_cert)) == 1 &&
             EVP_DigestVerify(ctx, der, (size_t)der_len, b->attest, b->attest_len) == 1;
    EVP_MD_CTX_free(ctx);
    OPENSSL_free(der);
    ERR_clear_error();
    if (!ok)
        return tm_err_set(err, EKEYREJECTED, "the certification's signature does not verify with the AK certificate");
    return 0;
}

int vtpm_issuer_check(const char *path, X509 *device_ca, X509_REQ **ret_req, tm_err *err)
{
    _cleanup_(bundle_free) struct issuer_bundle b = {0};
    _cleanup_(BIO_freep) BIO *in = BIO_new_file(path, "r");
    if (!in)
        return ossl_fail(err, ENOENT, "cannot open %s", path);
    if (!(b.ak_chain = sk_X509_new_null()))
        return tm_err_set(err, ENOMEM, "out of memory");
    if (tm_pem_each_block(in, 16, take_block, &b, err) < 0)
        return tm_err_prefix(err, "%s", path);
    if (!b.csr || !b.pub_len || !b.attest_len || !b.have_sig || sk_X509_num(b.ak_chain) == 0)
        return tm_err_set(err, EKEYREJECTED,
                          "%s is not a vTPM-issuer request (`trustme device csr --vtpm-issuer`: the request, the "
                          "key's public area, its certification by the AK and the AK's certificate)",
                          path);
    EVP_PKEY *req_key = X509_REQ_get0_pubkey(b.csr);
    if (!req_key || X509_REQ_verify(b.csr, req_key) != 1) {
        ERR_clear_error();
        return tm_err_set(err, EKEYREJECTED, "the request's self-signature does not verify");
    }
    /* The AK certificate: issued by this Device CA and valid now. Its AK was enrolled through
     * credential activation, so its certifications speak for a TPM this CA already trusts. */
    X509 *ak_cert = sk_X509_value(b.ak_chain, 0);
    if (X509_NAME_cmp(X509_get_issuer_name(ak_cert), X509_get_subject_name(device_ca)) != 0 ||
        X509_verify(ak_cert, X509_get0_pubkey(device_ca)) != 1) {
        ERR_clear_error();
        return tm_err_set(err, EKEYREJECTED, "the AK certificate in the request was not issued by this Device CA");
    }
    if (X509_cmp_current_time(X509_get0_notBefore(ak_cert)) >= 0 ||
        X509_cmp_current_time(X509_get0_notAfter(ak_cert)) <= 0)
        return tm_err_set(err, EKEYREJECTED, "the AK certificate in the request is not valid now");
    int r = check_signature(&b, ak_cert, err);
    if (r < 0)
        return r;
    TPMS_ATTEST a = {0};
    size_t off = 0;
    if (Tss2_MU_TPMS_ATTEST_Unmarshal(b.attest, b.attest_len, &off, &a) != TSS2_RC_SUCCESS || off != b.attest_len ||
        a.magic != TPM2_GENERATED_VALUE || a.type != TPM2_ST_ATTEST_CERTIFY)
        return tm_err_set(err, EKEYREJECTED, "the certification is not a TPM2_Certify by the AK");
    /* Made for this request: a certification of the key for another request does not do. */
    unsigned char *der = NULL;
    int der_len = i2d_X509_REQ(b.csr, &der);
    uint8_t digest[32];
    if (der_len <= 0 || EVP_Digest(der, (size_t)der_len, digest, NULL, EVP_sha256(), NULL) != 1) {
        OPENSSL_free(der);
        return tm_err_set(err, ENOMEM, "cannot encode the request");
    }
    OPENSSL_free(der);
    if (a.extraData.size != 32 || memcmp(a.extraData.buffer, digest, 32) != 0)
        return tm_err_set(err, EKEYREJECTED, "the certification was not made for this request");
    uint8_t name[34] = {TPM2_ALG_SHA256 >> 8, TPM2_ALG_SHA256 & 0xff};
    if (EVP_Digest(b.pub_raw, b.pub_len, name + 2, NULL, EVP_sha256(), NULL) != 1)
        return tm_err_set(err, ENOMEM, "SHA-256 failed");
    if (a.attested.certify.name.size != sizeof(name) || memcmp(a.attested.certify.name.name, name, sizeof(name)) != 0)
        return tm_err_set(err, EKEYREJECTED, "the AK certified another key than the public area in the request");
    const TPMT_PUBLIC *p = &b.pub;
    if (p->type != TPM2_ALG_ECC || p->nameAlg != TPM2_ALG_SHA256 ||
        p->parameters.eccDetail.curveID != TPM2_ECC_NIST_P256)
        return tm_err_set(err, EKEYREJECTED, "the issuing key is not an ECC P-256 key with nameAlg SHA-256");
    if (p->objectAttributes != ISSUER_ATTRIBUTES || p->authPolicy.size != 0)
        return tm_err_set(err, EKEYREJECTED,
                          "the issuing key's attributes (0x%08x, %s policy) are not those of a key that cannot "
                          "leave its TPM and only signs (fixedTPM fixedParent sensitiveDataOrigin userWithAuth "
                          "noDA sign, no policy)",
                          p->objectAttributes, p->authPolicy.size ? "a" : "no");
    if (!same_point(req_key, &p->unique.ecc))
        return tm_err_set(err, EKEYREJECTED, "the request's key is not the certified issuing key");
    *ret_req = steal_ptr(b.csr);
    return 0;
}
