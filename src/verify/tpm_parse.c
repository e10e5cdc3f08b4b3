/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "tpm_parse.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <pthread.h>
#include <string.h>
#include <tss2/tss2_mu.h>

#include "ossl.h"

OSSL_DEFINE_FREEP(EVP_PKEY_CTX, EVP_PKEY_CTX_free)
OSSL_DEFINE_FREEP(ECDSA_SIG, ECDSA_SIG_free)
OSSL_DEFINE_FREEP(BIGNUM, BN_free)

int tpm_attest_parse(const uint8_t *buf, size_t len, TPMS_ATTEST *ret, tm_err *err)
{
    if (!buf || len == 0)
        return tm_err_set(err, EINVAL, "no TPMS_ATTEST");
    TPMS_ATTEST a;
    size_t off = 0;
    memset(&a, 0, sizeof(a));
    if (Tss2_MU_TPMS_ATTEST_Unmarshal(buf, len, &off, &a) != TSS2_RC_SUCCESS)
        return tm_err_set(err, EINVAL, "TPMS_ATTEST (%zu bytes) is malformed", len);
    if (off != len)
        return tm_err_set(err, EINVAL, "TPMS_ATTEST has %zu bytes after its end", len - off);
    *ret = a;
    return 0;
}

int tpm_signature_der(const uint8_t *buf, size_t len, uint8_t der[TPM_ECDSA_DER_MAX], size_t *ret_len, tm_err *err)
{
    if (!buf || len == 0)
        return tm_err_set(err, EINVAL, "no TPMT_SIGNATURE");
    TPMT_SIGNATURE s;
    size_t off = 0;
    memset(&s, 0, sizeof(s));
    if (Tss2_MU_TPMT_SIGNATURE_Unmarshal(buf, len, &off, &s) != TSS2_RC_SUCCESS)
        return tm_err_set(err, EINVAL, "TPMT_SIGNATURE (%zu bytes) is malformed", len);
    if (off != len)
        return tm_err_set(err, EINVAL, "TPMT_SIGNATURE has %zu bytes after its end", len - off);
    if (s.sigAlg != TPM2_ALG_ECDSA || s.signature.ecdsa.hash != TPM2_ALG_SHA256)
        return tm_err_set(err, EINVAL,
                          "signature algorithm 0x%04x hash 0x%04x: ECDSA (0x%04x) "
                          "with SHA-256 (0x%04x) expected",
                          s.sigAlg, s.sigAlg == TPM2_ALG_ECDSA ? s.signature.ecdsa.hash : 0, TPM2_ALG_ECDSA,
                          TPM2_ALG_SHA256);
    const TPM2B_ECC_PARAMETER *r = &s.signature.ecdsa.signatureR, *sv = &s.signature.ecdsa.signatureS;
    if (r->size == 0 || r->size > 32 || sv->size == 0 || sv->size > 32)
        return tm_err_set(err, EINVAL, "ECDSA signature r/s of %u/%u bytes: 1..32 expected", r->size, sv->size);
    _cleanup_(ECDSA_SIG_freep) ECDSA_SIG *sig = ECDSA_SIG_new();
    _cleanup_(BN_freep) BIGNUM *br = BN_bin2bn(r->buffer, r->size, NULL);
    _cleanup_(BN_freep) BIGNUM *bs = BN_bin2bn(sv->buffer, sv->size, NULL);
    if (!sig || !br || !bs || ECDSA_SIG_set0(sig, br, bs) != 1)
        return ossl_fail(err, ENOMEM, "out of memory");
    br = bs = NULL; /* owned by sig now */
    unsigned char *p = der;
    int n = i2d_ECDSA_SIG(sig, NULL);
    if (n <= 0 || n > TPM_ECDSA_DER_MAX || i2d_ECDSA_SIG(sig, &p) != n)
        return ossl_fail(err, EINVAL, "cannot encode the ECDSA signature");
    *ret_len = (size_t)n;
    return 0;
}

/* Keys made from points before, by the point's exact bytes: a verifier sees the same devices'
 * AKs again and again, and making an EVP_PKEY (the group, the point's decoding and curve check)
 * costs about a fifth of a whole check. The same bytes always make the same key; a point that
 * failed is not kept. Locked: the fleet's worker threads share it. */
#define AK_KEYS_CACHED 128
static struct {
    uint8_t pub[65];
    EVP_PKEY *key;
    uint64_t used;
} ak_keys[AK_KEYS_CACHED];
static uint64_t ak_keys_tick;
static pthread_mutex_t ak_keys_lock = PTHREAD_MUTEX_INITIALIZER;

static EVP_PKEY *ak_key_cached(const uint8_t pub[65])
{
    EVP_PKEY *key = NULL;
    pthread_mutex_lock(&ak_keys_lock);
    for (size_t i = 0; i < AK_KEYS_CACHED && !key; i++)
        if (ak_keys[i].key && memcmp(ak_keys[i].pub, pub, 65) == 0 && EVP_PKEY_up_ref(ak_keys[i].key) == 1) {
            key = ak_keys[i].key;
            ak_keys[i].used = ++ak_keys_tick;
        }
    pthread_mutex_unlock(&ak_keys_lock);
    return key;
}

