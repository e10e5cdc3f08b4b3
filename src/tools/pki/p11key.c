/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Keys on a PKCS#11 token, used by OpenSSL as if they were in memory.
 *
 * The module is loaded by scd's loader (src/scd/p11_module.c) and called directly: Debian 12 has no
 * pkcs11-provider, and libp11 0.4.12 cannot generate EC keys on a token. The EVP_PKEY handed to
 * the rest of the tool holds only the public key; its EC_KEY_METHOD / RSA_METHOD sends the one
 * private-key operation to the token:
 *   ECDSA:   C_Sign(CKM_ECDSA) over the digest OpenSSL computed (SoftHSM has no CKM_ECDSA_SHA256),
 *            r||s turned into an ECDSA_SIG;
 *   RSA-PSS: OpenSSL does the PSS encoding, the token the raw RSA operation (CKM_RSA_X_509).
 * OpenSSL 3 treats a key with a non-default method as "foreign" and keeps it on its legacy code
 * path, so X509_sign_ctx, X509_CRL_sign_ctx and EVP_DigestSign work unchanged. Those methods
 * are deprecated API in OpenSSL 3.0 but fully supported there; hence the define below, for this
 * file only. */
#define OPENSSL_SUPPRESS_DEPRECATED

#include <errno.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "pki.h"
#include "p11_module.h"

#define MADE_MAX 32

struct p11tok {
    struct p11_module mod;
    CK_FUNCTION_LIST_PTR f; /* mod.f */
    CK_SESSION_HANDLE session;
    bool have_session, logged_in;
    CK_OBJECT_HANDLE made[MADE_MAX]; /* generated objects, destroyed at close unless kept */
    size_t n_made;
};

/* What the EC_KEY / RSA ex_data points to. */
struct keyref {
    struct p11tok *t;
    CK_OBJECT_HANDLE priv;
};

static int ec_idx = -1, rsa_idx = -1;
static EC_KEY_METHOD *ec_meth;
static RSA_METHOD *rsa_meth;

static int rv_fail(tm_err *err, int code, CK_RV rv, const char *what)
{
    return tm_err_set(err, code, "PKCS#11 %s failed: %s (0x%lx)", what, p11_rv_name(rv), (unsigned long)rv);
}

/* --- the private-key operations, called by OpenSSL --- */

/* OpenSSL's callbacks have no room for our error: the reason goes to stderr, OpenSSL then
 * reports the operation as failed. */
static int token_sign(const struct keyref *k, CK_MECHANISM_TYPE mech, const unsigned char *in, size_t in_len,
                      unsigned char *out, CK_ULONG *out_len)
{
    CK_MECHANISM m = {mech, NULL, 0};
    CK_RV rv = k->t->f->C_SignInit(k->t->session, &m, k->priv);
    if (rv == CKR_OK)
        rv = k->t->f->C_Sign(k->t->session, (CK_BYTE_PTR)in, (CK_ULONG)in_len, out, out_len);
    if (rv != CKR_OK) {
        fprintf(stderr, "trustme-pki: token: C_Sign failed: %s (0x%lx)\n", p11_rv_name(rv), (unsigned long)rv);
        return -1;
    }
    return 0;
}

static ECDSA_SIG *ec_sign_sig(const unsigned char *dgst, int dgst_len, const BIGNUM *kinv, const BIGNUM *rp, EC_KEY *ec)
{
    const struct keyref *k = EC_KEY_get_ex_data(ec, ec_idx);
    unsigned char rs[2 * 66];
    CK_ULONG len = sizeof(rs);
    if (!k || dgst_len < 0 || token_sign(k, CKM_ECDSA, dgst, (size_t)dgst_len, rs, &len) < 0 || len == 0 || len % 2)
        return NULL;
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(rs, (int)(len / 2), NULL), *s = BN_bin2bn(rs + len / 2, (int)(len / 2), NULL);
    if (!sig || !r || !s || ECDSA_SIG_set0(sig, r, s) != 1) {
        ECDSA_SIG_free(sig);
        BN_free(r);
        BN_free(s);
        return NULL;
    }
    return sig;
}

