/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The keystore's EC and RSA keys as PKCS#11 objects: a private key (sensitive, never
 * extractable: only its public parts are attributes) and its public key, both with the alias as
 * CKA_LABEL and CKA_ID. The public parts come from the keystore's export_public_key. */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "p11.h"

struct p11_key p11_keys[P11_MAX_KEYS];

/* CKA_EC_PARAMS: the namedCurve OID, DER (RFC 5480). */
static const uint8_t oid_p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
static const uint8_t oid_p384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};

unsigned p11_curve_bits(const uint8_t *der, size_t len)
{
    if (len == sizeof(oid_p256) && memcmp(der, oid_p256, len) == 0)
        return 256;
    if (len == sizeof(oid_p384) && memcmp(der, oid_p384, len) == 0)
        return 384;
    return 0;
}

static void key_free(struct p11_key *k)
{
    free(k->spki);
    free(k->ec_point);
    free(k->modulus);
    free(k->exponent);
    memset(k, 0, sizeof(*k));
}

void p11_keys_clear(void)
{
    for (size_t i = 0; i < P11_MAX_KEYS; i++)
        key_free(&p11_keys[i]);
}

struct p11_key *p11_key_of(CK_OBJECT_HANDLE h, bool *ret_private)
{
    if (h == 0 || h > 2 * (CK_OBJECT_HANDLE)P11_MAX_KEYS)
        return NULL;
    struct p11_key *k = &p11_keys[(h - 1) / 2];
    if (!k->used)
        return NULL;
    *ret_private = (h - 1) % 2 == 0;
    return k;
}

static uint8_t *bn_bytes(EVP_PKEY *pk, const char *name, size_t *ret_len)
{
    BIGNUM *bn = NULL;
    if (EVP_PKEY_get_bn_param(pk, name, &bn) != 1)
        return NULL;
    size_t n = (size_t)BN_num_bytes(bn);
    uint8_t *b = malloc(n ? n : 1);
    if (b)
        BN_bn2bin(bn, b);
    BN_free(bn);
    *ret_len = n;
    return b;
}

/* Fills the public attributes from the SubjectPublicKeyInfo. */
static int parse_spki(struct p11_key *k, const uint8_t *der, size_t len)
{
    const unsigned char *p = der;
    EVP_PKEY *pk = d2i_PUBKEY(NULL, &p, (long)len);
    if (!pk)
        return -1;
    int ok = 0;
    k->spki = malloc(len);
    if (!k->spki)
        goto out;
    memcpy(k->spki, der, len);
    k->spki_len = len;
    if (k->alg == ALG_EC) {
        uint8_t pt[1 + 2 * 66];
        size_t n = 0;
        if (EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt), &n) != 1 || n > 127)
            goto out;
        /* CKA_EC_POINT: the uncompressed point as a DER OCTET STRING. */
        k->ec_point = malloc(n + 2);
        if (!k->ec_point)
            goto out;
        k->ec_point[0] = 0x04;
        k->ec_point[1] = (uint8_t)n;
        memcpy(k->ec_point + 2, pt, n);
        k->ec_point_len = n + 2;
        if (k->bits == 256)
            k->ec_params = oid_p256, k->ec_params_len = sizeof(oid_p256);
        else if (k->bits == 384)
            k->ec_params = oid_p384, k->ec_params_len = sizeof(oid_p384);
        else
            goto out;
    } else {
        k->modulus = bn_bytes(pk, OSSL_PKEY_PARAM_RSA_N, &k->modulus_len);
        k->exponent = bn_bytes(pk, OSSL_PKEY_PARAM_RSA_E, &k->exponent_len);
        if (!k->modulus || !k->exponent)
            goto out;
    }
    ok = 1;
out:
    EVP_PKEY_free(pk);
    return ok ? 0 : -1;
}

static bool has_purpose(const KsKeyCharacteristics *ch, int purpose)
{
    if (!ch->auths)
        return false;
    for (size_t i = 0; i < ch->auths->n_purposes; i++)
        if ((int)ch->auths->purposes[i] == purpose)
            return true;
    return false;
}

