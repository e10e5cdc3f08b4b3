/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Finding objects, reading their attributes, making and destroying key pairs. */
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "p11.h"

static bool matches(const struct p11_key *k, bool priv, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n)
{
    for (CK_ULONG i = 0; i < n; i++) {
        CK_ULONG scratch[2];
        const void *v;
        CK_ULONG len;
        if (p11_attr(k, priv, tmpl[i].type, scratch, &v, &len) != CKR_OK)
            return false;
        if (len != tmpl[i].ulValueLen || (len && memcmp(v, tmpl[i].pValue, len) != 0))
            return false;
    }
    return true;
}

static CK_RV find_init(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n)
{
    struct p11_session *s = p11_session_of(h);
    if (!s)
        return CKR_SESSION_HANDLE_INVALID;
    if (!tmpl && n)
        return CKR_ARGUMENTS_BAD;
    for (CK_ULONG i = 0; i < n; i++)
        if (!tmpl[i].pValue && tmpl[i].ulValueLen)
            return CKR_ARGUMENTS_BAD;
    if (s->finding)
        return CKR_OPERATION_ACTIVE;
    CK_RV rv = p11_keys_refresh();
    if (rv != CKR_OK)
        return rv;
    CK_OBJECT_HANDLE *found = calloc(2 * P11_MAX_KEYS, sizeof(*found));
    if (!found)
        return CKR_HOST_MEMORY;
    size_t nf = 0;
    for (size_t i = 0; i < P11_MAX_KEYS; i++) {
        if (!p11_keys[i].used)
            continue;
        if (matches(&p11_keys[i], true, tmpl, n))
            found[nf++] = p11_priv_handle(i);
        if (matches(&p11_keys[i], false, tmpl, n))
            found[nf++] = p11_pub_handle(i);
    }
    s->found = found;
    s->n_found = nf;
    s->pos = 0;
    s->finding = true;
    return CKR_OK;
}

CK_RV C_FindObjectsInit(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n)
{
    P11_LOCKED(find_init(h, tmpl, n));
}

static CK_RV find(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR out, CK_ULONG max, CK_ULONG_PTR count)
{
    struct p11_session *s = p11_session_of(h);
    if (!s)
        return CKR_SESSION_HANDLE_INVALID;
    if (!out || !count)
        return CKR_ARGUMENTS_BAD;
    if (!s->finding)
        return CKR_OPERATION_NOT_INITIALIZED;
    CK_ULONG k = 0;
    while (k < max && s->pos < s->n_found)
        out[k++] = s->found[s->pos++];
    *count = k;
    return CKR_OK;
}

CK_RV C_FindObjects(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR out, CK_ULONG max, CK_ULONG_PTR count)
{
    P11_LOCKED(find(h, out, max, count));
}

static CK_RV find_final(CK_SESSION_HANDLE h)
{
    struct p11_session *s = p11_session_of(h);
    if (!s)
        return CKR_SESSION_HANDLE_INVALID;
    if (!s->finding)
        return CKR_OPERATION_NOT_INITIALIZED;
    free(s->found);
    s->found = NULL;
    s->n_found = s->pos = 0;
    s->finding = false;
    return CKR_OK;
}

CK_RV C_FindObjectsFinal(CK_SESSION_HANDLE h)
{
    P11_LOCKED(find_final(h));
}