static int rsa_priv_enc(int flen, const unsigned char *from, unsigned char *to, RSA *rsa, int padding)
{
    const struct keyref *k = RSA_get_ex_data(rsa, rsa_idx);
    /* PSS: OpenSSL encoded the block, the token does the raw operation */
    if (!k || flen < 0 || padding != RSA_NO_PADDING)
        return -1;
    CK_ULONG len = (CK_ULONG)RSA_size(rsa);
    if (token_sign(k, CKM_RSA_X_509, from, (size_t)flen, to, &len) < 0)
        return -1;
    return (int)len;
}

static void keyref_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    free(ptr);
}

static int methods_init(tm_err *err)
{
    if (ec_meth)
        return 0;
    ec_idx = EC_KEY_get_ex_new_index(0, NULL, NULL, NULL, keyref_free);
    rsa_idx = RSA_get_ex_new_index(0, NULL, NULL, NULL, keyref_free);
    if (ec_idx < 0 || rsa_idx < 0)
        return ossl_fail(err, ENOMEM, "cannot register key data with OpenSSL");
    EC_KEY_METHOD *em = EC_KEY_METHOD_new(EC_KEY_OpenSSL());
    RSA_METHOD *rm = RSA_meth_dup(RSA_PKCS1_OpenSSL());
    if (!em || !rm) {
        EC_KEY_METHOD_free(em);
        RSA_meth_free(rm);
        return ossl_fail(err, ENOMEM, "out of memory");
    }
    /* OpenSSL's sign (DER encoding) calls sign_sig, which is ours */
    int (*sign)(int, const unsigned char *, int, unsigned char *, unsigned int *, const BIGNUM *, const BIGNUM *,
                EC_KEY *) = NULL;
    EC_KEY_METHOD_get_sign(em, &sign, NULL, NULL);
    EC_KEY_METHOD_set_sign(em, sign, NULL, ec_sign_sig);
    RSA_meth_set1_name(rm, "trustme-pki PKCS#11");
    RSA_meth_set_priv_enc(rm, rsa_priv_enc);
    ec_meth = em;
    rsa_meth = rm;
    return 0;
}

/* --- token and session --- */

int p11tok_open(const char *module, const char *token_label, const char *serial, const char *pin, bool rw,
                struct p11tok **ret, tm_err *err)
{
    int r = methods_init(err);
    if (r < 0)
        return r;
    _cleanup_(p11tok_closep) struct p11tok *t = calloc(1, sizeof(*t));
    if (!t)
        return tm_err_set(err, ENOMEM, "out of memory");
    CK_SLOT_ID slot;
    if ((r = p11_module_load(module, &t->mod, err)) < 0 ||
        (r = p11_module_find_token(&t->mod, module, token_label, serial, &slot, NULL, err)) < 0)
        return r;
    t->f = t->mod.f;
    CK_RV rv;
    CK_FLAGS flags = CKF_SERIAL_SESSION | (rw ? CKF_RW_SESSION : 0);
    if ((rv = t->f->C_OpenSession(slot, flags, NULL, NULL, &t->session)) != CKR_OK)
        return rv_fail(err, EIO, rv, "C_OpenSession");
    t->have_session = true;
    rv = t->f->C_Login(t->session, CKU_USER, (CK_UTF8CHAR_PTR)pin, (CK_ULONG)strlen(pin));
    if (rv == CKR_PIN_INCORRECT)
        return tm_err_set(err, EACCES, "wrong PIN for token \"%s\"", token_label);
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN)
        return rv_fail(err, EACCES, rv, "C_Login");
    t->logged_in = rv == CKR_OK;
    *ret = steal_ptr(t);
    return 0;
}

void p11tok_keep(struct p11tok *t)
{
    t->n_made = 0;
}