CK_RV p11_key_add(const KsKeyCharacteristics *ch, size_t *ret_index)
{
    if (!ch->alias || strlen(ch->alias) > P11_ALIAS_MAX || (ch->algorithm != ALG_EC && ch->algorithm != ALG_RSA))
        return CKR_GENERAL_ERROR;
    size_t free_slot = P11_MAX_KEYS;
    for (size_t i = 0; i < P11_MAX_KEYS; i++) {
        struct p11_key *k = &p11_keys[i];
        if (!k->used) {
            if (free_slot == P11_MAX_KEYS)
                free_slot = i;
            continue;
        }
        if (strcmp(k->alias, ch->alias) != 0)
            continue;
        if (k->alg == (int)ch->algorithm && k->bits == ch->key_size && k->created == ch->created) {
            k->sign = has_purpose(ch, PURPOSE_SIGN);
            k->decrypt = has_purpose(ch, PURPOSE_DECRYPT);
            k->seen = true;
            *ret_index = i;
            return CKR_OK;
        }
        /* Deleted and made again under the same alias: another key, another handle. */
        key_free(k);
        if (free_slot == P11_MAX_KEYS || i < free_slot)
            free_slot = i;
    }
    if (free_slot == P11_MAX_KEYS)
        return CKR_DEVICE_MEMORY;
    Trustme__Keystore__KsKeyRef ref = TRUSTME__KEYSTORE__KS_KEY_REF__INIT;
    ref.alias = ch->alias;
    KsRequest req = TRUSTME__KEYSTORE__KS_REQUEST__INIT;
    req.body_case = TRUSTME__KEYSTORE__KS_REQUEST__BODY_EXPORT_PUBLIC_KEY;
    req.export_public_key = &ref;
    KsResponse *resp;
    CK_RV rv = p11_call(&req, &resp);
    if (rv != CKR_OK)
        return rv;
    rv = p11_rv_of(resp->error);
    struct p11_key *k = &p11_keys[free_slot];
    if (rv == CKR_OK) {
        if (resp->body_case != TRUSTME__KEYSTORE__KS_RESPONSE__BODY_PUBLIC_KEY || !resp->public_key->has_spki_der) {
            rv = CKR_DEVICE_ERROR;
        } else {
            memcpy(k->alias, ch->alias, strlen(ch->alias) + 1);
            k->alg = (int)ch->algorithm;
            k->bits = ch->key_size;
            k->created = ch->created;
            k->sign = has_purpose(ch, PURPOSE_SIGN);
            k->decrypt = has_purpose(ch, PURPOSE_DECRYPT);
            k->passphrase = ch->auths && ch->auths->passphrase_required;
            k->imported = ch->imported;
            if (parse_spki(k, resp->public_key->spki_der.data, resp->public_key->spki_der.len) < 0) {
                key_free(k);
                rv = CKR_DEVICE_ERROR;
            } else {
                k->used = k->seen = true;
                *ret_index = free_slot;
            }
        }
    }
    p11_response_free(resp);
    return rv;
}

CK_RV p11_keys_refresh(void)
{
    Trustme__Keystore__KsList list = TRUSTME__KEYSTORE__KS_LIST__INIT;
    KsRequest req = TRUSTME__KEYSTORE__KS_REQUEST__INIT;
    req.body_case = TRUSTME__KEYSTORE__KS_REQUEST__BODY_LIST_KEYS;
    req.list_keys = &list;
    KsResponse *resp;
    CK_RV rv = p11_call(&req, &resp);
    if (rv != CKR_OK)
        return rv;
    rv = p11_rv_of(resp->error);
    if (rv == CKR_OK && resp->body_case != TRUSTME__KEYSTORE__KS_RESPONSE__BODY_KEYS)
        rv = CKR_DEVICE_ERROR;
    if (rv != CKR_OK) {
        p11_response_free(resp);
        return rv;
    }
    for (size_t i = 0; i < P11_MAX_KEYS; i++)
        p11_keys[i].seen = false;
    for (size_t i = 0; i < resp->keys->n_keys && rv == CKR_OK; i++) {
        const KsKeyCharacteristics *ch = resp->keys->keys[i];
        size_t idx;
        if (ch->algorithm == ALG_EC || ch->algorithm == ALG_RSA) {
            rv = p11_key_add(ch, &idx);
            /* A key deleted between the list and its export is just gone. */
            if (rv == CKR_KEY_HANDLE_INVALID)
                rv = CKR_OK;
        }
    }
    p11_response_free(resp);
    if (rv != CKR_OK)
        return rv;
    for (size_t i = 0; i < P11_MAX_KEYS; i++)
        if (p11_keys[i].used && !p11_keys[i].seen)
            key_free(&p11_keys[i]);
    return CKR_OK;
}