static CK_RV get_attributes(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n)
{
    if (!p11_session_of(h))
        return CKR_SESSION_HANDLE_INVALID;
    if (!tmpl && n)
        return CKR_ARGUMENTS_BAD;
    bool priv;
    const struct p11_key *k = p11_key_of(obj, &priv);
    if (!k)
        return CKR_OBJECT_HANDLE_INVALID;
    /* Every attribute is answered; the result is the last of the errors (PKCS#11 lets any of
     * them win). */
    CK_RV rv = CKR_OK;
    for (CK_ULONG i = 0; i < n; i++) {
        CK_ULONG scratch[2];
        const void *v;
        CK_ULONG len;
        CK_RV r = p11_attr(k, priv, tmpl[i].type, scratch, &v, &len);
        if (r != CKR_OK) {
            tmpl[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
            rv = r;
            continue;
        }
        if (!tmpl[i].pValue) {
            tmpl[i].ulValueLen = len;
        } else if (tmpl[i].ulValueLen < len) {
            tmpl[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
            rv = CKR_BUFFER_TOO_SMALL;
        } else {
            memcpy(tmpl[i].pValue, v, len);
            tmpl[i].ulValueLen = len;
        }
    }
    return rv;
}

CK_RV C_GetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n)
{
    P11_LOCKED(get_attributes(h, obj, tmpl, n));
}

static CK_RV destroy(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj)
{
    if (!p11_session_of(h))
        return CKR_SESSION_HANDLE_INVALID;
    bool priv;
    struct p11_key *k = p11_key_of(obj, &priv);
    if (!k)
        return CKR_OBJECT_HANDLE_INVALID;
    /* The public key is a view of the private one: it goes with it. */
    if (!priv)
        return CKR_ACTION_PROHIBITED;
    Trustme__Keystore__KsKeyRef ref = TRUSTME__KEYSTORE__KS_KEY_REF__INIT;
    ref.alias = k->alias;
    KsRequest req = TRUSTME__KEYSTORE__KS_REQUEST__INIT;
    req.body_case = TRUSTME__KEYSTORE__KS_REQUEST__BODY_DELETE_KEY;
    req.delete_key = &ref;
    KsResponse *resp;
    CK_RV rv = p11_call(&req, &resp);
    if (rv != CKR_OK)
        return rv;
    rv = p11_rv_of(resp->error);
    p11_response_free(resp);
    if (rv == CKR_KEY_HANDLE_INVALID)
        rv = CKR_OBJECT_HANDLE_INVALID;
    if (rv == CKR_OK || rv == CKR_OBJECT_HANDLE_INVALID) {
        free(k->spki);
        free(k->ec_point);
        free(k->modulus);
        free(k->exponent);
        memset(k, 0, sizeof(*k));
    }
    return rv;
}

CK_RV C_DestroyObject(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj)
{
    P11_LOCKED(destroy(h, obj));
}

/* ---- C_GenerateKeyPair -------------------------------------------------------------------- */

static const CK_ATTRIBUTE *find_attr(CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_ATTRIBUTE_TYPE type)
{
    for (CK_ULONG i = 0; i < n; i++)
        if (t[i].type == type)
            return &t[i];
    return NULL;
}

/* A CK_BBOOL attribute: -1 absent, 0/1, -2 malformed. */
static int bool_attr(CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_ATTRIBUTE_TYPE type)
{
    const CK_ATTRIBUTE *a = find_attr(t, n, type);
    if (!a)
        return -1;
    if (a->ulValueLen != sizeof(CK_BBOOL))
        return -2;
    return *(CK_BBOOL *)a->pValue ? 1 : 0;
}

static bool alias_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
}

/* The key's alias: its CKA_LABEL, else its CKA_ID (as it is if it is a valid alias, else in hex),
 * else a random one. */