void p11tok_close(struct p11tok *t)
{
    for (size_t i = 0; t->f && i < t->n_made; i++)
        t->f->C_DestroyObject(t->session, t->made[i]);
    p11_module_close(&t->mod, t->f, t->session, t->logged_in, t->have_session);
    free(t);
}

/* --- keys --- */

/* An attribute's value, allocated (the size asked for first). */
static int get_attr(struct p11tok *t, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type, unsigned char **ret, size_t *ret_len,
                    const char *what, tm_err *err)
{
    CK_ATTRIBUTE a = {type, NULL, 0};
    CK_RV rv = t->f->C_GetAttributeValue(t->session, o, &a, 1);
    if (rv != CKR_OK || a.ulValueLen == CK_UNAVAILABLE_INFORMATION || a.ulValueLen == 0)
        return rv_fail(err, EIO, rv, what);
    _cleanup_free_ unsigned char *v = malloc(a.ulValueLen);
    if (!v)
        return tm_err_set(err, ENOMEM, "out of memory");
    a.pValue = v;
    if ((rv = t->f->C_GetAttributeValue(t->session, o, &a, 1)) != CKR_OK)
        return rv_fail(err, EIO, rv, what);
    *ret_len = a.ulValueLen;
    *ret = steal_ptr(v);
    return 0;
}

static const unsigned char P256_OID[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};

OSSL_DEFINE_FREEP(EC_KEY, EC_KEY_free)
OSSL_DEFINE_FREEP(RSA, RSA_free)
OSSL_DEFINE_FREEP(ASN1_OCTET_STRING, ASN1_OCTET_STRING_free)

static int ec_pkey(struct p11tok *t, CK_OBJECT_HANDLE pub, struct keyref *ref, EVP_PKEY *pkey, tm_err *err)
{
    _cleanup_free_ unsigned char *params = NULL, *point = NULL;
    size_t params_len, point_len;
    int r = get_attr(t, pub, CKA_EC_PARAMS, &params, &params_len, "reading CKA_EC_PARAMS", err);
    if (r < 0 || (r = get_attr(t, pub, CKA_EC_POINT, &point, &point_len, "reading CKA_EC_POINT", err)) < 0)
        return r;
    if (params_len != sizeof(P256_OID) || memcmp(params, P256_OID, sizeof(P256_OID)) != 0)
        return tm_err_set(err, EOPNOTSUPP, "the token's EC key is not on P-256");
    _cleanup_(EC_KEY_freep) EC_KEY *ec = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
    if (!ec || EC_KEY_set_method(ec, ec_meth) != 1)
        return ossl_fail(err, ENOMEM, "cannot make an EC key");
    /* CKA_EC_POINT is the DER OCTET STRING around the point (PKCS#11 2.40); some modules give
     * the bare point */
    const unsigned char *p = point;
    _cleanup_(ASN1_OCTET_STRING_freep) ASN1_OCTET_STRING *os = d2i_ASN1_OCTET_STRING(NULL, &p, (long)point_len);
    const unsigned char *q = os && p == point + point_len ? ASN1_STRING_get0_data(os) : point;
    long q_len = os && p == point + point_len ? ASN1_STRING_length(os) : (long)point_len;
    ERR_clear_error();
    EC_KEY *ecp = ec;
    if (!o2i_ECPublicKey(&ecp, &q, q_len))
        return ossl_fail(err, EINVAL, "the token's EC public key cannot be read");
    if (EC_KEY_set_ex_data(ec, ec_idx, ref) != 1)
        return ossl_fail(err, ENOMEM, "out of memory");
    if (EVP_PKEY_assign_EC_KEY(pkey, ec) != 1) {
        EC_KEY_set_ex_data(ec, ec_idx, NULL);
        return ossl_fail(err, ENOMEM, "out of memory");
    }
    ec = NULL;
    return 0;
}

