/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "migrate_offer.h"

#include <errno.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>
#include <string.h>
#include <tss2/tss2_mu.h>

#include "crypto.h"
#include "tpm_parse.h"
#include "tpm_policy.h"

#define KEY_ATTRS                                                                                          \
    (TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_NODA | \
     TPMA_OBJECT_DECRYPT)

static int fail(tm_err *err, const char *why)
{
    return tm_err_set(err, EKEYREJECTED, "migration key certification: %s", why);
}

static EVP_PKEY *rsa_key(const TPMT_PUBLIC *p)
{
    BIGNUM *n = BN_bin2bn(p->unique.rsa.buffer, p->unique.rsa.size, NULL), *e = BN_new();
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    uint32_t exp = p->parameters.rsaDetail.exponent ? p->parameters.rsaDetail.exponent : 65537;
    if (n && e && bld && BN_set_word(e, exp) == 1 && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) == 1 &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) == 1)
        params = OSSL_PARAM_BLD_to_param(bld);
    OSSL_PARAM_BLD_free(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    EVP_PKEY *pkey = NULL;
    if (!(params && ctx && EVP_PKEY_fromdata_init(ctx) > 0 &&
          EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) > 0))
        pkey = NULL;
    OSSL_PARAM_free(params);
    EVP_PKEY_CTX_free(ctx);
    BN_free(n);
    BN_free(e);
    return pkey;
}

static int spki(EVP_PKEY *k, uint8_t *out, size_t size, size_t *ret_len)
{
    int n = i2d_PUBKEY(k, NULL);
    if (n <= 0 || (size_t)n > size)
        return -1;
    uint8_t *p = out;
    i2d_PUBKEY(k, &p);
    *ret_len = (size_t)n;
    return 0;
}

int migrate_offer_check(const Trustme__Attest__Quote *q, const uint8_t *key_public, size_t key_public_len,
                        const uint8_t *certify_attest, size_t certify_attest_len, const uint8_t *certify_sig,
                        size_t certify_sig_len, const uint8_t *nonce, size_t nonce_len, struct migrate_offer_key *ret,
                        tm_err *err)
{
    *ret = (struct migrate_offer_key){0};
    if (!q->has_ak_public || !key_public || !certify_attest || !certify_sig)
        return fail(err, "the offer lacks the AK, the key or its certification");
    EVP_PKEY *ak = NULL;
    tm_err e = {0};
    if (tpm_ak_public(q->ak_public.data, q->ak_public.len, &ak, &e) < 0) {
        EVP_PKEY_free(ak);
        return fail(err, "the quote's AK does not parse");
    }
    ret->ak_name[0] = 0x00;
    ret->ak_name[1] = 0x0b;
    tm_sha256(q->ak_public.data, q->ak_public.len, ret->ak_name + 2);
    int r = spki(ak, ret->ak_spki, sizeof(ret->ak_spki), &ret->ak_spki_len);

    /* The AK signed the certification. */
    uint8_t der[TPM_ECDSA_DER_MAX];
    size_t der_len = 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    bool sig_ok = r == 0 && tpm_signature_der(certify_sig, certify_sig_len, der, &der_len, &e) == 0 && md &&
                  EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, ak) == 1 &&
                  EVP_DigestVerify(md, der, der_len, certify_attest, certify_attest_len) == 1;
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(ak);
    if (!sig_ok)
        return fail(err, "the AK's signature over it does not verify");

    TPMS_ATTEST a;
    if (tpm_attest_parse(certify_attest, certify_attest_len, &a, &e) < 0 || a.magic != TPM2_GENERATED_VALUE ||
        a.type != TPM2_ST_ATTEST_CERTIFY)
        return fail(err, "not a TPM2_Certify by the TPM");
    if (a.extraData.size != nonce_len || memcmp(a.extraData.buffer, nonce, nonce_len) != 0)
        return fail(err, "it is not over the source's nonce (a replayed offer)");

    TPM2B_PUBLIC pub = {0};
    size_t off = 0;
    if (key_public_len < 2 ||
        Tss2_MU_TPM2B_PUBLIC_Unmarshal(key_public, key_public_len, &off, &pub) != TSS2_RC_SUCCESS ||
        off != key_public_len)
        return fail(err, "the key's public area does not parse");
    uint8_t name[34] = {0x00, 0x0b};
    tm_sha256(key_public + 2, key_public_len - 2, name + 2);
    const TPM2B_NAME *certified = &a.attested.certify.name;
    if (certified->size != sizeof(name) || memcmp(certified->name, name, sizeof(name)) != 0)
        return fail(err, "it certifies another key");
    const TPMT_PUBLIC *p = &pub.publicArea;
    if (p->type != TPM2_ALG_RSA || p->nameAlg != TPM2_ALG_SHA256 || p->objectAttributes != KEY_ATTRS ||
        p->parameters.rsaDetail.keyBits != 2048 || p->unique.rsa.size != 256 ||
        p->parameters.rsaDetail.scheme.scheme != TPM2_ALG_OAEP ||
        p->parameters.rsaDetail.scheme.details.oaep.hashAlg != TPM2_ALG_SHA256 ||
        p->parameters.rsaDetail.symmetric.algorithm != TPM2_ALG_NULL)
        return fail(err, "the key is not a decrypt-only RSA-2048 OAEP key that stays in its TPM");
    /* Usable only with a PCR value the (verified) quote shows. */
    bool policy_ok = false;
    for (size_t i = 0; i < q->n_pcrs && !policy_ok; i++) {
        const Trustme__Attest__PcrValue *v = q->pcrs[i];
        if (!v->has_index || !v->has_sha256 || v->sha256.len != 32 || v->index >= 24)
            continue;
        uint8_t want[32];
        tm_policy_pcr_sha256(v->index, v->sha256.data, want);
        policy_ok = p->authPolicy.size == 32 && memcmp(p->authPolicy.buffer, want, 32) == 0;
    }
    if (!policy_ok)
        return fail(err, "the key's policy is not PolicyPCR on a quoted PCR's value");
    EVP_PKEY *k = rsa_key(p);
    r = k ? spki(k, ret->wrap_spki, sizeof(ret->wrap_spki), &ret->wrap_spki_len) : -1;
    EVP_PKEY_free(k);
    return r == 0 ? 0 : fail(err, "the key does not convert");
}
