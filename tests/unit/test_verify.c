/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Signature and chain verification against a PKI made here with OpenSSL: a root, an
 * intermediate, ECDSA P-256 and RSA leaves with codeSigning, and one certificate for each way a
 * chain or a signature can be wrong. The PKI is made once for all tests. */
#include "unit.h"

#include <errno.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "verify.h"
#include "verify_cache.h"

#define DAY (24 * 3600L)
#define YEAR (365 * DAY)

static const char data[] = "GuestOS image: the bytes that were signed\n";

struct pki {
    EVP_PKEY *root_key, *inter_key, *ec_key, *rsa_key, *other_key, *evil_key, *p384_key, *ed_key, *rsa1024_key;
    X509 *root, *inter, *leaf_ec, *leaf_rsa;
    X509 *other_root, *other_inter, *leaf_other; /* a hierarchy nobody trusts */
    X509 *evil_root, *evil_inter, *leaf_evil; /* ... whose root copies our root's name */
    X509 *leaf_expired, *leaf_future, *leaf_server, *leaf_no_eku, *leaf_no_ds, *leaf_no_ku;
    X509 *bad_inter, *leaf_under_bad, *self_signed, *leaf_p384, *leaf_ed, *leaf_rsa1024;
    X509_CRL *root_crl, *inter_crl_revoking, *inter_crl_expired;
};

/* --- making certificates --- */

struct cert_opts {
    const char *cn;
    EVP_PKEY *key;
    X509 *issuer; /* NULL: self-signed with key */
    EVP_PKEY *issuer_key;
    long not_before, not_after; /* seconds from now */
    const char *bc, *ku, *eku; /* extension values; NULL: absent */
    long serial;
};

static void add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    assert_non_null(ext);
    assert_int_equal(X509_add_ext(x, ext, -1), 1);
    X509_EXTENSION_free(ext);
}

static X509 *make_cert(const struct cert_opts *o)
{
    X509 *x = X509_new();
    assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
    ASN1_INTEGER_set(X509_get_serialNumber(x), o->serial ? o->serial : 1);
    X509_NAME *name = X509_NAME_new();
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"trustme test", -1, -1, 0);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)o->cn, -1, -1, 0);
    X509_set_subject_name(x, name);
    X509_set_issuer_name(x, o->issuer ? X509_get_subject_name(o->issuer) : name);
    X509_NAME_free(name);
    X509_gmtime_adj(X509_getm_notBefore(x), o->not_before ? o->not_before : -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), o->not_after ? o->not_after : 10 * YEAR);
    assert_int_equal(X509_set_pubkey(x, o->key), 1);
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, o->issuer ? o->issuer : x, x, NULL, NULL, 0);
    add_ext(x, &ctx, NID_subject_key_identifier, "hash");
    add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always");
    if (o->bc)
        add_ext(x, &ctx, NID_basic_constraints, o->bc);
    if (o->ku)
        add_ext(x, &ctx, NID_key_usage, o->ku);
    if (o->eku)
        add_ext(x, &ctx, NID_ext_key_usage, o->eku);
    assert_true(X509_sign(x, o->issuer_key ? o->issuer_key : o->key, EVP_sha256()) > 0);
    return x;
}

static X509 *make_ca(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key)
{
    return make_cert(&(struct cert_opts){.cn = cn,
                                         .key = key,
                                         .issuer = issuer,
                                         .issuer_key = issuer_key,
                                         .bc = "critical,CA:TRUE",
                                         .ku = "critical,keyCertSign,cRLSign"});
}

/* A code-signing leaf under the intermediate, changed by the caller's options. */
static X509 *make_leaf(struct pki *p, struct cert_opts o)
{
    if (!o.issuer) {
        o.issuer = p->inter;
        o.issuer_key = p->inter_key;
    }
    return make_cert(&o);
}

#define LEAF_DEFAULTS .bc = "critical,CA:FALSE", .ku = "critical,digitalSignature", .eku = "codeSigning"

static X509_CRL *make_crl(X509 *issuer, EVP_PKEY *key, long revoked_serial, long next_update)
{
    X509_CRL *c = X509_CRL_new();
    X509_CRL_set_version(c, 1);
    X509_CRL_set_issuer_name(c, X509_get_subject_name(issuer));
    ASN1_TIME *t = ASN1_TIME_new();
    X509_gmtime_adj(t, -3600);
    X509_CRL_set1_lastUpdate(c, t);
    X509_gmtime_adj(t, next_update);
    X509_CRL_set1_nextUpdate(c, t);
    if (revoked_serial) {
        X509_REVOKED *r = X509_REVOKED_new();
        ASN1_INTEGER *s = ASN1_INTEGER_new();
        ASN1_INTEGER_set(s, revoked_serial);
        X509_REVOKED_set_serialNumber(r, s);
        X509_gmtime_adj(t, -60);
        X509_REVOKED_set_revocationDate(r, t);
        X509_CRL_add0_revoked(c, r);
        ASN1_INTEGER_free(s);
    }
    ASN1_TIME_free(t);
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, NULL, NULL, c, 0);
    X509_EXTENSION *akid = X509V3_EXT_conf_nid(NULL, &ctx, NID_authority_key_identifier, "keyid:always");
    assert_non_null(akid);
    X509_CRL_add_ext(c, akid, -1);
    X509_EXTENSION_free(akid);
    X509_CRL_sort(c);
    assert_true(X509_CRL_sign(c, key, EVP_sha256()) > 0);
    return c;
}