static int rsa_pkey(struct p11tok *t, CK_OBJECT_HANDLE pub, struct keyref *ref, EVP_PKEY *pkey, tm_err *err)
{
    _cleanup_free_ unsigned char *mod = NULL, *exp = NULL;
    size_t mod_len, exp_len;
    int r = get_attr(t, pub, CKA_MODULUS, &mod, &mod_len, "reading CKA_MODULUS", err);
    if (r < 0 || (r = get_attr(t, pub, CKA_PUBLIC_EXPONENT, &exp, &exp_len, "reading CKA_PUBLIC_EXPONENT", err)) < 0)
        return r;
    _cleanup_(RSA_freep) RSA *rsa = RSA_new();
    if (!rsa || RSA_set_method(rsa, rsa_meth) != 1)
        return ossl_fail(err, ENOMEM, "cannot make an RSA key");
    BIGNUM *n = BN_bin2bn(mod, (int)mod_len, NULL), *e = BN_bin2bn(exp, (int)exp_len, NULL);
    if (!n || !e || RSA_set0_key(rsa, n, e, NULL) != 1) {
        BN_free(n);
        BN_free(e);
        return ossl_fail(err, ENOMEM, "out of memory");
    }
    if (RSA_bits(rsa) < 2048)
        return tm_err_set(err, EOPNOTSUPP,
                          "the token's RSA key has %d bits, at least 2048 are "
                          "required",
                          RSA_bits(rsa));
    if (RSA_set_ex_data(rsa, rsa_idx, ref) != 1)
        return ossl_fail(err, ENOMEM, "out of memory");
    if (EVP_PKEY_assign_RSA(pkey, rsa) != 1) {
        RSA_set_ex_data(rsa, rsa_idx, NULL);
        return ossl_fail(err, ENOMEM, "out of memory");
    }
    rsa = NULL;
    return 0;
}

static int make_pkey(struct p11tok *t, CK_OBJECT_HANDLE priv, CK_OBJECT_HANDLE pub, EVP_PKEY **ret, tm_err *err)
{
    CK_KEY_TYPE type = 0;
    CK_ATTRIBUTE a = {CKA_KEY_TYPE, &type, sizeof(type)};
    CK_RV rv = t->f->C_GetAttributeValue(t->session, priv, &a, 1);
    if (rv != CKR_OK)
        return rv_fail(err, EIO, rv, "reading CKA_KEY_TYPE");
    if (type != CKK_EC && type != CKK_RSA)
        return tm_err_set(err, EOPNOTSUPP, "the token's key is neither EC nor RSA");
    _cleanup_(EVP_PKEY_freep) EVP_PKEY *pkey = EVP_PKEY_new();
    _cleanup_free_ struct keyref *ref = calloc(1, sizeof(*ref));
    if (!pkey || !ref)
        return tm_err_set(err, ENOMEM, "out of memory");
    *ref = (struct keyref){.t = t, .priv = priv};
    /* on success ref belongs to the key's ex_data (freed with it) */
    int r = type == CKK_EC ? ec_pkey(t, pub, ref, pkey, err) : rsa_pkey(t, pub, ref, pkey, err);
    if (r < 0)
        return r;
    ref = NULL; /* the key's ex_data owns it */
    *ret = steal_ptr(pkey);
    return 0;
}