static CK_RV alias_of(CK_ATTRIBUTE_PTR pub, CK_ULONG npub, CK_ATTRIBUTE_PTR priv, CK_ULONG npriv,
                      char out[P11_ALIAS_MAX + 1])
{
    const CK_ATTRIBUTE *a = find_attr(priv, npriv, CKA_LABEL);
    if (!a)
        a = find_attr(pub, npub, CKA_LABEL);
    if (a) {
        if (a->ulValueLen == 0 || a->ulValueLen > P11_ALIAS_MAX)
            return CKR_ATTRIBUTE_VALUE_INVALID;
        for (CK_ULONG i = 0; i < a->ulValueLen; i++)
            if (!alias_char(((unsigned char *)a->pValue)[i]))
                return CKR_ATTRIBUTE_VALUE_INVALID;
        memcpy(out, a->pValue, a->ulValueLen);
        out[a->ulValueLen] = 0;
        return CKR_OK;
    }
    a = find_attr(priv, npriv, CKA_ID);
    if (!a)
        a = find_attr(pub, npub, CKA_ID);
    uint8_t rnd[8];
    const uint8_t *id = a ? a->pValue : rnd;
    size_t len = a ? a->ulValueLen : sizeof(rnd);
    if (!a && RAND_bytes(rnd, sizeof(rnd)) != 1)
        return CKR_FUNCTION_FAILED;
    if (len == 0 || len > P11_ALIAS_MAX / 2)
        return CKR_ATTRIBUTE_VALUE_INVALID;
    bool plain = a != NULL;
    for (size_t i = 0; i < len && plain; i++)
        plain = alias_char(id[i]);
    if (plain) {
        memcpy(out, id, len);
        out[len] = 0;
        return CKR_OK;
    }
    for (size_t i = 0; i < len; i++)
        snprintf(out + 2 * i, 3, "%02x", id[i]);
    return CKR_OK;
}