static int pki_setup(void **state)
{
    struct pki *p = calloc(1, sizeof(*p));
    p->root_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    p->inter_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    p->ec_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    p->other_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    p->evil_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    p->p384_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    p->ed_key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    p->rsa_key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    p->rsa1024_key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    if (!p->root_key || !p->rsa_key || !p->ed_key || !p->rsa1024_key || !p->p384_key)
        return -1;

    p->root = make_ca("Test Root CA", p->root_key, NULL, NULL);
    p->inter = make_ca("Test Intermediate CA", p->inter_key, p->root, p->root_key);
    p->leaf_ec = make_leaf(p, (struct cert_opts){.cn = "leaf-ec", .key = p->ec_key, .serial = 100, LEAF_DEFAULTS});
    p->leaf_rsa = make_leaf(p, (struct cert_opts){.cn = "leaf-rsa", .key = p->rsa_key, .serial = 101, LEAF_DEFAULTS});

    p->other_root = make_ca("Other Root CA", p->other_key, NULL, NULL);
    p->other_inter = make_ca("Other Intermediate CA", p->other_key, p->other_root, p->other_key);
    p->leaf_other = make_cert(&(struct cert_opts){
        .cn = "leaf-other", .key = p->ec_key, .issuer = p->other_inter, .issuer_key = p->other_key, LEAF_DEFAULTS});
    p->evil_root = make_ca("Test Root CA", p->evil_key, NULL, NULL);
    p->evil_inter = make_ca("Test Intermediate CA", p->evil_key, p->evil_root, p->evil_key);
    p->leaf_evil = make_cert(&(struct cert_opts){
        .cn = "leaf-ec", .key = p->ec_key, .issuer = p->evil_inter, .issuer_key = p->evil_key, LEAF_DEFAULTS});

    p->leaf_expired =
        make_leaf(p, (struct cert_opts){.cn = "leaf-expired", .key = p->ec_key, .not_after = DAY, LEAF_DEFAULTS});
    p->leaf_future =
        make_leaf(p, (struct cert_opts){.cn = "leaf-future", .key = p->ec_key, .not_before = DAY, LEAF_DEFAULTS});
    p->leaf_server = make_leaf(p, (struct cert_opts){.cn = "leaf-server",
                                                     .key = p->ec_key,
                                                     .bc = "critical,CA:FALSE",
                                                     .ku = "critical,digitalSignature",
                                                     .eku = "serverAuth,clientAuth"});
    p->leaf_no_eku = make_leaf(
        p, (struct cert_opts){
               .cn = "leaf-no-eku", .key = p->ec_key, .bc = "critical,CA:FALSE", .ku = "critical,digitalSignature"});
    p->leaf_no_ds = make_leaf(p, (struct cert_opts){.cn = "leaf-no-ds",
                                                    .key = p->ec_key,
                                                    .bc = "critical,CA:FALSE",
                                                    .ku = "critical,keyAgreement",
                                                    .eku = "codeSigning"});
    p->leaf_no_ku = make_leaf(
        p, (struct cert_opts){.cn = "leaf-no-ku", .key = p->ec_key, .bc = "critical,CA:FALSE", .eku = "codeSigning"});
    p->bad_inter = make_cert(&(struct cert_opts){.cn = "Not a CA",
                                                 .key = p->inter_key,
                                                 .issuer = p->root,
                                                 .issuer_key = p->root_key,
                                                 .bc = "critical,CA:FALSE",
                                                 .ku = "critical,digitalSignature"});
    p->leaf_under_bad = make_cert(&(struct cert_opts){
        .cn = "leaf-under-bad", .key = p->ec_key, .issuer = p->bad_inter, .issuer_key = p->inter_key, LEAF_DEFAULTS});
    p->self_signed = make_cert(&(struct cert_opts){.cn = "leaf-self", .key = p->ec_key, LEAF_DEFAULTS});
    p->leaf_p384 = make_leaf(p, (struct cert_opts){.cn = "leaf-p384", .key = p->p384_key, LEAF_DEFAULTS});
    p->leaf_ed = make_leaf(p, (struct cert_opts){.cn = "leaf-ed25519", .key = p->ed_key, LEAF_DEFAULTS});
    p->leaf_rsa1024 = make_leaf(p, (struct cert_opts){.cn = "leaf-rsa1024", .key = p->rsa1024_key, LEAF_DEFAULTS});

    p->root_crl = make_crl(p->root, p->root_key, 0, 30 * DAY);
    p->inter_crl_revoking = make_crl(p->inter, p->inter_key, 100, 30 * DAY);
    p->inter_crl_expired = make_crl(p->inter, p->inter_key, 0, -60);
    *state = p;
    return 0;
}