int p11tok_generate(struct p11tok *t, enum pki_alg alg, const char *label, const unsigned char *id, size_t id_len,
                    EVP_PKEY **ret, tm_err *err)
{
    if (t->n_made + 2 > MADE_MAX)
        return tm_err_set(err, ENOSPC, "too many keys generated in one run");
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ULONG bits = 3072;
    CK_BYTE exponent[] = {0x01, 0x00, 0x01};
    bool ec = alg == PKI_ALG_ECDSA_P256;
    CK_ATTRIBUTE pub[] = {
        {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_PRIVATE, &no, sizeof(no)},
        {CKA_VERIFY, &yes, sizeof(yes)},
        {CKA_LABEL, (void *)label, strlen(label)},
        {CKA_ID, (void *)id, id_len},
        ec ? (CK_ATTRIBUTE){CKA_EC_PARAMS, (void *)P256_OID, sizeof(P256_OID)}
           : (CK_ATTRIBUTE){CKA_MODULUS_BITS, &bits, sizeof(bits)},
        {CKA_PUBLIC_EXPONENT, exponent, sizeof(exponent)}, /* RSA only: the last entry */
    };
    /* Non-extractable and sensitive: the private key never leaves the token, even wrapped. */
    CK_ATTRIBUTE priv[] = {
        {CKA_TOKEN, &yes, sizeof(yes)},     {CKA_PRIVATE, &yes, sizeof(yes)}, {CKA_SENSITIVE, &yes, sizeof(yes)},
        {CKA_EXTRACTABLE, &no, sizeof(no)}, {CKA_SIGN, &yes, sizeof(yes)},    {CKA_LABEL, (void *)label, strlen(label)},
        {CKA_ID, (void *)id, id_len},
    };
    CK_MECHANISM mech = {ec ? CKM_EC_KEY_PAIR_GEN : CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
    CK_OBJECT_HANDLE hpub, hpriv;
    CK_RV rv = t->f->C_GenerateKeyPair(t->session, &mech, pub, ARRAY_SIZE(pub) - (ec ? 1 : 0), priv, ARRAY_SIZE(priv),
                                       &hpub, &hpriv);
    if (rv != CKR_OK)
        return rv_fail(err, EIO, rv, ec ? "C_GenerateKeyPair (EC P-256)" : "C_GenerateKeyPair (RSA 3072)");
    t->made[t->n_made++] = hpriv;
    t->made[t->n_made++] = hpub;
    return make_pkey(t, hpriv, hpub, ret, err);
}

static int find_one(struct p11tok *t, CK_ATTRIBUTE *tmpl, CK_ULONG n, const char *what, CK_OBJECT_HANDLE *ret,
                    tm_err *err)
{
    CK_OBJECT_HANDLE found[2];
    CK_ULONG count = 0;
    CK_RV rv = t->f->C_FindObjectsInit(t->session, tmpl, n);
    if (rv != CKR_OK)
        return rv_fail(err, EIO, rv, "C_FindObjectsInit");
    rv = t->f->C_FindObjects(t->session, found, 2, &count);
    t->f->C_FindObjectsFinal(t->session);
    if (rv != CKR_OK)
        return rv_fail(err, EIO, rv, "C_FindObjects");
    if (count == 0)
        return tm_err_set(err, ENOENT, "no %s on the token", what);
    if (count > 1)
        return tm_err_set(err, ENOTUNIQ, "more than one %s on the token", what);
    *ret = found[0];
    return 0;
}

int p11tok_load(struct p11tok *t, const struct p11uri *u, EVP_PKEY **ret, tm_err *err)
{
    if (!u->object[0] && !u->id_len)
        return tm_err_set(err, EINVAL, "the PKCS#11 URI names no key (object= or id=)");
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE tmpl[3] = {{CKA_CLASS, &cls, sizeof(cls)}};
    CK_ULONG n = 1;
    if (u->object[0])
        tmpl[n++] = (CK_ATTRIBUTE){CKA_LABEL, (void *)u->object, strlen(u->object)};
    if (u->id_len)
        tmpl[n++] = (CK_ATTRIBUTE){CKA_ID, (void *)u->id, u->id_len};
    CK_OBJECT_HANDLE priv, pub;
    int r = find_one(t, tmpl, n, "private key matching the URI", &priv, err);
    if (r < 0)
        return r;
    /* its public half: same class of lookup, CKA_ID taken from the private key */
    _cleanup_free_ unsigned char *id = NULL;
    size_t id_len;
    if ((r = get_attr(t, priv, CKA_ID, &id, &id_len, "reading CKA_ID", err)) < 0)
        return r;
    cls = CKO_PUBLIC_KEY;
    tmpl[1] = (CK_ATTRIBUTE){CKA_ID, id, id_len};
    if ((r = find_one(t, tmpl, 2, "public key with the private key's CKA_ID", &pub, err)) < 0)
        return r;
    return make_pkey(t, priv, pub, ret, err);
}
