/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "verify.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <string.h>

#include "crypto.h"
#include "ossl.h"
#include "verify_cache.h"

/* --- reading PEM strictly --- */

static void pem_parts_free(char **name, char **header, unsigned char **data)
{
    OPENSSL_free(*name);
    OPENSSL_free(*header);
    OPENSSL_free(*data);
    *name = *header = NULL;
    *data = NULL;
}

/* Call add(der, len, what, ctx) for each PEM block of pem, which must all be labelled want.
 * Text between blocks is ignored, as everywhere PEM is read; anything in a block is not. */
typedef int (*pem_add_fn)(const unsigned char *der, long len, const char *what, size_t index, void *ctx, tm_err *err);

static int pem_each(const char *pem, size_t len, const char *what, const char *want, size_t max, pem_add_fn add,
                    void *ctx, size_t *ret_count, tm_err *err)
{
    if (len > VERIFY_PEM_MAX)
        return tm_err_set(err, EINVAL, "%s: %zu bytes, at most %d", what, len, VERIFY_PEM_MAX);
    _cleanup_(BIO_freep) BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio)
        return ossl_fail(err, ENOMEM, "BIO_new_mem_buf failed");
    ERR_clear_error();
    size_t n = 0;
    for (;;) {
        char *name = NULL, *header = NULL;
        unsigned char *data = NULL;
        long dlen = 0;
        if (!PEM_read_bio(bio, &name, &header, &data, &dlen)) {
            unsigned long e = ERR_peek_last_error();
            if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
                ERR_clear_error(); /* the end */
                break;
            }
            return ossl_fail(err, EINVAL, "%s: PEM block %zu is malformed", what, n + 1);
        }
        int r = 0;
        if (strcmp(name, want) != 0)
            r = tm_err_set(err, EINVAL, "%s: PEM block %zu is \"%s\", expected \"%s\"", what, n + 1, name, want);
        else if (header[0] != '\0')
            r = tm_err_set(err, EINVAL, "%s: PEM block %zu has headers (encrypted?)", what, n + 1);
        else if (n >= max)
            r = tm_err_set(err, EINVAL, "%s: more than %zu entries", what, max);
        else
            r = add(data, dlen, what, n + 1, ctx, err);
        pem_parts_free(&name, &header, &data);
        if (r < 0)
            return r;
        n++;
    }
    if (n == 0)
        return tm_err_set(err, EINVAL, "%s: no \"%s\" PEM block found", what, want);
    *ret_count = n;
    return 0;
}

static int add_cert(const unsigned char *der, long len, const char *what, size_t index, void *ctx, tm_err *err)
{
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, len);
    if (!x || p != der + len) {
        X509_free(x);
        return ossl_fail(err, EINVAL, "%s: certificate %zu is not valid DER", what, index);
    }
    if (!sk_X509_push(ctx, x)) {
        X509_free(x);
        return ossl_fail(err, ENOMEM, "out of memory");
    }
    return 0;
}

static int add_crl(const unsigned char *der, long len, const char *what, size_t index, void *ctx, tm_err *err)
{
    const unsigned char *p = der;
    X509_CRL *c = d2i_X509_CRL(NULL, &p, len);
    if (!c || p != der + len) {
        X509_CRL_free(c);
        return ossl_fail(err, EINVAL, "%s: CRL %zu is not valid DER", what, index);
    }
    if (!sk_X509_CRL_push(ctx, c)) {
        X509_CRL_free(c);
        return ossl_fail(err, ENOMEM, "out of memory");
    }
    return 0;
}

static void name_string(const X509_NAME *name, char out[VERIFY_NAME_MAX])
{
    out[0] = '\0';
    _cleanup_(BIO_freep) BIO *bio = BIO_new(BIO_s_mem());
    if (!bio || X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) < 0)
        return;
    int n = BIO_read(bio, out, VERIFY_NAME_MAX - 1);
    out[n > 0 ? n : 0] = '\0';
}

/* --- the steps --- */