static int pki_teardown(void **state)
{
    struct pki *p = *state;
    EVP_PKEY *keys[] = {p->root_key, p->inter_key, p->ec_key, p->rsa_key,    p->other_key,
                        p->evil_key, p->p384_key,  p->ed_key, p->rsa1024_key};
    X509 *certs[] = {p->root,        p->inter,       p->leaf_ec,    p->leaf_rsa,    p->other_root,   p->other_inter,
                     p->leaf_other,  p->evil_root,   p->evil_inter, p->leaf_evil,   p->leaf_expired, p->leaf_future,
                     p->leaf_server, p->leaf_no_eku, p->leaf_no_ds, p->leaf_no_ku,  p->bad_inter,    p->leaf_under_bad,
                     p->self_signed, p->leaf_p384,   p->leaf_ed,    p->leaf_rsa1024};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        EVP_PKEY_free(keys[i]);
    for (size_t i = 0; i < sizeof(certs) / sizeof(certs[0]); i++)
        X509_free(certs[i]);
    X509_CRL_free(p->root_crl);
    X509_CRL_free(p->inter_crl_revoking);
    X509_CRL_free(p->inter_crl_expired);
    free(p);
    return 0;
}

/* --- PEM and signatures --- */

struct pem {
    char buf[64 * 1024];
    size_t len;
};

static void pem_certs(struct pem *out, X509 *const *certs)
{
    BIO *bio = BIO_new(BIO_s_mem());
    for (; *certs; certs++)
        assert_int_equal(PEM_write_bio_X509(bio, *certs), 1);
    int n = BIO_read(bio, out->buf, sizeof(out->buf) - 1);
    assert_true(n > 0);
    out->buf[n] = '\0';
    out->len = (size_t)n;
    BIO_free(bio);
}
#define PEM_CERTS(out, ...) pem_certs(out, (X509 *const[]){__VA_ARGS__, NULL})

static void pem_crls(struct pem *out, X509_CRL *const *crls)
{
    BIO *bio = BIO_new(BIO_s_mem());
    for (; *crls; crls++)
        assert_int_equal(PEM_write_bio_X509_CRL(bio, *crls), 1);
    int n = BIO_read(bio, out->buf, sizeof(out->buf) - 1);
    out->buf[n] = '\0';
    out->len = (size_t)n;
    BIO_free(bio);
}
#define PEM_CRLS(out, ...) pem_crls(out, (X509_CRL *const[]){__VA_ARGS__, NULL})

enum sig_kind { SIG_PLAIN, SIG_PSS, SIG_PSS_MAX_SALT, SIG_PKCS1 };

static size_t sign(EVP_PKEY *key, enum sig_kind kind, const void *msg, size_t len, uint8_t out[512])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    assert_int_equal(EVP_DigestSignInit_ex(md, &pctx, EVP_PKEY_get_base_id(key) == EVP_PKEY_ED25519 ? NULL : "SHA256",
                                           NULL, NULL, key, NULL),
                     1);
    if (kind == SIG_PSS || kind == SIG_PSS_MAX_SALT) {
        assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
        assert_int_equal(
            EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, kind == SIG_PSS ? RSA_PSS_SALTLEN_DIGEST : RSA_PSS_SALTLEN_MAX), 1);
    } else if (kind == SIG_PKCS1) {
        assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING), 1);
    }
    size_t n = 512;
    assert_int_equal(EVP_DigestSign(md, out, &n, msg, len), 1);
    EVP_MD_CTX_free(md);
    return n;
}

/* A request for data signed by key, with chain and anchors as given. */
struct req {
    struct verify_request rq;
    struct pem chain, anchors, crls;
    uint8_t sig[512];
};

static void req_init(struct req *r, EVP_PKEY *key, enum sig_kind kind)
{
    memset(r, 0, sizeof(*r));
    r->rq.data = (const uint8_t *)data;
    r->rq.data_len = sizeof(data) - 1;
    r->rq.sig_len = sign(key, kind, data, sizeof(data) - 1, r->sig);
    r->rq.sig = r->sig;
    r->rq.chain_pem = r->chain.buf;
    r->rq.anchors_pem = r->anchors.buf;
    r->rq.eku = "codeSigning";
}

/* The second run of the whole group has every request go through the cache (verify_cache.h). */
static bool use_cache;

static void req_set(struct req *r)
{
    r->rq.cache |= use_cache;
    r->rq.chain_len = r->chain.len;
    r->rq.anchors_len = r->anchors.len;
    if (r->crls.len) {
        r->rq.crls_pem = r->crls.buf;
        r->rq.crls_len = r->crls.len;
    }
}

static int run(struct req *r, struct verify_result *res, tm_err *err)
{
    req_set(r);
    memset(res, 0x5a, sizeof(*res));
    int rc = verify_signed(&r->rq, res, err);
    if (rc < 0) {
        /* Written only on success. */
        for (size_t i = 0; i < sizeof(*res); i++)
            assert_int_equal(((uint8_t *)res)[i], 0x5a);
    }
    return rc;
}

#define expect_fail(r, rc, text)                                            \
    do {                                                                    \
        struct verify_result res_;                                          \
        tm_err err_ = {0};                                                  \
        int got_ = run((r), &res_, &err_);                                  \
        if (got_ != (rc)) {                                                 \
            print_error("expected %d, got %d: %s\n", (rc), got_, err_.msg); \
            fail();                                                         \
        }                                                                   \
        assert_err_contains(&err_, (text));                                 \
    } while (0)

static void expect_ok(struct req *r, struct verify_result *res)
{
    tm_err err = {0};
    int rc = run(r, res, &err);
    if (rc != 0)
        fail_msg("verify_signed: %d %s", rc, err.msg);
}

/* --- what passes --- */