static void ak_key_keep(const uint8_t pub[65], EVP_PKEY *key)
{
    if (EVP_PKEY_up_ref(key) != 1)
        return;
    pthread_mutex_lock(&ak_keys_lock);
    size_t slot = 0;
    for (size_t i = 0; i < AK_KEYS_CACHED; i++) {
        if (!ak_keys[i].key) {
            slot = i;
            break;
        }
        if (ak_keys[i].used < ak_keys[slot].used)
            slot = i;
    }
    EVP_PKEY_free(ak_keys[slot].key);
    memcpy(ak_keys[slot].pub, pub, 65);
    ak_keys[slot].key = key;
    ak_keys[slot].used = ++ak_keys_tick;
    pthread_mutex_unlock(&ak_keys_lock);
}

static int ecc_key(const TPMS_ECC_POINT *pt, EVP_PKEY **ret, tm_err *err)
{
    if (pt->x.size == 0 || pt->x.size > 32 || pt->y.size == 0 || pt->y.size > 32)
        return tm_err_set(err, EINVAL, "AK public point x/y of %u/%u bytes: 1..32 expected", pt->x.size, pt->y.size);
    /* An uncompressed point; TPM2B integers may have their leading zero bytes dropped. */
    uint8_t pub[65] = {0x04};
    memcpy(pub + 1 + 32 - pt->x.size, pt->x.buffer, pt->x.size);
    memcpy(pub + 33 + 32 - pt->y.size, pt->y.buffer, pt->y.size);
    if ((*ret = ak_key_cached(pub)))
        return 0;
    char group[] = SN_X9_62_prime256v1;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0),
                           OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub)),
                           OSSL_PARAM_construct_end()};
    _cleanup_(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *key = NULL;
    /* fromdata decodes the point with EC_POINT_oct2point, which refuses one off the curve. */
    if (!ctx || EVP_PKEY_fromdata_init(ctx) != 1 || EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) != 1)
        return ossl_fail(err, EINVAL, "the AK public point is not on P-256");
    ak_key_keep(pub, key);
    *ret = key;
    return 0;
}

int tpm_ak_public(const uint8_t *buf, size_t len, EVP_PKEY **ret_key, tm_err *err)
{
    if (!buf || len == 0)
        return tm_err_set(err, EINVAL, "the device sent no AK public key");
    TPMT_PUBLIC p;
    size_t off = 0;
    memset(&p, 0, sizeof(p));
    if (Tss2_MU_TPMT_PUBLIC_Unmarshal(buf, len, &off, &p) != TSS2_RC_SUCCESS)
        return tm_err_set(err, EINVAL, "the AK's TPMT_PUBLIC (%zu bytes) is malformed", len);
    if (off != len)
        return tm_err_set(err, EINVAL, "the AK's TPMT_PUBLIC has %zu bytes after its end", len - off);
    if (p.type != TPM2_ALG_ECC)
        return tm_err_set(err, EKEYREJECTED, "the AK is of type 0x%04x, not ECC", p.type);
    const TPMS_ECC_PARMS *ecc = &p.parameters.eccDetail;
    if (ecc->curveID != TPM2_ECC_NIST_P256)
        return tm_err_set(err, EKEYREJECTED, "the AK is on curve 0x%04x, not NIST P-256", ecc->curveID);
    int r = ecc_key(&p.unique.ecc, ret_key, err);
    if (r < 0)
        return r;
    /* A restricted signing key is what makes a quote evidence: the TPM signs with it only
     * digests of data it built itself (TPM_GENERATED_VALUE), so nobody can present a forged
     * TPMS_ATTEST signed by it. fixedTPM: the key cannot have been duplicated out of the TPM. */
    static const struct {
        TPMA_OBJECT bit;
        const char *name;
    } required[] = {
        {TPMA_OBJECT_FIXEDTPM, "fixedTPM"}, {TPMA_OBJECT_RESTRICTED, "restricted"}, {TPMA_OBJECT_SIGN_ENCRYPT, "sign"}};
    for (size_t i = 0; i < ARRAY_SIZE(required); i++)
        if (!(p.objectAttributes & required[i].bit))
            return tm_err_set(err, EKEYREJECTED, "the AK's objectAttributes (0x%08x) lack %s", p.objectAttributes,
                              required[i].name);
    if (p.objectAttributes & TPMA_OBJECT_DECRYPT)
        return tm_err_set(err, EKEYREJECTED,
                          "the AK's objectAttributes (0x%08x) include decrypt: "
                          "not a signing-only key",
                          p.objectAttributes);
    if (p.nameAlg != TPM2_ALG_SHA256)
        return tm_err_set(err, EKEYREJECTED, "the AK's nameAlg is 0x%04x, not SHA-256", p.nameAlg);
    if (ecc->scheme.scheme != TPM2_ALG_ECDSA || ecc->scheme.details.ecdsa.hashAlg != TPM2_ALG_SHA256)
        return tm_err_set(err, EKEYREJECTED, "the AK's scheme is 0x%04x, not ECDSA with SHA-256", ecc->scheme.scheme);
    return 0;
}