/* The chain built, but whether a certificate of it is revoked cannot be told. */
static bool crl_error(int e)
{
    switch (e) {
    case X509_V_ERR_UNABLE_TO_GET_CRL:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE:
    case X509_V_ERR_CRL_SIGNATURE_FAILURE:
    case X509_V_ERR_CRL_NOT_YET_VALID:
    case X509_V_ERR_CRL_HAS_EXPIRED:
    case X509_V_ERR_ERROR_IN_CRL_LAST_UPDATE_FIELD:
    case X509_V_ERR_ERROR_IN_CRL_NEXT_UPDATE_FIELD:
    case X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER:
    case X509_V_ERR_UNHANDLED_CRITICAL_CRL_EXTENSION:
    case X509_V_ERR_KEYUSAGE_NO_CRL_SIGN:
    case X509_V_ERR_DIFFERENT_CRL_SCOPE:
    case X509_V_ERR_CRL_PATH_VALIDATION_ERROR: return true;
    default: return false;
    }
}

static int verify_chain(time_t now, X509 *leaf, STACK_OF(X509) * untrusted, STACK_OF(X509) * anchors,
                        STACK_OF(X509_CRL) * crls, STACK_OF(X509) * *ret_chain, tm_err *err)
{
    _cleanup_(X509_STORE_freep) X509_STORE *store = X509_STORE_new();
    _cleanup_(X509_STORE_CTX_freep) X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    if (!store || !ctx)
        return ossl_fail(err, ENOMEM, "out of memory");
    /* The store holds the anchors and CRLs and nothing else: no default paths, no system
     * trust. What the request sent as its chain is only a hint for building the path. */
    for (int i = 0; i < sk_X509_num(anchors); i++)
        if (X509_STORE_add_cert(store, sk_X509_value(anchors, i)) != 1)
            return ossl_fail(err, EINVAL, "trust anchor %d cannot be added", i + 1);
    for (int i = 0; crls && i < sk_X509_CRL_num(crls); i++)
        if (X509_STORE_add_crl(store, sk_X509_CRL_value(crls, i)) != 1)
            return ossl_fail(err, EINVAL, "CRL %d cannot be added", i + 1);
    if (X509_STORE_CTX_init(ctx, store, leaf, untrusted) != 1)
        return ossl_fail(err, ENOMEM, "X509_STORE_CTX_init failed");
    X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(ctx);
    unsigned long flags = X509_V_FLAG_X509_STRICT;
    if (crls)
        flags |= X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL;
    X509_VERIFY_PARAM_set_flags(param, flags);
    X509_VERIFY_PARAM_set_depth(param, VERIFY_CHAIN_MAX);
    X509_VERIFY_PARAM_set_time(param, now);
    if (X509_verify_cert(ctx) != 1) {
        int e = X509_STORE_CTX_get_error(ctx), depth = X509_STORE_CTX_get_error_depth(ctx);
        X509 *cur = X509_STORE_CTX_get_current_cert(ctx);
        char subject[VERIFY_NAME_MAX] = "?";
        if (cur)
            name_string(X509_get_subject_name(cur), subject);
        ERR_clear_error();
        /* A revocation has a code of its own: the caller tells it from a chain that does not
         * (or no longer) verify for other reasons, such as expiry. So has a revocation status
         * that cannot be established (a CA's CRL missing, expired, forged): for an installed
         * GuestOS that must weigh like a revocation, or emptying or replacing the CRL files
         * would undo one. */
        return tm_err_set(err,
                          e == X509_V_ERR_CERT_REVOKED ? EKEYREVOKED
                          : crl_error(e)               ? ENODATA
                                                       : EKEYREJECTED,
                          "certificate chain: %s at depth %d (%s)", X509_verify_cert_error_string(e), depth, subject);
    }
    if (!(*ret_chain = X509_STORE_CTX_get1_chain(ctx)))
        return ossl_fail(err, ENOMEM, "out of memory");
    return 0;
}