static void valid_ecdsa(void **state)
{
    struct pki *p = *state;
    struct req r;
    struct verify_result res;
    req_init(&r, p->ec_key, SIG_PLAIN);
    PEM_CERTS(&r.chain, p->leaf_ec, p->inter);
    PEM_CERTS(&r.anchors, p->root);
    expect_ok(&r, &res);
    assert_string_equal(res.leaf_subject, "CN=leaf-ec,O=trustme test");
    assert_string_equal(res.anchor_subject, "CN=Test Root CA,O=trustme test");
    assert_int_equal(res.chain_len, 3);
    assert_int_equal(res.alg, VERIFY_ECDSA_P256_SHA256);
    uint8_t fp[32];
    unsigned int n;
    assert_int_equal(X509_digest(p->root, EVP_sha256(), fp, &n), 1);
    assert_memory_equal(res.anchor_sha256, fp, 32);
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", fp[i]);
    assert_string_equal(res.anchor_sha256_hex, hex);

    /* The EKU by OID and by NID. */
    r.rq.eku = "1.3.6.1.5.5.7.3.3";
    expect_ok(&r, &res);
    r.rq.eku = NULL;
    r.rq.eku_nid = NID_code_sign;
    expect_ok(&r, &res);
}

static void valid_with_more_anchors_and_root_sent(void **state)
{
    struct pki *p = *state;
    struct req r;
    struct verify_result res;
    req_init(&r, p->ec_key, SIG_PLAIN);
    /* Sending the root along changes nothing; the anchor found is the one we hold. */
    PEM_CERTS(&r.chain, p->leaf_ec, p->inter, p->root);
    PEM_CERTS(&r.anchors, p->other_root, p->root);
    expect_ok(&r, &res);
    assert_string_equal(res.anchor_subject, "CN=Test Root CA,O=trustme test");
    assert_int_equal(res.chain_len, 3);
    /* Text around the PEM blocks is ignored, as `openssl x509 -text` leaves it. */
    char with_text[sizeof(r.chain.buf)];
    snprintf(with_text, sizeof(with_text), "Certificate:\n  subject...\n%s", r.chain.buf);
    memcpy(r.chain.buf, with_text, sizeof(with_text));
    r.chain.len = strlen(r.chain.buf);
    expect_ok(&r, &res);
}

static void valid_rsa_pss(void **state)
{
    struct pki *p = *state;
    struct req r;
    struct verify_result res;
    req_init(&r, p->rsa_key, SIG_PSS);
    PEM_CERTS(&r.chain, p->leaf_rsa, p->inter);
    PEM_CERTS(&r.anchors, p->root);
    expect_ok(&r, &res);
    assert_string_equal(res.leaf_subject, "CN=leaf-rsa,O=trustme test");
    assert_int_equal(res.alg, VERIFY_RSA_PSS_SHA256);
}

/* --- the signature --- */

static void wrong_data(void **state)
{
    struct pki *p = *state;
    struct req r;
    req_init(&r, p->ec_key, SIG_PLAIN);
    PEM_CERTS(&r.chain, p->leaf_ec, p->inter);
    PEM_CERTS(&r.anchors, p->root);
    char other[sizeof(data)];
    memcpy(other, data, sizeof(data));
    other[0] ^= 1;
    r.rq.data = (const uint8_t *)other;
    expect_fail(&r, -EBADMSG,
                "signature does not verify over the data with the signer's EC "
                "P-256 key");
    r.rq.data_len = 0;
    expect_fail(&r, -EBADMSG, "signature does not verify");
}

static void wrong_signature(void **state)
{
    struct pki *p = *state;
    struct req r;
    req_init(&r, p->ec_key, SIG_PLAIN);
    PEM_CERTS(&r.chain, p->leaf_ec, p->inter);
    PEM_CERTS(&r.anchors, p->root);
    r.sig[r.rq.sig_len - 1] ^= 1;
    expect_fail(&r, -EBADMSG, "signature does not verify");
    r.sig[r.rq.sig_len - 1] ^= 1;
    r.rq.sig_len--; /* truncated DER */
    expect_fail(&r, -EBADMSG, "signature does not verify");
    r.rq.sig_len = 0;
    expect_fail(&r, -EINVAL, "no signature given");
    /* Another key's signature. */
    r.rq.sig_len = sign(p->other_key, SIG_PLAIN, data, sizeof(data) - 1, r.sig);
    expect_fail(&r, -EBADMSG, "signature does not verify");
}

static void rsa_needs_pss_with_digest_salt(void **state)
{
    struct pki *p = *state;
    struct req r;
    req_init(&r, p->rsa_key, SIG_PKCS1);
    PEM_CERTS(&r.chain, p->leaf_rsa, p->inter);
    PEM_CERTS(&r.anchors, p->root);
    expect_fail(&r, -EBADMSG, "expected RSA-PSS with SHA-256, salt 32 bytes");
    r.rq.sig_len = sign(p->rsa_key, SIG_PSS_MAX_SALT, data, sizeof(data) - 1, r.sig);
    expect_fail(&r, -EBADMSG, "signature does not verify");
}

static void unsupported_keys(void **state)
{
    struct pki *p = *state;
    struct req r;
    req_init(&r, p->p384_key, SIG_PLAIN);
    PEM_CERTS(&r.chain, p->leaf_p384, p->inter);
    PEM_CERTS(&r.anchors, p->root);
    expect_fail(&r, -EOPNOTSUPP, "signer key is on curve secp384r1: only P-256");
    req_init(&r, p->ed_key, SIG_PLAIN);
    PEM_CERTS(&r.chain, p->leaf_ed, p->inter);
    PEM_CERTS(&r.anchors, p->root);
    expect_fail(&r, -EOPNOTSUPP, "signer key type ED25519 is not accepted");
    req_init(&r, p->rsa1024_key, SIG_PSS);
    PEM_CERTS(&r.chain, p->leaf_rsa1024, p->inter);
    PEM_CERTS(&r.anchors, p->root);
    expect_fail(&r, -EOPNOTSUPP, "RSA with 1024 bits: at least 2048");
}