static CK_RV generate(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR pub, CK_ULONG npub,
                      CK_ATTRIBUTE_PTR priv, CK_ULONG npriv, CK_OBJECT_HANDLE_PTR ret_pub,
                      CK_OBJECT_HANDLE_PTR ret_priv)
{
    if (!p11_session_of(h))
        return CKR_SESSION_HANDLE_INVALID;
    if (!mech || (!pub && npub) || (!priv && npriv) || !ret_pub || !ret_priv)
        return CKR_ARGUMENTS_BAD;
    for (CK_ULONG i = 0; i < npub; i++)
        if (!pub[i].pValue && pub[i].ulValueLen)
            return CKR_ARGUMENTS_BAD;
    for (CK_ULONG i = 0; i < npriv; i++)
        if (!priv[i].pValue && priv[i].ulValueLen)
            return CKR_ARGUMENTS_BAD;
    int alg;
    unsigned bits = 0;
    if (mech->mechanism == CKM_EC_KEY_PAIR_GEN) {
        alg = ALG_EC;
        const CK_ATTRIBUTE *p = find_attr(pub, npub, CKA_EC_PARAMS);
        if (!p)
            return CKR_TEMPLATE_INCOMPLETE;
        bits = p11_curve_bits(p->pValue, p->ulValueLen);
        if (!bits)
            return CKR_CURVE_NOT_SUPPORTED;
    } else if (mech->mechanism == CKM_RSA_PKCS_KEY_PAIR_GEN) {
        alg = ALG_RSA;
        const CK_ATTRIBUTE *p = find_attr(pub, npub, CKA_MODULUS_BITS);
        if (!p)
            return CKR_TEMPLATE_INCOMPLETE;
        if (p->ulValueLen != sizeof(CK_ULONG))
            return CKR_ATTRIBUTE_VALUE_INVALID;
        CK_ULONG b = *(CK_ULONG *)p->pValue;
        if (b < 2048 || b > 4096 || b % 8)
            return CKR_KEY_SIZE_RANGE;
        bits = (unsigned)b;
        /* The keystore makes RSA keys with e = 65537 only. */
        const CK_ATTRIBUTE *e = find_attr(pub, npub, CKA_PUBLIC_EXPONENT);
        if (e) {
            unsigned long v = 0;
            for (CK_ULONG i = 0; i < e->ulValueLen && v <= 0xffffff; i++)
                v = v << 8 | ((uint8_t *)e->pValue)[i];
            if (v != 65537)
                return CKR_ATTRIBUTE_VALUE_INVALID;
        }
    } else {
        return CKR_MECHANISM_INVALID;
    }
    /* Keys never leave the keystore, and exist only as its (token) keys. */
    if (bool_attr(priv, npriv, CKA_EXTRACTABLE) == 1 || bool_attr(priv, npriv, CKA_SENSITIVE) == 0 ||
        bool_attr(priv, npriv, CKA_TOKEN) == 0 || bool_attr(pub, npub, CKA_TOKEN) == 0)
        return CKR_TEMPLATE_INCONSISTENT;
    static const CK_ATTRIBUTE_TYPE bools[] = {CKA_TOKEN, CKA_SIGN, CKA_DECRYPT, CKA_EXTRACTABLE, CKA_SENSITIVE};
    for (size_t i = 0; i < sizeof(bools) / sizeof(bools[0]); i++)
        if (bool_attr(priv, npriv, bools[i]) == -2 || bool_attr(pub, npub, bools[i]) == -2)
            return CKR_ATTRIBUTE_VALUE_INVALID;
    char alias[P11_ALIAS_MAX + 1];
    CK_RV rv = alias_of(pub, npub, priv, npriv, alias);
    if (rv != CKR_OK)
        return rv;
    bool sign = bool_attr(priv, npriv, CKA_SIGN) != 0;
    bool decrypt = alg == ALG_RSA && bool_attr(priv, npriv, CKA_DECRYPT) == 1;
    if (!sign && !decrypt)
        return CKR_TEMPLATE_INCONSISTENT;

    Trustme__Keystore__KsPurpose purposes[3];
    size_t np = 0;
    if (sign) {
        purposes[np++] = PURPOSE_SIGN;
        purposes[np++] = PURPOSE_VERIFY;
    }
    if (decrypt)
        purposes[np++] = PURPOSE_DECRYPT;
    Trustme__Keystore__KsDigest digests[] = {DIGEST_SHA256, DIGEST_SHA384, DIGEST_SHA512};
    Trustme__Keystore__KsPadding paddings[3];
    size_t npad = 0;
    if (alg == ALG_RSA) {
        if (sign) {
            paddings[npad++] = PAD_PSS;
            paddings[npad++] = PAD_PKCS1;
        }
        if (decrypt) {
            paddings[npad++] = PAD_OAEP;
            if (!sign)
                paddings[npad++] = PAD_PKCS1;
        }
    }
    Trustme__Keystore__KsAuthorizations auths = TRUSTME__KEYSTORE__KS_AUTHORIZATIONS__INIT;
    auths.n_purposes = np;
    auths.purposes = purposes;
    auths.n_digests = 3;
    auths.digests = digests;
    auths.n_paddings = npad;
    auths.paddings = paddings;
    Trustme__Keystore__KsGenerateKey gen = TRUSTME__KEYSTORE__KS_GENERATE_KEY__INIT;
    gen.alias = alias;
    gen.has_algorithm = gen.has_key_size = true;
    gen.algorithm = alg;
    gen.key_size = bits;
    gen.auths = &auths;
    KsRequest req = TRUSTME__KEYSTORE__KS_REQUEST__INIT;
    req.body_case = TRUSTME__KEYSTORE__KS_REQUEST__BODY_GENERATE_KEY;
    req.generate_key = &gen;
    KsResponse *resp;
    rv = p11_call(&req, &resp);
    if (rv != CKR_OK)
        return rv;
    rv = p11_rv_of(resp->error);
    if (rv == CKR_OK && resp->body_case != TRUSTME__KEYSTORE__KS_RESPONSE__BODY_KEY)
        rv = CKR_DEVICE_ERROR;
    size_t idx;
    if (rv == CKR_OK)
        rv = p11_key_add(resp->key, &idx);
    p11_response_free(resp);
    if (rv != CKR_OK)
        return rv;
    *ret_priv = p11_priv_handle(idx);
    *ret_pub = p11_pub_handle(idx);
    return CKR_OK;
}

CK_RV C_GenerateKeyPair(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR pub, CK_ULONG npub,
                        CK_ATTRIBUTE_PTR priv, CK_ULONG npriv, CK_OBJECT_HANDLE_PTR ret_pub,
                        CK_OBJECT_HANDLE_PTR ret_priv)
{
    P11_LOCKED(generate(h, mech, pub, npub, priv, npriv, ret_pub, ret_priv));
}