static int check_usage(const struct verify_request *rq, X509 *leaf, tm_err *err)
{
    uint32_t flags = X509_get_extension_flags(leaf);
    if (!(flags & EXFLAG_KUSAGE))
        return tm_err_set(err, EKEYREJECTED,
                          "signer certificate has no keyUsage extension "
                          "(digitalSignature is required)");
    if (!(X509_get_key_usage(leaf) & KU_DIGITAL_SIGNATURE))
        return tm_err_set(err, EKEYREJECTED,
                          "signer certificate's keyUsage lacks "
                          "digitalSignature");
    _cleanup_(ASN1_OBJECT_freep) ASN1_OBJECT *want = rq->eku ? OBJ_txt2obj(rq->eku, 0) : OBJ_nid2obj(rq->eku_nid);
    if (!want)
        return ossl_fail(err, EINVAL, "required extended key usage \"%s\" is not known",
                         rq->eku ? rq->eku : OBJ_nid2sn(rq->eku_nid));
    char want_name[128], want_oid[128];
    OBJ_obj2txt(want_name, sizeof(want_name), want, 0);
    OBJ_obj2txt(want_oid, sizeof(want_oid), want, 1);
    _cleanup_(EXTENDED_KEY_USAGE_freep) EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(leaf, NID_ext_key_usage, NULL, NULL);
    if (!eku)
        return tm_err_set(err, EKEYREJECTED,
                          "signer certificate has no extendedKeyUsage "
                          "extension (%s, %s, is required)",
                          want_name, want_oid);
    for (int i = 0; i < sk_ASN1_OBJECT_num(eku); i++)
        if (OBJ_cmp(sk_ASN1_OBJECT_value(eku, i), want) == 0)
            return 0;
    return tm_err_set(err, EKEYREJECTED, "signer certificate's extendedKeyUsage lacks %s (%s)", want_name, want_oid);
}

/* The CA carries the GuestOS-signing mark (a certificatePolicies entry, verify.h). */
static bool has_guestos_mark(X509 *ca)
{
    _cleanup_(ASN1_OBJECT_freep) ASN1_OBJECT *mark = OBJ_txt2obj(VERIFY_GUESTOS_CA_POLICY_OID, 1);
    CERTIFICATEPOLICIES *pols = X509_get_ext_d2i(ca, NID_certificate_policies, NULL, NULL);
    bool found = false;
    for (int i = 0; mark && pols && i < sk_POLICYINFO_num(pols) && !found; i++)
        found = OBJ_cmp(sk_POLICYINFO_value(pols, i)->policyid, mark) == 0;
    CERTIFICATEPOLICIES_free(pols);
    return found;
}

static int not_marked(X509 *ca, tm_err *err)
{
    char subject[VERIFY_NAME_MAX];
    name_string(X509_get_subject_name(ca), subject);
    return tm_err_set(err, ENOKEY,
                      "CA %s is not marked for GuestOS signing (certificate "
                      "policy %s, which trustme-pki gives GuestOS Signing CAs)",
                      subject, VERIFY_GUESTOS_CA_POLICY_OID);
}

/* The chain passes through one of the required CAs (compared whole, not by name) strictly
 * between the leaf and the anchor, and that CA carries the GuestOS-signing mark. */
static int check_required(STACK_OF(X509) * verified, STACK_OF(X509) * required, int *ret_index, tm_err *err)
{
    for (int i = 1; i < sk_X509_num(verified) - 1; i++)
        for (int j = 0; j < sk_X509_num(required); j++)
            if (X509_cmp(sk_X509_value(verified, i), sk_X509_value(required, j)) == 0) {
                if (!has_guestos_mark(sk_X509_value(verified, i)))
                    return not_marked(sk_X509_value(verified, i), err);
                *ret_index = i;
                return 0;
            }
    return tm_err_set(err, ENOKEY,
                      "the signer's chain does not pass through a registered "
                      "GuestOS-signing CA");
}

/* The certificate to register is a GuestOS Signing CA: a CA below the anchor, marked for it. */
static int check_ca(X509 *cert, STACK_OF(X509) * verified, tm_err *err)
{
    if (X509_check_ca(cert) != 1)
        return tm_err_set(err, EKEYREJECTED,
                          "the certificate is not a CA (basicConstraints "
                          "CA:TRUE and keyUsage keyCertSign are required)");
    if (!(X509_get_extension_flags(cert) & EXFLAG_KUSAGE) || !(X509_get_key_usage(cert) & KU_KEY_CERT_SIGN))
        return tm_err_set(err, EKEYREJECTED, "the CA certificate's keyUsage lacks keyCertSign");
    if (sk_X509_num(verified) < 2)
        return tm_err_set(err, EKEYREJECTED,
                          "the certificate is the trust anchor itself (the "
                          "General root): only a GuestOS Signing CA below it can be registered");
    if (!has_guestos_mark(cert))
        return not_marked(cert, err);
    return 0;
}