/* --- the chain --- */

static void untrusted_root(void **state)
{
    struct pki *p = *state;
    struct req r;
    req_init(&r, p->ec_key, SIG_PLAIN);
    PEM_CERTS(&r.chain, p->leaf_ec, p->inter);
    PEM_CERTS(&r.anchors, p->other_root);
    expect_fail(&r, -EKEYREJECTED,
                "certificate chain: unable to get local issuer certificate at "
                "depth 1 (CN=Test Intermediate CA,O=trustme test)");
    /* A whole other hierarchy, root included: sent is not trusted. */
    PEM_CERTS(&r.chain, p->leaf_other, p->other_inter, p->other_root);
    PEM_CERTS(&r.anchors, p->root);
    expect_fail(&r, -EKEYREJECTED,
                "certificate chain: self-signed certificate in certificate "
                "chain at depth 2 (CN=Other Root CA,O=trustme test)");
    /* A root that copies the trusted root's name does not pass for it. */
    PEM_CERTS(&r.chain, p->leaf_evil, p->evil_inter, p->evil_root);
    expect_fail(&r, -EKEYREJECTED,
                "certificate chain: self-signed certificate in certificate "
                "chain at depth 2 (CN=Test Root CA,O=trustme test)");
    PEM_CERTS(&r.chain, p->leaf_evil, p->evil_inter);
    expect_fail(&r, -EKEYREJECTED, "at depth 1 (CN=Test Intermediate CA,O=trustme test)");
}

static void missing_intermediate(void **state)
{
    struct pki *p = *state;
    struct req r;
    req_init(&r, p->ec_key, SIG_PLAIN);
    PEM_CERTS(&r.chain, p->leaf_ec);
    PEM_CERTS(&r.anchors, p->root);
    expect_fail(&r, -EKEYREJECTED,
                "unable to get local issuer certificate at depth 0 "
                "(CN=leaf-ec,O=trustme test)");
}

static void expired_and_not_yet_valid(void **state)
{
    struct pki *p = *state;
    struct req r;
    struct verify_result res;
    req_init(&r, p->ec_key, SIG_PLAIN);
    PEM_CERTS(&r.chain, p->leaf_expired, p->inter);
    PEM_CERTS(&r.anchors, p->root);
    expect_ok(&r, &res); /* today it is valid */
    r.rq.time = time(NULL) + 2 * DAY;
    expect_fail(&r, -EKEYREJECTED,
                "certificate chain: certificate has expired at depth 0 "
                "(CN=leaf-expired,O=trustme test)");
    req_init(&r, p->ec_key, SIG_PLAIN);
    PEM_CERTS(&r.chain, p->leaf_future, p->inter);
    PEM_CERTS(&r.anchors, p->root);
    expect_fail(&r, -EKEYREJECTED, "certificate is not yet valid at depth 0 (CN=leaf-future");
    r.rq.time = time(NULL) + 2 * DAY;
    expect_ok(&r, &res);
    r.rq.time = time(NULL) + 20 * YEAR; /* past the CAs too */
    expect_fail(&r, -EKEYREJECTED, "certificate has expired");
}

static void intermediate_not_a_ca(void **state)
{
    struct pki *p = *state;
    struct req r;
    req_init(&r, p->ec_key, SIG_PLAIN);
    PEM_CERTS(&r.chain, p->leaf_under_bad, p->bad_inter);
    PEM_CERTS(&r.anchors, p->root);
    expect_fail(&r, -EKEYREJECTED,
                "certificate chain: invalid CA certificate at depth 1 "
                "(CN=Not a CA,O=trustme test)");
}

static void self_signed_leaf(void **state)
{
    struct pki *p = *state;
    struct req r;
    req_init(&r, p->ec_key, SIG_PLAIN);
    PEM_CERTS(&r.chain, p->self_signed);
    PEM_CERTS(&r.anchors, p->root);
    expect_fail(&r, -EKEYREJECTED,
                "certificate chain: self-signed certificate at depth 0 "
                "(CN=leaf-self,O=trustme test)");
}

/* --- usages --- */

static void extended_key_usage(void **state)
{
    struct pki *p = *state;
    struct req r;
    req_init(&r, p->ec_key, SIG_PLAIN);
    PEM_CERTS(&r.chain, p->leaf_server, p->inter);
    PEM_CERTS(&r.anchors, p->root);
    expect_fail(&r, -EKEYREJECTED,
                "signer certificate's extendedKeyUsage lacks Code Signing "
                "(1.3.6.1.5.5.7.3.3)");
    r.rq.eku = "serverAuth";
    struct verify_result res;
    expect_ok(&r, &res);
    PEM_CERTS(&r.chain, p->leaf_no_eku, p->inter);
    r.rq.eku = "codeSigning";
    expect_fail(&r, -EKEYREJECTED, "signer certificate has no extendedKeyUsage extension");
    PEM_CERTS(&r.chain, p->leaf_ec, p->inter);
    r.rq.eku = "noSuchUsage";
    expect_fail(&r, -EINVAL, "required extended key usage \"noSuchUsage\" is not known");
    r.rq.eku = NULL;
    expect_fail(&r, -EINVAL, "no required extended key usage given");
}