#define BOOL_ATTR(v)                                     \
    do {                                                 \
        scratch[0] = 0;                                  \
        *(CK_BBOOL *)scratch = (v) ? CK_TRUE : CK_FALSE; \
        *ret_value = scratch;                            \
        *ret_len = sizeof(CK_BBOOL);                     \
        return CKR_OK;                                   \
    } while (0)
#define ULONG_ATTR(v)                \
    do {                             \
        scratch[0] = (v);            \
        *ret_value = scratch;        \
        *ret_len = sizeof(CK_ULONG); \
        return CKR_OK;               \
    } while (0)
#define BYTES_ATTR(p, n)  \
    do {                  \
        *ret_value = (p); \
        *ret_len = (n);   \
        return CKR_OK;    \
    } while (0)

CK_RV p11_attr(const struct p11_key *k, bool priv, CK_ATTRIBUTE_TYPE type, CK_ULONG scratch[2], const void **ret_value,
               CK_ULONG *ret_len)
{
    bool ec = k->alg == ALG_EC;
    switch (type) {
    case CKA_CLASS: ULONG_ATTR(priv ? CKO_PRIVATE_KEY : CKO_PUBLIC_KEY);
    case CKA_KEY_TYPE: ULONG_ATTR(ec ? CKK_EC : CKK_RSA);
    case CKA_ID:
    case CKA_LABEL: BYTES_ATTR(k->alias, strlen(k->alias));
    case CKA_TOKEN: BOOL_ATTR(true);
    case CKA_PRIVATE: /* visible without a login: the token needs none (docs/KEYSTORE.md) */
    case CKA_MODIFIABLE:
    case CKA_COPYABLE:
    case CKA_DERIVE:
    case CKA_WRAP:
    case CKA_UNWRAP:
    case CKA_ENCRYPT:
    case CKA_VERIFY:
    case CKA_VERIFY_RECOVER:
    case CKA_SIGN_RECOVER:
    case CKA_TRUSTED:
    case CKA_WRAP_WITH_TRUSTED: BOOL_ATTR(false);
    case CKA_DESTROYABLE: BOOL_ATTR(priv);
    case CKA_LOCAL: BOOL_ATTR(!k->imported);
    case CKA_KEY_GEN_MECHANISM:
        ULONG_ATTR(k->imported ? CK_UNAVAILABLE_INFORMATION : ec ? CKM_EC_KEY_PAIR_GEN : CKM_RSA_PKCS_KEY_PAIR_GEN);
    case CKA_START_DATE:
    case CKA_END_DATE: BYTES_ATTR("", 0);
    case CKA_PUBLIC_KEY_INFO: BYTES_ATTR(k->spki, k->spki_len);
    case CKA_EC_PARAMS:
        if (!ec)
            break;
        BYTES_ATTR(k->ec_params, k->ec_params_len);
    case CKA_EC_POINT:
        if (!ec)
            break;
        BYTES_ATTR(k->ec_point, k->ec_point_len);
    case CKA_MODULUS:
        if (ec)
            break;
        BYTES_ATTR(k->modulus, k->modulus_len);
    case CKA_PUBLIC_EXPONENT:
        if (ec)
            break;
        BYTES_ATTR(k->exponent, k->exponent_len);
    case CKA_MODULUS_BITS:
        if (ec || priv)
            break;
        ULONG_ATTR(k->bits);
    default: break;
    }
    if (priv) {
        switch (type) {
        case CKA_SIGN: BOOL_ATTR(k->sign);
        case CKA_DECRYPT: BOOL_ATTR(k->decrypt && !ec);
        case CKA_SENSITIVE:
        case CKA_NEVER_EXTRACTABLE: BOOL_ATTR(true);
        case CKA_ALWAYS_SENSITIVE: /* an imported key's material was outside once */ BOOL_ATTR(!k->imported);
        case CKA_EXTRACTABLE: BOOL_ATTR(false);
        case CKA_ALWAYS_AUTHENTICATE: /* a key with a passphrase: C_Login(CKU_CONTEXT_SPECIFIC) */
            BOOL_ATTR(k->passphrase);
        case CKA_VALUE:
        case CKA_PRIVATE_EXPONENT:
        case CKA_PRIME_1:
        case CKA_PRIME_2:
        case CKA_EXPONENT_1:
        case CKA_EXPONENT_2:
        case CKA_COEFFICIENT:
            if (type == CKA_VALUE && !ec)
                break;
            if (type != CKA_VALUE && ec)
                break;
            return CKR_ATTRIBUTE_SENSITIVE;
        default: break;
        }
    }
    return CKR_ATTRIBUTE_TYPE_INVALID;
}