static int check_signature(const struct verify_request *rq, X509 *leaf, enum verify_alg *ret_alg, tm_err *err)
{
    EVP_PKEY *pkey = X509_get0_pubkey(leaf);
    if (!pkey)
        return ossl_fail(err, EINVAL, "signer certificate's public key cannot be read");
    enum verify_alg alg;
    int id = EVP_PKEY_get_base_id(pkey);
    if (id == EVP_PKEY_EC) {
        char group[64] = "";
        size_t glen;
        if (EVP_PKEY_get_group_name(pkey, group, sizeof(group), &glen) != 1 || strcmp(group, SN_X9_62_prime256v1) != 0)
            return tm_err_set(err, EOPNOTSUPP,
                              "signer key is on curve %s: only P-256 "
                              "(prime256v1) is accepted",
                              group[0] ? group : "(unnamed)");
        alg = VERIFY_ECDSA_P256_SHA256;
    } else if (id == EVP_PKEY_RSA || id == EVP_PKEY_RSA_PSS) {
        if (EVP_PKEY_get_bits(pkey) < 2048)
            return tm_err_set(err, EOPNOTSUPP,
                              "signer key is RSA with %d bits: at least 2048 "
                              "are required",
                              EVP_PKEY_get_bits(pkey));
        alg = VERIFY_RSA_PSS_SHA256;
    } else {
        return tm_err_set(err, EOPNOTSUPP,
                          "signer key type %s is not accepted: ECDSA P-256 or "
                          "RSA-PSS only",
                          OBJ_nid2sn(id));
    }
    _cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL; /* owned by md */
    if (!md || EVP_DigestVerifyInit_ex(md, &pctx, "SHA256", NULL, NULL, pkey, NULL) != 1)
        return ossl_fail(err, EIO, "signature verification set-up failed");
    if (alg == VERIFY_RSA_PSS_SHA256 && (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
                                         EVP_PKEY_CTX_set_rsa_mgf1_md_name(pctx, "SHA256", NULL) != 1 ||
                                         EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1))
        return ossl_fail(err, EOPNOTSUPP,
                         "the signer's RSA key does not allow PSS with SHA-256 "
                         "and a 32-byte salt");
    int r = EVP_DigestVerify(md, rq->sig, rq->sig_len, rq->data, rq->data_len);
    ERR_clear_error();
    if (r != 1)
        return tm_err_set(err, EBADMSG,
                          "signature does not verify over the data with the "
                          "signer's %s key (expected %s)",
                          alg == VERIFY_ECDSA_P256_SHA256 ? "EC P-256" : "RSA",
                          alg == VERIFY_ECDSA_P256_SHA256 ? "ECDSA with SHA-256, DER-encoded"
                                                          : "RSA-PSS with SHA-256, salt 32 bytes");
    *ret_alg = alg;
    return 0;
}

/* check_signature, or its earlier success for the same data, signature and signer certificate
 * (leaf_sha256: of its DER) when rq->cache: that outcome is fixed by those bytes. */
static int signature_verified(const struct verify_request *rq, X509 *leaf, const uint8_t leaf_sha256[32],
                              enum verify_alg *ret_alg, tm_err *err)
{
    uint8_t key[96];
    if (rq->cache) {
        tm_sha256(rq->data ? rq->data : (const uint8_t *)"", rq->data_len, key);
        tm_sha256(rq->sig, rq->sig_len, key + 32);
        memcpy(key + 64, leaf_sha256, 32);
        if (vcache_sig_get(key, ret_alg))
            return 0;
    }
    int r = check_signature(rq, leaf, ret_alg, err);
    if (r == 0 && rq->cache)
        vcache_sig_put(key, *ret_alg);
    return r;
}

/* pem_each into a new stack of certificates, through the cache when rq->cache (hash: of the
 * PEM's bytes). */