static void key_usage(void **state)
{
    struct pki *p = *state;
    struct req r;
    req_init(&r, p->ec_key, SIG_PLAIN);
    PEM_CERTS(&r.chain, p->leaf_no_ds, p->inter);
    PEM_CERTS(&r.anchors, p->root);
    expect_fail(&r, -EKEYREJECTED, "signer certificate's keyUsage lacks digitalSignature");
    PEM_CERTS(&r.chain, p->leaf_no_ku, p->inter);
    expect_fail(&r, -EKEYREJECTED, "signer certificate has no keyUsage extension");
}

/* --- revocation --- */

static void revoked_leaf(void **state)
{
    struct pki *p = *state;
    struct req r;
    struct verify_result res;
    req_init(&r, p->ec_key, SIG_PLAIN);
    PEM_CERTS(&r.chain, p->leaf_ec, p->inter);
    PEM_CERTS(&r.anchors, p->root);
    PEM_CRLS(&r.crls, p->root_crl, p->inter_crl_revoking);
    expect_fail(&r, -EKEYREVOKED,
                "certificate chain: certificate revoked at depth 0 "
                "(CN=leaf-ec,O=trustme test)");
    /* The same CRLs let an unrevoked leaf through. */
    req_init(&r, p->rsa_key, SIG_PSS);
    PEM_CERTS(&r.chain, p->leaf_rsa, p->inter);
    PEM_CERTS(&r.anchors, p->root);
    PEM_CRLS(&r.crls, p->root_crl, p->inter_crl_revoking);
    expect_ok(&r, &res);
    /* Checking all: the intermediate needs the root's CRL too. */
    /* A revocation status that cannot be established has a code of its own (ENODATA): an
     * installed GuestOS is refused for it like for a revocation. */
    PEM_CRLS(&r.crls, p->inter_crl_revoking);
    expect_fail(&r, -ENODATA,
                "unable to get certificate CRL at depth 1 "
                "(CN=Test Intermediate CA,O=trustme test)");
    PEM_CRLS(&r.crls, p->root_crl, p->inter_crl_expired);
    expect_fail(&r, -ENODATA, "CRL has expired at depth 0");
    /* CRLs that are no CRLs: the same. */
    r.crls.buf[0] = '\n';
    r.crls.len = 1;
    expect_fail(&r, -ENODATA, "CRLs: no \"X509 CRL\" PEM block found");
}

/* --- leaf_only: a chain and its usages, no signature (the AK certificate of a TPM quote) --- */

static void leaf_only_request(struct req *r)
{
    memset(r, 0, sizeof(*r));
    r->rq.chain_pem = r->chain.buf;
    r->rq.anchors_pem = r->anchors.buf;
    r->rq.leaf_only = true;
    r->rq.eku = "clientAuth";
}

static void leaf_only(void **state)
{
    struct pki *p = *state;
    struct req r;
    struct verify_result res;
    leaf_only_request(&r);
    PEM_CERTS(&r.chain, p->leaf_server, p->inter);
    PEM_CERTS(&r.anchors, p->root);
    expect_ok(&r, &res);
    assert_int_equal(res.chain_len, 3);
    assert_int_equal(res.alg, 0);
    assert_string_equal(res.leaf_subject, "CN=leaf-server,O=trustme test");
    /* The usages are still required. */
    r.rq.eku = "codeSigning";
    expect_fail(&r, -EKEYREJECTED, "extendedKeyUsage lacks Code Signing");
    r.rq.eku = NULL;
    expect_fail(&r, -EINVAL, "no required extended key usage given");
    r.rq.eku = "clientAuth";
    PEM_CERTS(&r.chain, p->leaf_no_ds, p->inter);
    expect_fail(&r, -EKEYREJECTED, "keyUsage lacks digitalSignature");
    /* The chain is verified as in the other modes: anchors only, dates, CRLs. */
    PEM_CERTS(&r.chain, p->leaf_other, p->other_inter, p->other_root);
    r.rq.eku = "codeSigning";
    expect_fail(&r, -EKEYREJECTED,
                "certificate chain: self-signed certificate in certificate "
                "chain at depth 2 (CN=Other Root CA");
    PEM_CERTS(&r.chain, p->leaf_expired, p->inter);
    r.rq.time = time(NULL) + 2 * DAY;
    expect_fail(&r, -EKEYREJECTED, "certificate has expired at depth 0");
    r.rq.time = 0;
    PEM_CERTS(&r.chain, p->leaf_ec, p->inter);
    PEM_CRLS(&r.crls, p->root_crl, p->inter_crl_revoking);
    expect_fail(&r, -EKEYREVOKED, "certificate revoked at depth 0");
    /* A signature given anyway is ignored, not checked. */
    r.crls.len = 0;
    r.rq.crls_len = 0;
    r.rq.sig = (const uint8_t *)"junk";
    r.rq.sig_len = 4;
    expect_ok(&r, &res);
    r.rq.cert_only = true;
    expect_fail(&r, -EINVAL, "cert_only and leaf_only exclude each other");
}

/* --- malformed input --- */