static int load_certs(const char *pem, size_t len, const char *what, size_t max, bool cache, const uint8_t hash[32],
                      STACK_OF(X509) * *ret, size_t *ret_n, tm_err *err)
{
    if (cache && vcache_certs_get(hash, ret)) {
        *ret_n = (size_t)sk_X509_num(*ret);
        return 0;
    }
    _cleanup_(x509_stack_freep) STACK_OF(X509) *sk = sk_X509_new_null();
    if (!sk)
        return ossl_fail(err, ENOMEM, "out of memory");
    int r = pem_each(pem, len, what, "CERTIFICATE", max, add_cert, sk, ret_n, err);
    if (r < 0)
        return r;
    if (cache)
        vcache_certs_put(hash, sk);
    *ret = steal_ptr(sk);
    return 0;
}

static int load_crls(const struct verify_request *rq, const uint8_t hash[32], STACK_OF(X509_CRL) * *ret, tm_err *err)
{
    if (rq->cache && vcache_crls_get(hash, ret))
        return 0;
    _cleanup_(crl_stack_freep) STACK_OF(X509_CRL) *sk = sk_X509_CRL_new_null();
    if (!sk)
        return ossl_fail(err, ENOMEM, "out of memory");
    size_t n;
    /* CRLs that cannot be read leave the revocation status unknown (see verify_chain). */
    int r = pem_each(rq->crls_pem, rq->crls_len, "CRLs", "X509 CRL", VERIFY_CRLS_MAX, add_crl, sk, &n, err);
    if (r < 0) {
        if (err->code == EINVAL)
            r = -(err->code = ENODATA);
        return r;
    }
    if (rq->cache)
        vcache_crls_put(hash, sk);
    *ret = steal_ptr(sk);
    return 0;
}

/* What verify_signed reports of a verified chain, from the chain alone. */
static int describe_chain(STACK_OF(X509) * verified, struct verify_result *out, tm_err *err)
{
    /* The depth limit (VERIFY_CHAIN_MAX intermediates) bounds the chain to leaf + 8 + anchor. */
    if (sk_X509_num(verified) > VERIFY_CHAIN_MAX + 2)
        return tm_err_set(err, EKEYREJECTED, "certificate chain too long");
    for (int i = 0; i < sk_X509_num(verified); i++) {
        unsigned int len = 0;
        if (X509_digest(sk_X509_value(verified, i), EVP_sha256(), out->chain_sha256[i], &len) != 1)
            return ossl_fail(err, EIO, "cannot hash certificate %d of the chain", i + 1);
    }
    X509 *anchor = sk_X509_value(verified, sk_X509_num(verified) - 1);
    unsigned int mdlen = 0;
    if (X509_digest(anchor, EVP_sha256(), out->anchor_sha256, &mdlen) != 1 || mdlen != 32)
        return ossl_fail(err, EIO, "cannot hash the trust anchor");
    tm_hex(out->anchor_sha256, 32, out->anchor_sha256_hex);
    name_string(X509_get_subject_name(sk_X509_value(verified, 0)), out->leaf_subject);
    name_string(X509_get_subject_name(anchor), out->anchor_subject);
    out->chain_len = sk_X509_num(verified);
    return 0;
}

/* The request's chain verified to its anchors at time now (with its CRLs), or taken from the
 * cache when the same bytes verified before and now lies between the same validity dates. */