static void malformed_input(void **state)
{
    struct pki *p = *state;
    struct req r;
    req_init(&r, p->ec_key, SIG_PLAIN);
    PEM_CERTS(&r.anchors, p->root);
    strcpy(r.chain.buf, "");
    r.chain.len = 0;
    expect_fail(&r, -EINVAL, "signer certificate chain: no \"CERTIFICATE\" PEM block found");
    strcpy(r.chain.buf, "garbage\n");
    r.chain.len = strlen(r.chain.buf);
    expect_fail(&r, -EINVAL, "signer certificate chain: no \"CERTIFICATE\" PEM block found");

    /* A private key where a certificate belongs. */
    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, p->ec_key, NULL, NULL, 0, NULL, NULL);
    int n = BIO_read(bio, r.chain.buf, sizeof(r.chain.buf) - 1);
    BIO_free(bio);
    r.chain.buf[n] = '\0';
    r.chain.len = (size_t)n;
    expect_fail(&r, -EINVAL, "PEM block 1 is \"PRIVATE KEY\", expected \"CERTIFICATE\"");

    /* Cut in the middle of a block. */
    PEM_CERTS(&r.chain, p->leaf_ec, p->inter);
    r.chain.len = r.chain.len - 100;
    expect_fail(&r, -EINVAL, "signer certificate chain: PEM block 2 is malformed");

    /* Valid base64, not a certificate; and a certificate with bytes after it. */
    strcpy(r.chain.buf, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    r.chain.len = strlen(r.chain.buf);
    expect_fail(&r, -EINVAL, "certificate 1 is not valid DER");
    unsigned char *der = NULL;
    int dlen = i2d_X509(p->leaf_ec, &der);
    unsigned char *longer = malloc((size_t)dlen + 2);
    memcpy(longer, der, (size_t)dlen);
    longer[dlen] = 0;
    longer[dlen + 1] = 0;
    bio = BIO_new(BIO_s_mem());
    PEM_write_bio(bio, "CERTIFICATE", "", longer, dlen + 2);
    n = BIO_read(bio, r.chain.buf, sizeof(r.chain.buf) - 1);
    BIO_free(bio);
    OPENSSL_free(der);
    free(longer);
    r.chain.buf[n] = '\0';
    r.chain.len = (size_t)n;
    expect_fail(&r, -EINVAL, "certificate 1 is not valid DER");

    /* Too long a chain. */
    PEM_CERTS(&r.chain, p->leaf_ec, p->inter, p->inter, p->inter, p->inter, p->inter, p->inter, p->inter, p->inter);
    expect_fail(&r, -EINVAL, "signer certificate chain: more than 8 entries");

    /* Anchors and CRLs are read as strictly. */
    PEM_CERTS(&r.chain, p->leaf_ec, p->inter);
    r.anchors.len = 0;
    expect_fail(&r, -EINVAL, "trust anchors: no \"CERTIFICATE\" PEM block found");
    PEM_CERTS(&r.anchors, p->root);
    PEM_CERTS(&r.crls, p->root);
    /* CRLs that are no CRLs leave the revocation status unknown: ENODATA, not EINVAL. */
    expect_fail(&r, -ENODATA, "CRLs: PEM block 1 is \"CERTIFICATE\", expected \"X509 CRL\"");
    r.crls.len = 0;
    r.rq.crls_len = 0;
    r.rq.chain_pem = NULL;
    expect_fail(&r, -EINVAL, "no signer certificate chain given");
}

/* --- the cache: reused for the same bytes, never for changed ones or another moment --- */

static void cache_reuse_and_revocation(void **state)
{
    struct pki *p = *state;
    struct req r;
    struct verify_result res, first;
    struct vcache_stats st;
    X509_CRL *clean = make_crl(p->inter, p->inter_key, 0, 30 * DAY);
    vcache_flush();
    req_init(&r, p->ec_key, SIG_PLAIN);
    r.rq.cache = true;
    PEM_CERTS(&r.chain, p->leaf_ec, p->inter);
    PEM_CERTS(&r.anchors, p->root);
    PEM_CRLS(&r.crls, p->root_crl, clean);
    expect_ok(&r, &first);
    expect_ok(&r, &res);
    vcache_stats(&st);
    assert_int_equal(st.chain_misses, 1);
    assert_int_equal(st.chain_hits, 1);
    assert_memory_equal(&first, &res, sizeof(res));
    assert_int_equal(st.sig_hits, 1);
    /* A signature is kept only for the very data, signature and signer that verified. */
    r.sig[8] ^= 1;
    expect_fail(&r, -EBADMSG, "signature does not verify");
    r.sig[8] ^= 1;
    static const char other[] = "GuestOS image: other bytes, the same signature\n";
    r.rq.data = (const uint8_t *)other;
    r.rq.data_len = sizeof(other) - 1;
    expect_fail(&r, -EBADMSG, "signature does not verify");
    r.rq.data = (const uint8_t *)data;
    r.rq.data_len = sizeof(data) - 1;
    expect_ok(&r, &res);
    /* The CA's new CRL revokes the leaf: other bytes, another key, verified again. */
    PEM_CRLS(&r.crls, p->root_crl, p->inter_crl_revoking);
    expect_fail(&r, -EKEYREVOKED, "certificate revoked at depth 0");
    /* The CRL withdrawn altogether: the revocation status is unknown, not the old verdict. */
    PEM_CRLS(&r.crls, p->root_crl);
    expect_fail(&r, -ENODATA, "unable to get certificate CRL");
    /* Without CRLs the request asks for no revocation checking, and is another key too. */
    r.crls.len = 0;
    r.rq.crls_pem = NULL;
    r.rq.crls_len = 0;
    expect_ok(&r, &res);
    vcache_stats(&st);
    assert_int_equal(st.chain_hits, 4); /* the four above with the first CRLs; nothing since */
    X509_CRL_free(clean);
}