static int chain_verified(const struct verify_request *rq, time_t now, struct vcache_chain *ret, tm_err *err)
{
    uint8_t key[96] = {0}; /* SHA-256 of chain, anchors, CRLs (zeros: none) */
    bool crls_given = rq->crls_pem && rq->crls_len;
    if (rq->cache) {
        tm_sha256(rq->chain_pem, rq->chain_len, key);
        tm_sha256(rq->anchors_pem, rq->anchors_len, key + 32);
        if (crls_given)
            tm_sha256(rq->crls_pem, rq->crls_len, key + 64);
        if (vcache_chain_get(key, now, ret))
            return 0;
    }
    _cleanup_(x509_stack_freep) STACK_OF(X509) *chain = NULL;
    _cleanup_(x509_stack_freep) STACK_OF(X509) *anchors = NULL;
    _cleanup_(crl_stack_freep) STACK_OF(X509_CRL) *crls = NULL;
    size_t n_chain, n_anchors;
    int r = load_certs(rq->chain_pem, rq->chain_len, "signer certificate chain", VERIFY_CHAIN_MAX, rq->cache, key,
                       &chain, &n_chain, err);
    if (r < 0 || (r = load_certs(rq->anchors_pem, rq->anchors_len, "trust anchors", VERIFY_ANCHORS_MAX, rq->cache,
                                 key + 32, &anchors, &n_anchors, err)) < 0)
        return r;
    if (crls_given && (r = load_crls(rq, key + 64, &crls, err)) < 0)
        return r;
    /* The leaf is the verified chain's first certificate; the rest are the untrusted helpers. */
    X509 *leaf = sk_X509_value(chain, 0);
    _cleanup_(x509_stack_freep) STACK_OF(X509) *untrusted = sk_X509_new_null();
    if (!untrusted)
        return ossl_fail(err, ENOMEM, "out of memory");
    for (int i = 1; i < sk_X509_num(chain); i++) {
        X509 *x = sk_X509_value(chain, i);
        if (!X509_up_ref(x) || !sk_X509_push(untrusted, x)) {
            X509_free(x);
            return ossl_fail(err, ENOMEM, "out of memory");
        }
    }
    if (rq->cert_only && n_chain != 1)
        return tm_err_set(err, EINVAL, "exactly one certificate is to be registered, got %zu", n_chain);
    struct vcache_chain out = {.n_chain = n_chain};
    _cleanup_(x509_stack_freep) STACK_OF(X509) *verified = NULL;
    if ((r = verify_chain(now, leaf, untrusted, anchors, crls, &verified, err)) < 0 ||
        (r = describe_chain(verified, &out.res, err)) < 0)
        return r;
    out.verified = verified;
    time_t lo, hi;
    const STACK_OF(X509) * inputs[] = {chain, anchors};
    if (rq->cache && vcache_interval(inputs, 2, crls, now, &lo, &hi))
        vcache_chain_put(key, lo, hi, &out);
    verified = NULL;
    *ret = out;
    return 0;
}

int verify_signed(const struct verify_request *rq, struct verify_result *res, tm_err *err)
{
    if (rq->cert_only && rq->leaf_only)
        return tm_err_set(err, EINVAL, "cert_only and leaf_only exclude each other");
    bool sig_needed = !rq->cert_only && !rq->leaf_only;
    if (sig_needed && !rq->data && rq->data_len)
        return tm_err_set(err, EINVAL, "no data given");
    if (sig_needed && (!rq->sig || rq->sig_len == 0))
        return tm_err_set(err, EINVAL, "no signature given");
    if (!rq->cert_only && !rq->eku && !rq->eku_nid)
        return tm_err_set(err, EINVAL, "no required extended key usage given");
    if (!rq->chain_pem || !rq->anchors_pem)
        return tm_err_set(err, EINVAL, "no %s given", rq->chain_pem ? "trust anchors" : "signer certificate chain");
    /* One moment for every time comparison of this request, and the cache's key to it. */
    time_t now = rq->time ? rq->time : time(NULL);
    struct vcache_chain vc;
    int r = chain_verified(rq, now, &vc, err);
    if (r < 0)
        return r;
    _cleanup_(x509_stack_freep) STACK_OF(X509) *verified = vc.verified;
    struct verify_result out = vc.res;
    if (rq->cert_only && vc.n_chain != 1)
        return tm_err_set(err, EINVAL, "exactly one certificate is to be registered, got %zu", vc.n_chain);
    X509 *leaf = sk_X509_value(verified, 0);
    if (rq->required_pem && rq->required_len) {
        _cleanup_(x509_stack_freep) STACK_OF(X509) *required = NULL;
        uint8_t hash[32] = {0};
        size_t n_required;
        if (rq->cache)
            tm_sha256(rq->required_pem, rq->required_len, hash);
        if ((r = load_certs(rq->required_pem, rq->required_len, "required CAs", VERIFY_ANCHORS_MAX, rq->cache, hash,
                            &required, &n_required, err)) < 0 ||
            (r = check_required(verified, required, &out.required_index, err)) < 0)
            return r;
    }
    if (rq->cert_only)
        r = check_ca(leaf, verified, err);
    else if ((r = check_usage(rq, leaf, err)) == 0 && !rq->leaf_only)
        r = signature_verified(rq, leaf, out.chain_sha256[0], &out.alg, err);
    if (r < 0)
        return r;
    *res = out;
    return 0;
}