static void cache_time(void **state)
{
    struct pki *p = *state;
    struct req r;
    struct verify_result res;
    time_t now = time(NULL);
    vcache_flush();
    /* A leaf valid for one more day, verified and kept now ... */
    req_init(&r, p->ec_key, SIG_PLAIN);
    r.rq.cache = true;
    PEM_CERTS(&r.chain, p->leaf_expired, p->inter);
    PEM_CERTS(&r.anchors, p->root);
    PEM_CRLS(&r.crls, p->root_crl, p->inter_crl_revoking);
    r.rq.time = now;
    expect_ok(&r, &res);
    r.rq.time = now + 60;
    expect_ok(&r, &res);
    struct vcache_stats st;
    vcache_stats(&st);
    assert_int_equal(st.chain_hits, 1);
    /* ... is expired two days later, whatever was kept. */
    r.rq.time = now + 2 * DAY;
    expect_fail(&r, -EKEYREJECTED, "certificate has expired at depth 0");
    /* A CRL past its nextUpdate (30 days): the status is unknown again. */
    PEM_CERTS(&r.chain, p->leaf_rsa, p->inter);
    req_init(&r, p->rsa_key, SIG_PSS);
    r.rq.cache = true;
    PEM_CERTS(&r.chain, p->leaf_rsa, p->inter);
    PEM_CERTS(&r.anchors, p->root);
    PEM_CRLS(&r.crls, p->root_crl, p->inter_crl_revoking);
    r.rq.time = now;
    expect_ok(&r, &res);
    r.rq.time = now + 31 * DAY;
    expect_fail(&r, -ENODATA, "CRL has expired");
    /* And before the CRL's lastUpdate (an hour ago), not yet valid. */
    r.rq.time = now - 2 * 3600;
    expect_fail(&r, -ENODATA, "CRL is not yet valid");
    r.rq.time = now + 1;
    expect_ok(&r, &res);
}

/* More distinct inputs than the cache holds: the oldest entries are replaced, every verdict
 * stays right. Text before a PEM block is ignored, so a different first line is other bytes for
 * the same certificates. */
static void cache_eviction(void **state)
{
    struct pki *p = *state;
    struct req r;
    struct verify_result res;
    vcache_flush();
    for (int i = 0; i < VCACHE_CHAIN_ENTRIES + VCACHE_PEM_ENTRIES / 2 + 10; i++) {
        req_init(&r, p->ec_key, SIG_PLAIN);
        r.rq.cache = true;
        PEM_CERTS(&r.chain, p->leaf_ec, p->inter);
        char head[32];
        int n = snprintf(head, sizeof(head), "chain %d\n", i);
        memmove(r.chain.buf + n, r.chain.buf, r.chain.len + 1);
        memcpy(r.chain.buf, head, (size_t)n);
        r.chain.len += (size_t)n;
        PEM_CERTS(&r.anchors, p->root);
        PEM_CRLS(&r.crls, p->root_crl, p->inter_crl_revoking);
        /* leaf_ec is revoked by this CRL: every time, from the cache or not */
        expect_fail(&r, -EKEYREVOKED, "certificate revoked at depth 0");
        r.crls.len = 0;
        r.rq.crls_pem = NULL;
        r.rq.crls_len = 0;
        expect_ok(&r, &res);
        expect_ok(&r, &res);
    }
    struct vcache_stats st;
    vcache_stats(&st);
    assert_true(st.chain_hits >= VCACHE_CHAIN_ENTRIES);
    vcache_flush();
}

static int cache_on(void **state)
{
    use_cache = true;
    vcache_flush();
    return pki_setup(state);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid_ecdsa),
        cmocka_unit_test(valid_with_more_anchors_and_root_sent),
        cmocka_unit_test(valid_rsa_pss),
        cmocka_unit_test(wrong_data),
        cmocka_unit_test(wrong_signature),
        cmocka_unit_test(rsa_needs_pss_with_digest_salt),
        cmocka_unit_test(unsupported_keys),
        cmocka_unit_test(untrusted_root),
        cmocka_unit_test(missing_intermediate),
        cmocka_unit_test(expired_and_not_yet_valid),
        cmocka_unit_test(intermediate_not_a_ca),
        cmocka_unit_test(self_signed_leaf),
        cmocka_unit_test(extended_key_usage),
        cmocka_unit_test(key_usage),
        cmocka_unit_test(revoked_leaf),
        cmocka_unit_test(leaf_only),
        cmocka_unit_test(malformed_input),
        cmocka_unit_test(cache_reuse_and_revocation),
        cmocka_unit_test(cache_time),
        cmocka_unit_test(cache_eviction),
    };
    int failed = cmocka_run_group_tests_name("verify", tests, pki_setup, pki_teardown);
    /* Everything again with every request through the cache: the same verdicts. */
    return failed + cmocka_run_group_tests_name("verify, cached", tests, cache_on, pki_teardown);
}
