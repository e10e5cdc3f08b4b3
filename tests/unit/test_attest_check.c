/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The verifier's checks on real quote structures made without a TPM: a TPMS_ATTEST marshalled
 * with tss2-mu and signed by an OpenSSL P-256 "AK", its TPMT_SIGNATURE and TPMT_PUBLIC, an AK
 * certificate from a CA made here, an event log and the PCR values it replays to. The healthy
 * evidence passes; each attack fails exactly the check named for it. */
#include "unit.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <tss2/tss2_mu.h>

#include "attest_check.h"
#include "cleanup.h"
#include "crypto.h"
#include "measurement.h"
#include "refvalues.h"

#define YEAR (365 * 24 * 3600L)
#define N_EVENTS 7
#define PCR_BOOT 12
#define PCR_RUNTIME 11

struct fixture {
    EVP_PKEY *root_key, *other_root_key, *ak, *other_ak, *signer_key, *dca_key, *rca_key;
    X509 *root, *other_root, *leaf, *leaf_other_ca, *signer;
    /* Under the root, as in the trustme PKI: a Device CA and a RIM-signing CA. The basic
     * fixture's leaf and signer are issued by the root itself, which the basic policy pins
     * for both roles; the role tests pin these two. */
    X509 *device_ca, *rim_ca;
    X509_CRL *crl_revoking_leaf;
    char *anchors; /* the root only: other_root is nobody's anchor */
    char *crl_pem;
    struct ca_pins root_pin, device_ca_pin, rim_ca_pin;
    struct refvalues *refs, *refs_missing;
};

static const struct {
    uint32_t pcr;
    const char *type, *name, *content;
} events[N_EVENTS] = {
    {PCR_BOOT, TM_EVENT_BINARY, "trustmed", "trustmed binary"},
    {PCR_BOOT, TM_EVENT_BINARY, "trustme-scd", "scd binary"},
    {PCR_BOOT, TM_EVENT_BINARY, "trustme-tpmd", "tpmd binary"},
    {PCR_BOOT, TM_EVENT_DEVICE_CONFIG, "device.json", "{}"},
    {PCR_RUNTIME, TM_EVENT_GUESTOS_CONFIG, "bb-1/guestos.json", "guestos"},
    {PCR_RUNTIME, TM_EVENT_GUESTOS_IMAGE, "bb-1/root.img", "image"},
    {PCR_RUNTIME, TM_EVENT_CONTAINER_CONFIG, "web", "container config"},
};

/* --- certificates --- */

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    assert_non_null(ext);
    assert_int_equal(X509_add_ext(x, ext, -1), 1);
    X509_EXTENSION_free(ext);
}

static X509 *make_cert_ca(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key, long serial,
                          const char *eku, bool ca_leaf)
{
    X509 *x = X509_new();
    X509_set_version(x, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_NAME *name = X509_NAME_new();
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_subject_name(x, name);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
    X509_NAME_free(name);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), YEAR);
    X509_set_pubkey(x, key);
    add_ext(x, issuer ? issuer : x, NID_subject_key_identifier, "hash");
    add_ext(x, issuer ? issuer : x, NID_authority_key_identifier, "keyid:always");
    if (eku) {
        /* ca_leaf: what an attacker with a CA:TRUE leaf had issued, a "leaf" that may issue others */
        add_ext(x, issuer, NID_basic_constraints, ca_leaf ? "critical,CA:TRUE" : "critical,CA:FALSE");
        add_ext(x, issuer, NID_key_usage,
                ca_leaf ? "critical,digitalSignature,keyCertSign" : "critical,digitalSignature");
        add_ext(x, issuer, NID_ext_key_usage, eku);
    } else {
        add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign");
    }
    assert_true(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
    return x;
}

static X509 *make_cert(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key, long serial, const char *eku)
{
    return make_cert_ca(cn, key, issuer, issuer_key, serial, eku, false);
}

static struct ca_pins pin_of(X509 *ca)
{
    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(bio, ca);
    char *data;
    long n = BIO_get_mem_data(bio, &data);
    struct ca_pins p;
    tm_err err = {0};
    if (ca_pins_parse(data, (size_t)n, "pin", &p, &err) < 0)
        fail_msg("ca_pins_parse: %s", err.msg);
    BIO_free(bio);
    return p;
}

static X509_CRL *make_crl(X509 *issuer, EVP_PKEY *key, long revoked)
{
    X509_CRL *c = X509_CRL_new();
    X509_CRL_set_version(c, 1);
    X509_CRL_set_issuer_name(c, X509_get_subject_name(issuer));
    ASN1_TIME *t = ASN1_TIME_new();
    X509_gmtime_adj(t, -3600);
    X509_CRL_set1_lastUpdate(c, t);
    X509_gmtime_adj(t, 30 * 24 * 3600L);
    X509_CRL_set1_nextUpdate(c, t);
    X509_REVOKED *r = X509_REVOKED_new();
    ASN1_INTEGER *s = ASN1_INTEGER_new();
    ASN1_INTEGER_set(s, revoked);
    X509_REVOKED_set_serialNumber(r, s);
    X509_gmtime_adj(t, -60);
    X509_REVOKED_set_revocationDate(r, t);
    X509_CRL_add0_revoked(c, r);
    ASN1_INTEGER_free(s);
    ASN1_TIME_free(t);
    X509_CRL_sort(c);
    assert_true(X509_CRL_sign(c, key, EVP_sha256()) > 0);
    return c;
}

static char *bio_string(BIO *bio)
{
    char *data;
    long n = BIO_get_mem_data(bio, &data);
    char *s = malloc((size_t)n + 1);
    memcpy(s, data, (size_t)n);
    s[n] = '\0';
    BIO_free(bio);
    return s;
}

static char *pem_of(X509 *a, X509 *b)
{
    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(bio, a);
    if (b)
        PEM_write_bio_X509(bio, b);
    return bio_string(bio);
}

static size_t sign_der(EVP_PKEY *key, const void *data, size_t len, uint8_t *out, size_t size)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestSignInit_ex(md, NULL, "SHA256", NULL, NULL, key, NULL), 1);
    size_t n = size;
    assert_int_equal(EVP_DigestSign(md, out, &n, data, len), 1);
    EVP_MD_CTX_free(md);
    return n;
}

/* --- reference values --- */

static void content_hash(size_t i, uint8_t out[32])
{
    tm_sha256(events[i].content, strlen(events[i].content), out);
}

static void iso_time(long offset, char out[21])
{
    time_t t = time(NULL) + offset;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 21, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Version 2: rim_version, valid from nb_offset to na_offset seconds from now, PCRs 11 and 12,
 * the boot events required (and required_extra, a JSON object, if given). */
static char *refs_json_v(size_t skip, int rim_version, long nb_offset, long na_offset, const char *required_extra)
{
    char *s = malloc(8192);
    char nb[21], na[21];
    iso_time(nb_offset, nb);
    iso_time(na_offset, na);
    size_t used =
        (size_t)sprintf(s,
                        "{\"format\": \"trustme-reference-values\", \"version\": 2, "
                        "\"rim_version\": %d, \"not_before\": \"%s\", "
                        "\"not_after\": \"%s\", \"pcrs\": [12, 11], \"required\": ["
                        "{\"type\": \"binary\", \"name\": \"trustmed\"}, "
                        "{\"type\": \"binary\", \"name\": \"trustme-scd\"}, "
                        "{\"type\": \"binary\", \"name\": \"trustme-tpmd\"}, "
                        "{\"type\": \"device-config\", \"name\": \"device.json\"}%s%s], "
                        "\"values\": [",
                        rim_version, nb, na, required_extra ? ", " : "", required_extra ? required_extra : "");
    bool first = true;
    for (size_t i = 0; i < N_EVENTS; i++) {
        if (i == skip)
            continue;
        uint8_t h[32];
        char hex[65];
        content_hash(i, h);
        tm_hex(h, 32, hex);
        used += (size_t)sprintf(s + used,
                                "%s{\"type\": \"%s\", \"name\": \"%s\", "
                                "\"sha256\": \"%s\"}",
                                first ? "" : ", ", events[i].type, events[i].name, hex);
        first = false;
    }
    strcpy(s + used, "]}\n");
    return s;
}

static char *refs_json(size_t skip)
{
    return refs_json_v(skip, 1, -3600, YEAR, NULL);
}

/* json signed by key with chain cert (+ its issuer), loaded as a verifier trusting the root
 * with cas as the RIM-signing CAs. */
static int load_signed(struct fixture *f, const char *json, EVP_PKEY *key, X509 *cert, X509 *issuer,
                       const struct ca_pins *cas, uint64_t min_version, struct refvalues **ret, tm_err *err)
{
    uint8_t sig[128];
    struct refvalues_files rf = {.json = (char *)json, .json_len = strlen(json)};
    rf.sig_len = sign_der(key, json, rf.json_len, sig, sizeof(sig));
    rf.sig = (char *)sig;
    rf.chain_pem = pem_of(cert, issuer);
    rf.chain_len = strlen(rf.chain_pem);
    struct refvalues_trust t = {
        .anchors_pem = f->anchors, .anchors_len = strlen(f->anchors), .cas = cas, .min_version = min_version};
    int r = refvalues_load(&rf, &t, ret, err);
    free(rf.chain_pem);
    return r;
}

static struct refvalues *signed_refs(struct fixture *f, size_t skip)
{
    char *json = refs_json(skip);
    struct refvalues *r = NULL;
    tm_err err = {0};
    if (load_signed(f, json, f->signer_key, f->signer, NULL, &f->root_pin, 0, &r, &err) < 0)
        fail_msg("refvalues_load: %s", err.msg);
    free(json);
    return r;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    f->root_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    f->other_root_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    f->ak = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    f->other_ak = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    f->signer_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    f->dca_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    f->rca_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    f->root = make_cert("Test Device Root", f->root_key, NULL, NULL, 1, NULL);
    f->device_ca = make_cert("Device CA", f->dca_key, f->root, f->root_key, 2, NULL);
    f->rim_ca = make_cert("RIM CA", f->rca_key, f->root, f->root_key, 3, NULL);
    f->root_pin = pin_of(f->root);
    f->device_ca_pin = pin_of(f->device_ca);
    f->rim_ca_pin = pin_of(f->rim_ca);
    f->other_root = make_cert("Other Root", f->other_root_key, NULL, NULL, 1, NULL);
    f->leaf = make_cert("device-1", f->ak, f->root, f->root_key, 42, "clientAuth");
    f->leaf_other_ca = make_cert("device-1", f->ak, f->other_root, f->other_root_key, 42, "clientAuth");
    f->signer = make_cert("release signing", f->signer_key, f->root, f->root_key, 7, "codeSigning");
    f->crl_revoking_leaf = make_crl(f->root, f->root_key, 42);
    f->anchors = pem_of(f->root, NULL);
    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509_CRL(bio, f->crl_revoking_leaf);
    f->crl_pem = bio_string(bio);
    f->refs = signed_refs(f, SIZE_MAX);
    f->refs_missing = signed_refs(f, 6);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    EVP_PKEY *keys[] = {f->root_key, f->other_root_key, f->ak, f->other_ak, f->signer_key, f->dca_key, f->rca_key};
    X509 *certs[] = {f->root, f->other_root, f->leaf, f->leaf_other_ca, f->signer, f->device_ca, f->rim_ca};
    for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
        EVP_PKEY_free(keys[i]);
    for (size_t i = 0; i < ARRAY_SIZE(certs); i++)
        X509_free(certs[i]);
    X509_CRL_free(f->crl_revoking_leaf);
    free(f->anchors);
    free(f->crl_pem);
    refvalues_free(f->refs);
    refvalues_free(f->refs_missing);
    free(f);
    return 0;
}

/* --- evidence: what a device's tpmd sends --- */

struct opts {
    EVP_PKEY *signing_key; /* default: the AK */
    EVP_PKEY *public_key; /* TPMT_PUBLIC of; default: the AK */
    TPMA_OBJECT attributes; /* default: what tpmd's AK has */
    X509 *cert; /* default: the leaf; the chain is cert only */
    bool no_cert;
    const uint8_t *quoted_nonce; /* default: the verifier's */
    bool pcr12_unlogged; /* PCR 12 extended once more than the log says (quoted so) */
    X509 *chain_issuer; /* sent after the cert in the chain */
    size_t unmeasured; /* 1 + the index of an event the device never measured */
    bool no_parent_name; /* send no parent name (a tpmd before field 140) */
    bool forged_signer; /* ... but a qualifiedSigner that matches nothing */
    bool only_boot; /* quote, report and log PCR 12 only (a rewritten request) */
    uint32_t reset_count;
};

static const uint8_t parent[34] = {0x00, 0x0b, 'S', 'R', 'K'};

struct evidence {
    Trustme__Attest__Quote q;
    Trustme__Attest__Event ev[N_EVENTS], *evp[N_EVENTS];
    Trustme__Attest__PcrValue pv[2], *pvp[2];
    uint8_t hashes[N_EVENTS][32];
    char names[N_EVENTS][64], types[N_EVENTS][32];
    uint8_t pcr[2][32]; /* PCR 11, PCR 12 */
    uint8_t attest[2048], sig[256], akpub[1024], parent[34];
    char *chain;
};

static const uint8_t nonce[ATTEST_NONCE_LEN] = "verifier nonce, 32 bytes long..";

static void tpm_public(EVP_PKEY *key, TPMA_OBJECT attrs, uint8_t *out, size_t *len)
{
    TPMT_PUBLIC p;
    memset(&p, 0, sizeof(p));
    p.type = TPM2_ALG_ECC;
    p.nameAlg = TPM2_ALG_SHA256;
    p.objectAttributes = attrs;
    p.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
    p.parameters.eccDetail.scheme.scheme = TPM2_ALG_ECDSA;
    p.parameters.eccDetail.scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
    p.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
    p.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
    BIGNUM *x = NULL, *y = NULL;
    assert_int_equal(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, &x), 1);
    assert_int_equal(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, &y), 1);
    p.unique.ecc.x.size = 32;
    p.unique.ecc.y.size = 32;
    BN_bn2binpad(x, p.unique.ecc.x.buffer, 32);
    BN_bn2binpad(y, p.unique.ecc.y.buffer, 32);
    BN_free(x);
    BN_free(y);
    size_t off = 0;
    assert_int_equal(Tss2_MU_TPMT_PUBLIC_Marshal(&p, out, 1024, &off), TSS2_RC_SUCCESS);
    *len = off;
}

/* TPM2_Quote's output over the given PCR values, and its signature */
/* The AK's qualified name under parent (TPM 2.0 Part 1, "Qualified Name"), computed here
 * independently of attest_check.c. */
static void qualified_name(const uint8_t *akpub, size_t len, uint8_t out[34])
{
    uint8_t ak_name[34] = {0x00, 0x0b}, qn_parent[34] = {0x00, 0x0b};
    uint8_t owner_and_parent[4 + 34] = {0x40, 0x00, 0x00, 0x01}, both[68];
    tm_sha256(akpub, len, ak_name + 2);
    memcpy(owner_and_parent + 4, parent, 34);
    tm_sha256(owner_and_parent, sizeof(owner_and_parent), qn_parent + 2);
    memcpy(both, qn_parent, 34);
    memcpy(both + 34, ak_name, 34);
    out[0] = 0x00;
    out[1] = 0x0b;
    tm_sha256(both, sizeof(both), out + 2);
}

static void quote(EVP_PKEY *key, const uint8_t *qnonce, const uint8_t *qs, uint32_t resets, bool only_boot,
                  struct evidence *e)
{
    TPMS_ATTEST a;
    memset(&a, 0, sizeof(a));
    a.magic = TPM2_GENERATED_VALUE;
    a.type = TPM2_ST_ATTEST_QUOTE;
    a.qualifiedSigner.size = 34;
    if (qs)
        memcpy(a.qualifiedSigner.name, qs, 34);
    a.clockInfo.resetCount = resets;
    a.extraData.size = ATTEST_NONCE_LEN;
    memcpy(a.extraData.buffer, qnonce, ATTEST_NONCE_LEN);
    a.clockInfo.clock = 123456;
    a.clockInfo.safe = 1;
    a.firmwareVersion = 0x2019;
    TPMS_PCR_SELECTION *s = &a.attested.quote.pcrSelect.pcrSelections[0];
    a.attested.quote.pcrSelect.count = 1;
    s->hash = TPM2_ALG_SHA256;
    s->sizeofSelect = 3;
    if (!only_boot)
        s->pcrSelect[PCR_RUNTIME / 8] |= 1u << (PCR_RUNTIME % 8);
    s->pcrSelect[PCR_BOOT / 8] |= 1u << (PCR_BOOT % 8);
    a.attested.quote.pcrDigest.size = 32;
    struct tm_sha256_ctx h;
    tm_sha256_init(&h);
    if (!only_boot)
        tm_sha256_update(&h, e->pcr[0], 32);
    tm_sha256_update(&h, e->pcr[1], 32);
    tm_sha256_final(&h, a.attested.quote.pcrDigest.buffer);
    size_t off = 0;
    assert_int_equal(Tss2_MU_TPMS_ATTEST_Marshal(&a, e->attest, sizeof(e->attest), &off), TSS2_RC_SUCCESS);
    e->q.has_attest = true;
    e->q.attest.data = e->attest;
    e->q.attest.len = off;

    uint8_t der[128];
    size_t dlen = sign_der(key, e->attest, off, der, sizeof(der));
    const unsigned char *p = der;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)dlen);
    assert_non_null(es);
    TPMT_SIGNATURE sig;
    memset(&sig, 0, sizeof(sig));
    sig.sigAlg = TPM2_ALG_ECDSA;
    sig.signature.ecdsa.hash = TPM2_ALG_SHA256;
    sig.signature.ecdsa.signatureR.size = 32;
    sig.signature.ecdsa.signatureS.size = 32;
    BN_bn2binpad(ECDSA_SIG_get0_r(es), sig.signature.ecdsa.signatureR.buffer, 32);
    BN_bn2binpad(ECDSA_SIG_get0_s(es), sig.signature.ecdsa.signatureS.buffer, 32);
    ECDSA_SIG_free(es);
    off = 0;
    assert_int_equal(Tss2_MU_TPMT_SIGNATURE_Marshal(&sig, e->sig, sizeof(e->sig), &off), TSS2_RC_SUCCESS);
    e->q.has_signature = true;
    e->q.signature.data = e->sig;
    e->q.signature.len = off;
}

#define AK_ATTRS                                                                                                   \
    (TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH | \
     TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN_ENCRYPT)

static void evidence_make(struct fixture *f, struct evidence *e, struct opts o)
{
    memset(e, 0, sizeof(*e));
    trustme__attest__quote__init(&e->q);
    size_t n = 0;
    for (size_t i = 0; i < N_EVENTS; i++) {
        if (o.unmeasured == i + 1 || (o.only_boot && events[i].pcr != PCR_BOOT))
            continue;
        Trustme__Attest__Event *ev = &e->ev[n];
        trustme__attest__event__init(ev);
        strcpy(e->names[i], events[i].name);
        strcpy(e->types[i], events[i].type);
        content_hash(i, e->hashes[i]);
        ev->has_seq = ev->has_pcr = ev->has_sha256 = true;
        ev->seq = n;
        ev->pcr = events[i].pcr;
        ev->type = e->types[i];
        ev->name = e->names[i];
        ev->sha256.data = e->hashes[i];
        ev->sha256.len = 32;
        e->evp[n++] = ev;
        uint8_t d[32];
        tm_event_digest(ev->pcr, ev->type, ev->name, ev->sha256.data, d);
        tm_pcr_extend(e->pcr[ev->pcr == PCR_BOOT], d);
    }
    if (o.pcr12_unlogged) {
        uint8_t d[32] = {1};
        tm_pcr_extend(e->pcr[1], d);
    }
    e->q.events = e->evp;
    e->q.n_events = n;
    for (size_t i = 0; i < 2; i++) {
        trustme__attest__pcr_value__init(&e->pv[i]);
        e->pv[i].has_index = e->pv[i].has_sha256 = true;
        e->pv[i].index = i ? PCR_BOOT : PCR_RUNTIME;
        e->pv[i].sha256.data = e->pcr[i];
        e->pv[i].sha256.len = 32;
        e->pvp[i] = &e->pv[i];
    }
    e->q.pcrs = o.only_boot ? &e->pvp[1] : e->pvp;
    e->q.n_pcrs = o.only_boot ? 1 : 2;
    size_t len = 0;
    tpm_public(o.public_key ? o.public_key : f->ak, o.attributes ? o.attributes : AK_ATTRS, e->akpub, &len);
    e->q.has_ak_public = true;
    e->q.ak_public.data = e->akpub;
    e->q.ak_public.len = len;
    uint8_t qs[34] = {0x00, 0x0b};
    if (!o.no_parent_name) {
        memcpy(e->parent, parent, 34);
        e->q.has_ak_parent_name = true;
        e->q.ak_parent_name.data = e->parent;
        e->q.ak_parent_name.len = 34;
        if (o.forged_signer)
            memset(qs + 2, 0x5a, 32);
        else
            qualified_name(e->akpub, len, qs);
    }
    quote(o.signing_key ? o.signing_key : f->ak, o.quoted_nonce ? o.quoted_nonce : nonce, !o.no_parent_name ? qs : NULL,
          o.reset_count, o.only_boot, e);
    if (!o.no_cert) {
        e->chain = pem_of(o.cert ? o.cert : f->leaf, o.chain_issuer);
        e->q.has_cert_chain_pem = true;
        e->q.cert_chain_pem.data = (uint8_t *)e->chain;
        e->q.cert_chain_pem.len = strlen(e->chain);
    }
}

static void evidence_done(struct evidence *e)
{
    free(e->chain);
}

static struct attest_policy policy(struct fixture *f)
{
    return (struct attest_policy){.nonce = nonce,
                                  .nonce_len = sizeof(nonce),
                                  .pcrs = f->refs->pcrs,
                                  .npcrs = f->refs->npcrs,
                                  .ak_anchors_pem = f->anchors,
                                  .ak_anchors_len = strlen(f->anchors),
                                  .device_cas = &f->root_pin,
                                  .refs = f->refs};
}

#define BIT(c) (1u << (c))

/* Exactly the checks in failing fail; the report has all seven in order. */
static void expect_checks_(const struct attest_report *rep, unsigned failing, const char *file, int line)
{
    static const char *const names[] = {"certificate chain", "AK binding", "quote signature",  "nonce",
                                        "PCR digest",        "event log",  "reference values", "TPM clock"};
    bool bad = false;
    for (int i = 0; i < ATTEST_CHECK_COUNT; i++) {
        const struct attest_check *c = &rep->checks[i];
        if (strcmp(c->name, names[i]) != 0 || c->ok == !!(failing & BIT(i)) || !c->detail[0]) {
            print_error("check %d \"%s\": %s, expected %s: %s\n", i, c->name, c->ok ? "ok" : "FAIL",
                        failing & BIT(i) ? "FAIL" : "ok", c->detail);
            bad = true;
        }
    }
    if (bad || rep->trusted != (failing == 0))
        _fail(file, line);
}
#define expect_checks(rep, failing) expect_checks_((rep), (failing), __FILE__, __LINE__)

static void expect_detail_(const struct attest_report *rep, enum attest_check_id id, const char *text, const char *file,
                           int line)
{
    if (!strstr(rep->checks[id].detail, text)) {
        print_error("%s: \"%s\" does not contain \"%s\"\n", rep->checks[id].name, rep->checks[id].detail, text);
        _fail(file, line);
    }
}
#define expect_detail(rep, id, text) expect_detail_((rep), (id), (text), __FILE__, __LINE__)

static void run(struct fixture *f, struct evidence *e, struct attest_report *rep)
{
    struct attest_policy pol = policy(f);
    attest_check_quote(&e->q, &pol, rep);
}

/* --- the healthy device --- */

static void healthy(void **state)
{
    struct fixture *f = *state;
    struct evidence e;
    struct attest_report rep;
    evidence_make(f, &e, (struct opts){0});
    run(f, &e, &rep);
    expect_checks(&rep, 0);
    assert_int_equal(rep.events, N_EVENTS);
    expect_detail(&rep, ATTEST_CHECK_CHAIN,
                  "CN=device-1, issued by the Device CA under CN=Test "
                  "Device Root, revocation not checked");
    expect_detail(&rep, ATTEST_CHECK_PCR_DIGEST, "PCRs 11, 12");
    expect_detail(&rep, ATTEST_CHECK_EVENT_LOG, "7 events replay");
    expect_detail(&rep, ATTEST_CHECK_REFERENCE_VALUES,
                  "all 7 events are reference values, the 4 "
                  "required ones present (version 1,");
    expect_detail(&rep, ATTEST_CHECK_CLOCK, "clock 123456 ms, reset count 0, restart count 0, safe");
    expect_detail(&rep, ATTEST_CHECK_AK_BINDING, "qualifiedSigner is its qualified name");
    assert_true(rep.clock.valid && rep.clock.clock == 123456 && rep.clock.safe);
    /* Asking for exactly these PCRs passes too; with CRLs that revoke someone else as well. */
    struct attest_policy pol = policy(f);
    uint32_t pcrs[] = {PCR_BOOT, PCR_RUNTIME};
    pol.pcrs = pcrs;
    pol.npcrs = 2;
    attest_check_quote(&e.q, &pol, &rep);
    expect_checks(&rep, 0);

    /* The same through the wire format. */
    Trustme__Attest__AttestResponse r = TRUSTME__ATTEST__ATTEST_RESPONSE__INIT;
    r.has_version = r.has_id = true;
    r.version = 1;
    r.id = 9;
    r.body_case = TRUSTME__ATTEST__ATTEST_RESPONSE__BODY_QUOTE;
    r.quote = &e.q;
    size_t len = trustme__attest__attest_response__get_packed_size(&r);
    uint8_t *buf = malloc(len);
    trustme__attest__attest_response__pack(&r, buf);
    tm_err err = {0};
    assert_int_equal(attest_check_response(buf, len, &pol, &rep, &err), 0);
    expect_checks(&rep, 0);
    /* The fuzzer's seed with a whole event log (tests/fuzz/corpus/attest_response/). */
    const char *seed = getenv("ATTEST_SEED_OUT");
    FILE *out = seed ? fopen(seed, "w") : NULL;
    if (out) {
        fwrite(buf, 1, len, out);
        fclose(out);
    }
    free(buf);
    evidence_done(&e);
}

/* --- the event log --- */

static void edited_event(void **state)
{
    struct fixture *f = *state;
    struct evidence e;
    struct attest_report rep;
    /* Each field of an event is covered by the PCR: a renamed binary, a changed type (a
     * container config passed off as the device config), another hash. */
    for (int field = 0; field < 4; field++) {
        evidence_make(f, &e, (struct opts){0});
        switch (field) {
        case 0: strcpy(e.names[0], "trustmf"); break;
        case 1: strcpy(e.types[6], TM_EVENT_DEVICE_CONFIG); break;
        case 2: e.hashes[5][31] ^= 1; break;
        case 3: e.ev[4].pcr = PCR_BOOT; break;
        }
        run(f, &e, &rep);
        /* A changed type or hash is also no longer a reference value; trustmed renamed is
         * no longer the required event. */
        expect_checks(&rep, BIT(ATTEST_CHECK_EVENT_LOG) | (field <= 2 ? BIT(ATTEST_CHECK_REFERENCE_VALUES) : 0));
        expect_detail(&rep, ATTEST_CHECK_EVENT_LOG, "the log replays to");
        evidence_done(&e);
    }
}

static void dropped_event(void **state)
{
    struct fixture *f = *state;
    struct evidence e;
    struct attest_report rep;
    /* The last one: the sequence stays gapless, the replay does not. */
    evidence_make(f, &e, (struct opts){0});
    e.q.n_events = N_EVENTS - 1;
    run(f, &e, &rep);
    expect_checks(&rep, BIT(ATTEST_CHECK_EVENT_LOG));
    expect_detail(&rep, ATTEST_CHECK_EVENT_LOG, "PCR 11: the log replays to");
    evidence_done(&e);
    /* One in the middle, renumbered. */
    evidence_make(f, &e, (struct opts){0});
    for (size_t i = 2; i < N_EVENTS - 1; i++) {
        e.evp[i] = e.evp[i + 1];
        e.evp[i]->seq = i;
    }
    e.q.n_events = N_EVENTS - 1;
    run(f, &e, &rep);
    /* (trustme-tpmd, a required event, is gone from the log too) */
    expect_checks(&rep, BIT(ATTEST_CHECK_EVENT_LOG) | BIT(ATTEST_CHECK_REFERENCE_VALUES));
    expect_detail(&rep, ATTEST_CHECK_EVENT_LOG, "PCR 12: the log replays to");
    evidence_done(&e);
    /* ... not renumbered: a gap in the sequence. */
    evidence_make(f, &e, (struct opts){0});
    e.evp[2] = e.evp[3];
    e.q.n_events = 3;
    run(f, &e, &rep);
    expect_checks(&rep, BIT(ATTEST_CHECK_EVENT_LOG) | BIT(ATTEST_CHECK_REFERENCE_VALUES));
    expect_detail(&rep, ATTEST_CHECK_EVENT_LOG, "event 2 has seq 3");
    expect_detail(&rep, ATTEST_CHECK_REFERENCE_VALUES, "not checked: the event log is malformed");
    evidence_done(&e);
}

static void reordered_events(void **state)
{
    struct fixture *f = *state;
    struct evidence e;
    struct attest_report rep;
    evidence_make(f, &e, (struct opts){0});
    Trustme__Attest__Event tmp = e.ev[0];
    e.ev[0] = e.ev[1];
    e.ev[1] = tmp;
    e.ev[0].seq = 0;
    e.ev[1].seq = 1;
    run(f, &e, &rep);
    expect_checks(&rep, BIT(ATTEST_CHECK_EVENT_LOG));
    expect_detail(&rep, ATTEST_CHECK_EVENT_LOG, "PCR 12");
    evidence_done(&e);
}

static void pcr_not_matching_log(void **state)
{
    struct fixture *f = *state;
    struct evidence e;
    struct attest_report rep;
    /* The TPM's PCR 12 (honestly quoted) holds an extend the log does not show. */
    evidence_make(f, &e, (struct opts){.pcr12_unlogged = true});
    run(f, &e, &rep);
    expect_checks(&rep, BIT(ATTEST_CHECK_EVENT_LOG));
    expect_detail(&rep, ATTEST_CHECK_EVENT_LOG, "PCR 12: the log replays to");
    evidence_done(&e);
    /* An event on a PCR the quote does not cover, with the device's own selection. */
    evidence_make(f, &e, (struct opts){0});
    e.ev[6].pcr = 5;
    run(f, &e, &rep);
    expect_checks(&rep, BIT(ATTEST_CHECK_EVENT_LOG));
    expect_detail(&rep, ATTEST_CHECK_EVENT_LOG, "PCR 11");
    evidence_done(&e);
}

/* --- the verifier's policy: what is quoted, what must be logged --- */

static void pcr_selection_is_the_verifiers(void **state)
{
    struct fixture *f = *state;
    struct evidence e;
    struct attest_report rep;
    /* A proxy (or the device) turned the request into PCR 12 only and dropped the runtime
     * events: a genuine quote of PCR 12, a log that replays to it, every event approved. The
     * reference values name 11 and 12: the selection gives it away. */
    evidence_make(f, &e, (struct opts){.only_boot = true});
    run(f, &e, &rep);
    expect_checks(&rep, BIT(ATTEST_CHECK_PCR_DIGEST));
    expect_detail(&rep, ATTEST_CHECK_PCR_DIGEST,
                  "the quote selects PCRs 12, but 11, 12 were "
                  "requested (the reference values' policy)");
    /* A verifier without a policy (no reference values, no --pcr) cannot say what to expect. */
    struct attest_policy pol = policy(f);
    pol.npcrs = 0;
    attest_check_quote(&e.q, &pol, &rep);
    expect_checks(&rep, BIT(ATTEST_CHECK_PCR_DIGEST));
    expect_detail(&rep, ATTEST_CHECK_PCR_DIGEST, "not checked: the verifier's policy names no PCRs");
    /* The verifier's own narrower choice (--pcr 12) is its business: that passes. */
    uint32_t boot[] = {PCR_BOOT};
    pol.pcrs = boot;
    pol.npcrs = 1;
    pol.pcrs_explicit = true;
    attest_check_quote(&e.q, &pol, &rep);
    expect_checks(&rep, 0);
    evidence_done(&e);
}

static void required_event_missing(void **state)
{
    struct fixture *f = *state;
    struct evidence e;
    struct attest_report rep;
    /* A (modified) trustmed that never measured trustme-scd: log and PCRs agree, every logged
     * event is approved, only the required event is absent. */
    evidence_make(f, &e, (struct opts){.unmeasured = 2});
    run(f, &e, &rep);
    expect_checks(&rep, BIT(ATTEST_CHECK_REFERENCE_VALUES));
    expect_detail(&rep, ATTEST_CHECK_REFERENCE_VALUES,
                  "1 of 4 required events are not in the "
                  "quoted log: binary trustme-scd");
    evidence_done(&e);
    /* A required event on a PCR the verifier chose not to quote is not evidence either. */
    evidence_make(f, &e, (struct opts){0});
    struct attest_policy pol = policy(f);
    uint32_t runtime[] = {PCR_RUNTIME};
    pol.pcrs = runtime;
    pol.npcrs = 1;
    pol.pcrs_explicit = true;
    e.q.n_pcrs = 1; /* the values of PCR 11 only, as the device reports them for --pcr 11 */
    attest_check_quote(&e.q, &pol, &rep);
    expect_detail(&rep, ATTEST_CHECK_REFERENCE_VALUES,
                  "4 of 4 required events are not in the "
                  "quoted log: binary trustmed, binary trustme-scd, binary trustme-tpmd, ...");
    evidence_done(&e);
}

/* --- quote, nonce, digest --- */

static void pcr_digest_mismatch(void **state)
{
    struct fixture *f = *state;
    struct evidence e;
    struct attest_report rep;
    /* Reported values that are not the quoted ones. Replaying an edited log to them makes the
     * log look right: only the digest shows it. */
    evidence_make(f, &e, (struct opts){0});
    strcpy(e.names[6], "evil");
    memset(e.pcr[0], 0, 32);
    for (size_t i = 4; i < N_EVENTS; i++) {
        uint8_t d[32];
        tm_event_digest(e.ev[i].pcr, e.ev[i].type, e.ev[i].name, e.ev[i].sha256.data, d);
        tm_pcr_extend(e.pcr[0], d);
    }
    run(f, &e, &rep);
    expect_checks(&rep, BIT(ATTEST_CHECK_PCR_DIGEST));
    expect_detail(&rep, ATTEST_CHECK_PCR_DIGEST, "is not the quote's pcrDigest");
    evidence_done(&e);
    /* A selection other than the one requested, or than the values reported. */
    evidence_make(f, &e, (struct opts){0});
    struct attest_policy pol = policy(f);
    uint32_t pcrs[] = {PCR_BOOT};
    pol.pcrs = pcrs;
    pol.npcrs = 1;
    attest_check_quote(&e.q, &pol, &rep);
    expect_checks(&rep, BIT(ATTEST_CHECK_PCR_DIGEST));
    expect_detail(&rep, ATTEST_CHECK_PCR_DIGEST,
                  "the quote selects PCRs 11, 12, but 12 were "
                  "requested");
    e.q.n_pcrs = 1;
    e.q.pcrs = &e.pvp[1];
    run(f, &e, &rep);
    expect_checks(&rep, BIT(ATTEST_CHECK_PCR_DIGEST) | BIT(ATTEST_CHECK_EVENT_LOG));
    expect_detail(&rep, ATTEST_CHECK_PCR_DIGEST, "device reported values of 12");
    evidence_done(&e);
}

static void wrong_nonce(void **state)
{
    struct fixture *f = *state;
    struct evidence e;
    struct attest_report rep;
    /* An old response replayed: quoted over an earlier verifier's nonce. */
    static const uint8_t old[ATTEST_NONCE_LEN] = "an earlier nonce, 32 bytes long";
    evidence_make(f, &e, (struct opts){.quoted_nonce = old});
    run(f, &e, &rep);
    expect_checks(&rep, BIT(ATTEST_CHECK_NONCE));
    expect_detail(&rep, ATTEST_CHECK_NONCE, "a replayed or foreign quote");
    evidence_done(&e);
}

static void another_tpms_quote(void **state)
{
    struct fixture *f = *state;
    struct evidence e;
    struct attest_report rep;
    /* Signed by another key, presented with this device's certificate and AK. */
    evidence_make(f, &e, (struct opts){.signing_key = f->other_ak});
    run(f, &e, &rep);
    expect_checks(&rep, BIT(ATTEST_CHECK_QUOTE_SIGNATURE));
    expect_detail(&rep, ATTEST_CHECK_QUOTE_SIGNATURE, "does not verify with the AK certificate");
    evidence_done(&e);
    /* ... with that other AK's TPMT_PUBLIC as well. */
    evidence_make(f, &e, (struct opts){.signing_key = f->other_ak, .public_key = f->other_ak});
    run(f, &e, &rep);
    expect_checks(&rep, BIT(ATTEST_CHECK_AK_BINDING) | BIT(ATTEST_CHECK_QUOTE_SIGNATURE));
    expect_detail(&rep, ATTEST_CHECK_AK_BINDING, "is not the AK's");
    evidence_done(&e);
    /* An altered TPMS_ATTEST (the clock, which nothing else checks). */
    evidence_make(f, &e, (struct opts){0});
    e.attest[e.q.attest.len - 1 - 2 - 32 - 4 - 1 - 3 - 4 - 8 - 1 - 4 - 4] ^= 1;
    run(f, &e, &rep);
    expect_checks(&rep, BIT(ATTEST_CHECK_QUOTE_SIGNATURE));
    evidence_done(&e);
}

static void qualified_signer(void **state)
{
    struct fixture *f = *state;
    struct evidence e;
    struct attest_report rep;
    /* What a TPM writes: the AK's qualified name under its parent. */
    evidence_make(f, &e, (struct opts){0});
    run(f, &e, &rep);
    expect_checks(&rep, 0);
    expect_detail(&rep, ATTEST_CHECK_AK_BINDING, "qualifiedSigner is its qualified name");
    evidence_done(&e);
    /* A TPMS_ATTEST made and signed in software (a key certified by the Device CA but never in
     * a TPM), claiming a restricted key, with a qualifiedSigner that matches nothing. */
    evidence_make(f, &e, (struct opts){.forged_signer = true});
    run(f, &e, &rep);
    expect_checks(&rep, BIT(ATTEST_CHECK_AK_BINDING));
    expect_detail(&rep, ATTEST_CHECK_AK_BINDING,
                  "the quote's qualifiedSigner (000b5a5a5a5a5a5a...) "
                  "is not the qualified name of the AK's TPMT_PUBLIC");
    evidence_done(&e);
    /* The attributes claimed are not those of the key the TPM signed with: the name differs. */
    evidence_make(f, &e, (struct opts){0});
    uint8_t *attrs = e.akpub + 2 + 2; /* type, nameAlg, then objectAttributes */
    attrs[3] ^= 0x01; /* reserved bit 0: still parses, another name */
    run(f, &e, &rep);
    expect_checks(&rep, BIT(ATTEST_CHECK_AK_BINDING));
    evidence_done(&e);
    /* Without the parent's name nothing ties the quote to the AK: refused, not waved through. */
    evidence_make(f, &e, (struct opts){.no_parent_name = true});
    run(f, &e, &rep);
    expect_checks(&rep, BIT(ATTEST_CHECK_AK_BINDING));
    expect_detail(&rep, ATTEST_CHECK_AK_BINDING, "the device does not send its AK's parent name");
    evidence_done(&e);
}

static void reset_count(void **state)
{
    struct fixture *f = *state;
    struct evidence e;
    struct attest_report rep;
    evidence_make(f, &e, (struct opts){.reset_count = 5});
    struct attest_policy pol = policy(f);
    pol.has_last_reset = true;
    pol.last_reset = 5;
    attest_check_quote(&e.q, &pol, &rep);
    expect_checks(&rep, 0);
    assert_int_equal(rep.clock.reset_count, 5);
    pol.last_reset = 4;
    attest_check_quote(&e.q, &pol, &rep);
    expect_checks(&rep, 0);
    expect_detail(&rep, ATTEST_CHECK_CLOCK, "the TPM was reset since reset count 4");
    /* Backwards: an old quote, or a TPM whose state was put back. */
    pol.last_reset = 6;
    attest_check_quote(&e.q, &pol, &rep);
    expect_checks(&rep, BIT(ATTEST_CHECK_CLOCK));
    expect_detail(&rep, ATTEST_CHECK_CLOCK, "lower than 6 seen last (--last-reset)");
    evidence_done(&e);
}

static void not_a_quote(void **state)
{
    struct fixture *f = *state;
    struct evidence e;
    struct attest_report rep;
    evidence_make(f, &e, (struct opts){0});
    e.attest[0] ^= 0xff; /* magic */
    run(f, &e, &rep);
    expect_checks(&rep, BIT(ATTEST_CHECK_QUOTE_SIGNATURE));
    expect_detail(&rep, ATTEST_CHECK_QUOTE_SIGNATURE, "not TPM_GENERATED_VALUE");
    evidence_done(&e);
}

/* --- certificates and the AK --- */

static void chain_to_other_ca(void **state)
{
    struct fixture *f = *state;
    struct evidence e;
    struct attest_report rep;
    evidence_make(f, &e, (struct opts){.cert = f->leaf_other_ca});
    run(f, &e, &rep);
    expect_checks(&rep, BIT(ATTEST_CHECK_CHAIN));
    expect_detail(&rep, ATTEST_CHECK_CHAIN, "unable to get local issuer certificate");
    evidence_done(&e);
    /* Sending the other root along does not make it an anchor. */
    evidence_make(f, &e, (struct opts){0});
    free(e.chain);
    e.chain = pem_of(f->leaf_other_ca, f->other_root);
    e.q.cert_chain_pem.data = (uint8_t *)e.chain;
    e.q.cert_chain_pem.len = strlen(e.chain);
    run(f, &e, &rep);
    expect_checks(&rep, BIT(ATTEST_CHECK_CHAIN));
    expect_detail(&rep, ATTEST_CHECK_CHAIN, "self-signed certificate in certificate chain");
    evidence_done(&e);
    /* A certificate for another purpose (the reference values' code signer). */
    evidence_make(f, &e, (struct opts){.cert = f->signer});
    run(f, &e, &rep);
    expect_checks(&rep, BIT(ATTEST_CHECK_CHAIN) | BIT(ATTEST_CHECK_AK_BINDING) | BIT(ATTEST_CHECK_QUOTE_SIGNATURE));
    expect_detail(&rep, ATTEST_CHECK_CHAIN, "extendedKeyUsage lacks TLS Web Client");
    evidence_done(&e);
}

/* Each role bound to its CA: one root certifies the Device CA and the RIM-signing CA. */
static void ak_certificate_roles(void **state)
{
    struct fixture *f = *state;
    struct evidence e;
    struct attest_report rep;
    struct attest_policy pol = policy(f);
    pol.device_cas = &f->device_ca_pin;
    X509 *by_dca = make_cert("device-2", f->ak, f->device_ca, f->dca_key, 50, "clientAuth");
    X509 *by_rca = make_cert("device-2", f->ak, f->rim_ca, f->rca_key, 51, "clientAuth");
    X509 *ca_leaf = make_cert_ca("device-2", f->ak, f->device_ca, f->dca_key, 52, "clientAuth", true);
    evidence_make(f, &e, (struct opts){.cert = by_dca, .chain_issuer = f->device_ca});
    attest_check_quote(&e.q, &pol, &rep);
    expect_checks(&rep, 0);
    evidence_done(&e);
    /* Issued by the other CA under the same root, or by the root itself. */
    evidence_make(f, &e, (struct opts){.cert = by_rca, .chain_issuer = f->rim_ca});
    attest_check_quote(&e.q, &pol, &rep);
    expect_checks(&rep, BIT(ATTEST_CHECK_CHAIN));
    expect_detail(&rep, ATTEST_CHECK_CHAIN, "was not issued by a Device CA (--device-ca)");
    uint8_t name[34] = {0x00, 0x0b};
    tm_sha256(e.q.ak_public.data, e.q.ak_public.len, name + 2);
    pol.expect_ak_name = name; /* the right device's AK does not make up for it */
    pol.expect_ak_name_len = sizeof(name);
    attest_check_quote(&e.q, &pol, &rep);
    expect_checks(&rep, BIT(ATTEST_CHECK_CHAIN));
    pol.expect_ak_name = NULL;
    evidence_done(&e);
    evidence_make(f, &e, (struct opts){0});
    attest_check_quote(&e.q, &pol, &rep);
    expect_checks(&rep, BIT(ATTEST_CHECK_CHAIN));
    evidence_done(&e);
    /* A leaf that says CA:TRUE, from the right CA. */
    evidence_make(f, &e, (struct opts){.cert = ca_leaf, .chain_issuer = f->device_ca});
    attest_check_quote(&e.q, &pol, &rep);
    expect_checks(&rep, BIT(ATTEST_CHECK_CHAIN));
    expect_detail(&rep, ATTEST_CHECK_CHAIN, "is a CA certificate (CA:TRUE)");
    evidence_done(&e);
    /* No Device CA named: nothing is trusted. */
    pol.device_cas = NULL;
    evidence_make(f, &e, (struct opts){0});
    attest_check_quote(&e.q, &pol, &rep);
    expect_checks(&rep, BIT(ATTEST_CHECK_CHAIN));
    evidence_done(&e);
    X509_free(by_dca);
    X509_free(by_rca);
    X509_free(ca_leaf);
}

static void refs_roles_version_validity(void **state)
{
    struct fixture *f = *state;
    X509 *by_rca = make_cert("rim signer", f->signer_key, f->rim_ca, f->rca_key, 60, "codeSigning");
    X509 *by_dca = make_cert("rim signer", f->signer_key, f->device_ca, f->dca_key, 61, "codeSigning");
    X509 *ca_signer = make_cert_ca("rim signer", f->signer_key, f->rim_ca, f->rca_key, 62, "codeSigning", true);
    char *json = refs_json_v(SIZE_MAX, 3, -3600, YEAR, NULL);
    struct refvalues *r = NULL;
    tm_err err = {0};
    assert_int_equal(load_signed(f, json, f->signer_key, by_rca, f->rim_ca, &f->rim_ca_pin, 3, &r, &err), 0);
    assert_int_equal(r->rim_version, 3);
    assert_int_equal(r->npcrs, 2);
    assert_int_equal(r->pcrs[0], PCR_RUNTIME); /* sorted */
    assert_true(refvalues_requires(r, "binary", "trustme-scd"));
    refvalues_free(r);
    r = NULL;
    /* codeSigning under the Device CA; a signer that is a CA; no CA named. */
    assert_int_equal(load_signed(f, json, f->signer_key, by_dca, f->device_ca, &f->rim_ca_pin, 0, &r, &err),
                     -EKEYREJECTED);
    assert_err_contains(&err, "was not issued by a CA that signs reference values (--rim-ca)");
    assert_int_equal(load_signed(f, json, f->signer_key, ca_signer, f->rim_ca, &f->rim_ca_pin, 0, &r, &err),
                     -EKEYREJECTED);
    assert_err_contains(&err, "is a CA certificate (CA:TRUE)");
    assert_int_equal(load_signed(f, json, f->signer_key, by_rca, f->rim_ca, NULL, 0, &r, &err), -EINVAL);
    /* Older than the verifier accepts. */
    assert_int_equal(load_signed(f, json, f->signer_key, by_rca, f->rim_ca, &f->rim_ca_pin, 4, &r, &err), -ESTALE);
    assert_err_contains(&err, "version 3 is older than --min-version 4");
    free(json);
    /* Expired, not yet valid. */
    json = refs_json_v(SIZE_MAX, 3, -2 * YEAR, -YEAR, NULL);
    assert_int_equal(load_signed(f, json, f->signer_key, by_rca, f->rim_ca, &f->rim_ca_pin, 0, &r, &err), -EKEYEXPIRED);
    assert_err_contains(&err, "version 3 expired at ");
    free(json);
    json = refs_json_v(SIZE_MAX, 3, 3600, YEAR, NULL);
    assert_int_equal(load_signed(f, json, f->signer_key, by_rca, f->rim_ca, &f->rim_ca_pin, 0, &r, &err), -EKEYEXPIRED);
    assert_err_contains(&err, "version 3 is not valid before ");
    assert_null(r);
    free(json);
    X509_free(by_rca);
    X509_free(by_dca);
    X509_free(ca_signer);
}

static void revoked_leaf(void **state)
{
    struct fixture *f = *state;
    struct evidence e;
    struct attest_report rep;
    evidence_make(f, &e, (struct opts){0});
    struct attest_policy pol = policy(f);
    pol.crls_pem = f->crl_pem;
    pol.crls_len = strlen(f->crl_pem);
    attest_check_quote(&e.q, &pol, &rep);
    expect_checks(&rep, BIT(ATTEST_CHECK_CHAIN));
    expect_detail(&rep, ATTEST_CHECK_CHAIN, "certificate revoked at depth 0 (CN=device-1)");
    evidence_done(&e);
}

static void ak_attributes(void **state)
{
    struct fixture *f = *state;
    struct evidence e;
    struct attest_report rep;
    static const struct {
        TPMA_OBJECT attrs;
        const char *detail;
    } cases[] = {
        {AK_ATTRS & ~TPMA_OBJECT_RESTRICTED, "lack restricted"},
        {AK_ATTRS & ~TPMA_OBJECT_FIXEDTPM, "lack fixedTPM"},
        {AK_ATTRS & ~TPMA_OBJECT_SIGN_ENCRYPT, "lack sign"},
        {AK_ATTRS | TPMA_OBJECT_DECRYPT, "include decrypt"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        evidence_make(f, &e, (struct opts){.attributes = cases[i].attrs});
        run(f, &e, &rep);
        expect_checks(&rep, BIT(ATTEST_CHECK_AK_BINDING));
        expect_detail(&rep, ATTEST_CHECK_AK_BINDING, cases[i].detail);
        evidence_done(&e);
    }
}

static void unprovisioned(void **state)
{
    struct fixture *f = *state;
    struct evidence e;
    struct attest_report rep;
    evidence_make(f, &e, (struct opts){.no_cert = true});
    run(f, &e, &rep);
    expect_checks(&rep, BIT(ATTEST_CHECK_CHAIN) | BIT(ATTEST_CHECK_AK_BINDING) | BIT(ATTEST_CHECK_QUOTE_SIGNATURE));
    expect_detail(&rep, ATTEST_CHECK_CHAIN, "not provisioned");
    expect_detail(&rep, ATTEST_CHECK_AK_BINDING, "not checked:");
    expect_detail(&rep, ATTEST_CHECK_QUOTE_SIGNATURE, "it verifies with the device's uncertified AK");
    evidence_done(&e);
}

/* --- reference values --- */

static void missing_reference_value(void **state)
{
    struct fixture *f = *state;
    struct evidence e;
    struct attest_report rep;
    evidence_make(f, &e, (struct opts){0});
    struct attest_policy pol = policy(f);
    pol.refs = f->refs_missing;
    attest_check_quote(&e.q, &pol, &rep);
    expect_checks(&rep, BIT(ATTEST_CHECK_REFERENCE_VALUES));
    expect_detail(&rep, ATTEST_CHECK_REFERENCE_VALUES,
                  "1 of 7 events are not reference values: "
                  "container-config web (");
    /* Not loaded (bad signature): the caller's reason is the detail. */
    pol.refs = NULL;
    pol.refs_error = "REFS.json: signature does not verify";
    attest_check_quote(&e.q, &pol, &rep);
    expect_checks(&rep, BIT(ATTEST_CHECK_REFERENCE_VALUES));
    expect_detail(&rep, ATTEST_CHECK_REFERENCE_VALUES, "REFS.json: signature does not verify");
    /* Parsed but never verified: refused. */
    struct refvalues *unsigned_refs = NULL;
    char *json = refs_json(SIZE_MAX);
    assert_int_equal(refvalues_parse(json, strlen(json), &unsigned_refs, NULL), 0);
    pol.refs = unsigned_refs;
    pol.refs_error = NULL;
    attest_check_quote(&e.q, &pol, &rep);
    expect_checks(&rep, BIT(ATTEST_CHECK_REFERENCE_VALUES));
    refvalues_free(unsigned_refs);
    free(json);
    evidence_done(&e);
}

static void refs_signature(void **state)
{
    struct fixture *f = *state;
    char *json = refs_json(SIZE_MAX);
    uint8_t sig[128];
    struct refvalues_files rf = {.json = json, .json_len = strlen(json)};
    rf.sig_len = sign_der(f->signer_key, json, rf.json_len, sig, sizeof(sig));
    rf.sig = (char *)sig;
    rf.chain_pem = pem_of(f->signer, NULL);
    rf.chain_len = strlen(rf.chain_pem);
    struct refvalues *r = NULL;
    tm_err err = {0};
    struct refvalues_trust t = {.anchors_pem = f->anchors, .anchors_len = strlen(f->anchors), .cas = &f->root_pin};
    json[20] = 'X'; /* edited after signing */
    assert_int_equal(refvalues_load(&rf, &t, &r, &err), -EBADMSG);
    assert_err_contains(&err, "signature: signature does not verify");
    free(rf.chain_pem);
    /* A signer without codeSigning (the device's own certificate). */
    json[20] = 'r';
    rf.chain_pem = pem_of(f->leaf, NULL);
    rf.chain_len = strlen(rf.chain_pem);
    assert_int_equal(refvalues_load(&rf, &t, &r, &err), -EKEYREJECTED);
    assert_err_contains(&err, "lacks Code Signing");
    assert_null(r);
    free(rf.chain_pem);
    free(json);
}

/* The policy part of a version 2 file, in sq()'s quotes: valid values for every key. */
#define V2                                                     \
    "'rim_version': 1, 'not_before': '2026-01-01T00:00:00Z', " \
    "'not_after': '2027-01-01T00:00:00Z', 'pcrs': [11, 12], 'required': [], "

static void refs_parser(void **state)
{
    (void)state;
    static const struct {
        const char *json, *error;
    } bad[] = {
        {"[]", "$: "},
        {"{'format': 'trustme-reference-values', 'version': 2, " V2 "'values': [], 'x': 1}", "$.x: unknown key"},
        {"{'format': 'other', 'version': 1, 'values': []}", "$.format: \"other\""},
        {"{'format': 'trustme-reference-values', 'version': 1, 'values': []}",
         "$.version: 1, expected 2 (make the reference values again"},
        {"{'format': 'trustme-reference-values', 'version': 3, 'values': []}", "$.version: 3"},
        {"{'format': 'trustme-reference-values', 'version': '1', 'values': []}", "$.version"},
        {"{'format': 'trustme-reference-values', 'version': 2, " V2 "'values': {}}", "$.values"},
        {"{'format': 'trustme-reference-values', 'version': 2, 'rim_version': 1, 'not_before': "
         "'2026-01-01T00:00:00Z', 'not_after': '2027-01-01T00:00:00Z', 'pcrs': [11], 'required': []}",
         "$.values"},
        {"{'format': 'trustme-reference-values', 'version': 2, " V2 "'values': [1]}",
         "$.values[0]: expected an object"},
        {"{'format': 'trustme-reference-values', 'version': 2, " V2 "'values': [{'type': 'binary', "
         "'name': 'a', 'sha256': 'AB00000000000000000000000000000000000000000000000000000000000000'}]}",
         "$.values[0].sha256: expected 64 lower-case hex digits"},
        {"{'format': 'trustme-reference-values', 'version': 2, " V2 "'values': [{'type': 'binary', "
         "'name': 'a', 'sha256': 'ab'}]}",
         "$.values[0].sha256"},
        {"{'format': 'trustme-reference-values', 'version': 2, " V2 "'values': [{'type': 'firmware', "
         "'name': 'a', 'sha256': '"
         "0000000000000000000000000000000000000000000000000000000000000000'}]}",
         "$.values[0]: event type firmware is unknown"},
        {"{'format': 'trustme-reference-values', 'version': 2, " V2 "'values': [{'type': 'binary', "
         "'name': 'a\\u0001', 'sha256': '0000000000000000000000000000000000000000000000000000000000000000'}]}",
         "$.values[0]: event name has a byte 0x01"},
        {"{'format': 'trustme-reference-values', 'version': 2, " V2 "'values': [{'type': 'binary', "
         "'sha256': '0000000000000000000000000000000000000000000000000000000000000000'}]}",
         "$.values[0].name"},
        {"{'format': 'trustme-reference-values', 'version': 2, " V2 "'values': [{'type': 'binary', "
         "'name': 'a', 'sha256': '0000000000000000000000000000000000000000000000000000000000000000', 'pcr': 1}]}",
         "$.values[0].pcr: unknown key"},
        {"{'format': 'trustme-reference-values', 'format': 'trustme-reference-values', 'version': 2, " V2
         "'values': []}",
         "$: key appears more than once at line 1, column 47 (duplicate object key near '\"format\"')"},
        /* the policy */
        {"{'format': 'trustme-reference-values', 'version': 2, 'not_before': '2026-01-01T00:00:00Z', "
         "'not_after': '2027-01-01T00:00:00Z', 'pcrs': [11], 'required': [], 'values': []}",
         "$.rim_version: required key is missing"},
        {"{'format': 'trustme-reference-values', 'version': 2, 'rim_version': 0, 'not_before': "
         "'2026-01-01T00:00:00Z', 'not_after': '2027-01-01T00:00:00Z', 'pcrs': [11], 'required': [], "
         "'values': []}",
         "$.rim_version"},
        {"{'format': 'trustme-reference-values', 'version': 2, 'rim_version': 1, 'not_before': "
         "'2026-01-01 00:00:00', 'not_after': '2027-01-01T00:00:00Z', 'pcrs': [11], 'required': [], "
         "'values': []}",
         "$.not_before: \"2026-01-01 00:00:00\" is not a time"},
        {"{'format': 'trustme-reference-values', 'version': 2, 'rim_version': 1, 'not_before': "
         "'2026-02-30T00:00:00Z', 'not_after': '2027-01-01T00:00:00Z', 'pcrs': [11], 'required': [], "
         "'values': []}",
         "$.not_before: \"2026-02-30T00:00:00Z\" is not a time"},
        {"{'format': 'trustme-reference-values', 'version': 2, 'rim_version': 1, 'not_before': "
         "'2027-01-01T00:00:00Z', 'not_after': '2027-01-01T00:00:00Z', 'pcrs': [11], 'required': [], "
         "'values': []}",
         "$.not_after: not after $.not_before"},
        {"{'format': 'trustme-reference-values', 'version': 2, 'rim_version': 1, 'not_before': "
         "'2026-01-01T00:00:00Z', 'not_after': '2027-01-01T00:00:00Z', 'pcrs': [], 'required': [], "
         "'values': []}",
         "$.pcrs: at least one PCR"},
        {"{'format': 'trustme-reference-values', 'version': 2, 'rim_version': 1, 'not_before': "
         "'2026-01-01T00:00:00Z', 'not_after': '2027-01-01T00:00:00Z', 'pcrs': [11, 24], 'required': [], "
         "'values': []}",
         "$.pcrs[1]: expected a PCR index 0..23"},
        {"{'format': 'trustme-reference-values', 'version': 2, 'rim_version': 1, 'not_before': "
         "'2026-01-01T00:00:00Z', 'not_after': '2027-01-01T00:00:00Z', 'pcrs': [11, 11], 'required': [], "
         "'values': []}",
         "$.pcrs[1]: PCR 11 given twice"},
        {"{'format': 'trustme-reference-values', 'version': 2, 'rim_version': 1, 'not_before': "
         "'2026-01-01T00:00:00Z', 'not_after': '2027-01-01T00:00:00Z', 'pcrs': [11], 'required': "
         "[{'type': 'binary'}], 'values': []}",
         "$.required[0].name"},
        {"{'format': 'trustme-reference-values', 'version': 2, 'rim_version': 1, 'not_before': "
         "'2026-01-01T00:00:00Z', 'not_after': '2027-01-01T00:00:00Z', 'pcrs': [11], 'required': "
         "[{'type': 'kernel', 'name': 'x'}], 'values': []}",
         "$.required[0]: event type kernel"},
        {"{'format': 'trustme-reference-values', 'version': 2, 'rim_version': 1, 'not_before': "
         "'2026-01-01T00:00:00Z', 'not_after': '2027-01-01T00:00:00Z', 'pcrs': [11], "
         "'values': []}",
         "$.required: required key is missing"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        char *s = sq(bad[i].json);
        struct refvalues *r = NULL;
        tm_err err = {0};
        if (refvalues_parse(s, strlen(s), &r, &err) >= 0)
            fail_msg("case %zu parsed", i);
        assert_null(r);
        assert_err_contains(&err, bad[i].error);
        free(s);
    }
    /* Valid, with a duplicate and an empty list; lookup by type and hash only. */
    char *s = sq("{'format': 'trustme-reference-values', 'version': 2, " V2 "'values': ["
                 "{'type': 'binary', 'name': 'b', 'sha256': '"
                 "0101010101010101010101010101010101010101010101010101010101010101'},"
                 "{'type': 'binary', 'name': 'a', 'sha256': '"
                 "0000000000000000000000000000000000000000000000000000000000000000'},"
                 "{'type': 'binary', 'name': 'a', 'sha256': '"
                 "0000000000000000000000000000000000000000000000000000000000000000'}]}");
    struct refvalues *r = NULL;
    assert_int_equal(refvalues_parse(s, strlen(s), &r, NULL), 0);
    assert_int_equal(r->n, 3);
    assert_false(r->signature_verified);
    uint8_t h[32] = {0};
    assert_true(refvalues_contains(r, "binary", h));
    assert_false(refvalues_contains(r, "device-config", h));
    memset(h, 1, 32);
    assert_true(refvalues_contains(r, "binary", h));
    h[0] = 2;
    assert_false(refvalues_contains(r, "binary", h));
    refvalues_free(r);
    free(s);
    s = sq("{'format': 'trustme-reference-values', 'version': 2, " V2 "'values': []}");
    assert_int_equal(refvalues_parse(s, strlen(s), &r, NULL), 0);
    assert_false(refvalues_contains(r, "binary", h));
    refvalues_free(r);
    free(s);
}

/* --- malformed input: never a crash, never trusted --- */

static uint8_t *pack(Trustme__Attest__Quote *q, size_t *len)
{
    Trustme__Attest__AttestResponse r = TRUSTME__ATTEST__ATTEST_RESPONSE__INIT;
    r.has_version = true;
    r.version = 1;
    r.body_case = TRUSTME__ATTEST__ATTEST_RESPONSE__BODY_QUOTE;
    r.quote = q;
    *len = trustme__attest__attest_response__get_packed_size(&r);
    uint8_t *buf = malloc(*len);
    trustme__attest__attest_response__pack(&r, buf);
    return buf;
}

static void malformed(void **state)
{
    struct fixture *f = *state;
    struct evidence e;
    struct attest_report rep;
    struct attest_policy pol = policy(f);
    tm_err err = {0};
    evidence_make(f, &e, (struct opts){0});
    /* Every prefix and every byte flipped, of the whole response. */
    size_t len;
    uint8_t *buf = pack(&e.q, &len);
    for (size_t n = 0; n < len; n++)
        if (attest_check_response(buf, n, &pol, &rep, &err) == 0)
            assert_false(rep.trusted);
    for (size_t i = 0; i < len; i++) {
        buf[i] ^= 0x80;
        (void)attest_check_response(buf, len, &pol, &rep, &err);
        buf[i] ^= 0x80;
    }
    free(buf);
    /* The TPM structures: every truncation and every flipped byte of the attest and the
     * signature makes the quote untrusted; the AK's public area must at least not crash. */
    ProtobufCBinaryData *parts[] = {&e.q.attest, &e.q.signature, &e.q.ak_public};
    for (size_t p = 0; p < ARRAY_SIZE(parts); p++) {
        size_t full = parts[p]->len;
        for (size_t n = 0; n < full; n++) {
            parts[p]->len = n;
            attest_check_quote(&e.q, &pol, &rep);
            assert_false(rep.trusted);
        }
        parts[p]->len = full;
        for (size_t i = 0; i < full; i++) {
            parts[p]->data[i] ^= 0x55;
            attest_check_quote(&e.q, &pol, &rep);
            if (p < 2)
                assert_false(rep.trusted);
            parts[p]->data[i] ^= 0x55;
        }
    }
    attest_check_quote(&e.q, &pol, &rep);
    expect_checks(&rep, 0);
    /* Fields absent or out of range. */
    e.ev[3].type = NULL;
    attest_check_quote(&e.q, &pol, &rep);
    expect_detail(&rep, ATTEST_CHECK_EVENT_LOG, "event 3: event type (missing) is unknown");
    e.ev[3].type = e.types[3];
    e.ev[3].pcr = 24;
    attest_check_quote(&e.q, &pol, &rep);
    expect_detail(&rep, ATTEST_CHECK_EVENT_LOG, "event 3: event PCR 24 is not 0..23");
    e.ev[3].pcr = PCR_BOOT;
    e.ev[3].sha256.len = 31;
    attest_check_quote(&e.q, &pol, &rep);
    expect_detail(&rep, ATTEST_CHECK_EVENT_LOG, "event 3: event hash has 31 bytes");
    e.ev[3].sha256.len = 32;
    e.pv[1].index = 30;
    attest_check_quote(&e.q, &pol, &rep);
    expect_checks(&rep, BIT(ATTEST_CHECK_PCR_DIGEST) | BIT(ATTEST_CHECK_EVENT_LOG));
    e.pv[1].index = PCR_RUNTIME;
    attest_check_quote(&e.q, &pol, &rep);
    expect_detail(&rep, ATTEST_CHECK_PCR_DIGEST, "not in ascending index order");
    e.pv[1].index = PCR_BOOT;
    e.pv[0].sha256.len = 20;
    attest_check_quote(&e.q, &pol, &rep);
    expect_detail(&rep, ATTEST_CHECK_PCR_DIGEST, "reported PCR 11 has a value of 20 bytes");
    e.pv[0].sha256.len = 32;
    e.q.cert_chain_pem.len = 10;
    attest_check_quote(&e.q, &pol, &rep);
    expect_checks(&rep, BIT(ATTEST_CHECK_CHAIN) | BIT(ATTEST_CHECK_AK_BINDING) | BIT(ATTEST_CHECK_QUOTE_SIGNATURE));
    e.q.has_attest = e.q.has_signature = e.q.has_ak_public = e.q.has_cert_chain_pem = false;
    e.q.n_events = e.q.n_pcrs = 0;
    attest_check_quote(&e.q, &pol, &rep);
    assert_false(rep.trusted);
    evidence_done(&e);

    /* Not a quote response at all. */
    static const uint8_t junk[] = {0x08, 0x02, 0x5a, 0x00};
    assert_int_equal(attest_check_response(junk, 2, &pol, &rep, &err), -EPROTO);
    assert_err_contains(&err, "response version 2");
    assert_int_equal(attest_check_response(junk + 2, 2, &pol, &rep, &err), -EPROTO);
    Trustme__Attest__Error dev_err = TRUSTME__ATTEST__ERROR__INIT;
    dev_err.has_code = true;
    dev_err.code = 5;
    dev_err.message = "TPM \x1b[31mfailure";
    Trustme__Attest__AttestResponse r = TRUSTME__ATTEST__ATTEST_RESPONSE__INIT;
    r.has_version = true;
    r.version = 1;
    r.body_case = TRUSTME__ATTEST__ATTEST_RESPONSE__BODY_ERROR;
    r.error = &dev_err;
    uint8_t out[128];
    len = trustme__attest__attest_response__pack(&r, out);
    assert_int_equal(attest_check_response(out, len, &pol, &rep, &err), -EREMOTEIO);
    assert_err_contains(&err, "the device answered with error 5: TPM ?[31mfailure");
}

int main(void)
{
    /* tss2-mu logs every malformed structure to stderr; the malformed test makes thousands. */
    setenv("TSS2_LOG", "all+NONE", 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(healthy),
        cmocka_unit_test(edited_event),
        cmocka_unit_test(dropped_event),
        cmocka_unit_test(reordered_events),
        cmocka_unit_test(pcr_not_matching_log),
        cmocka_unit_test(pcr_digest_mismatch),
        cmocka_unit_test(pcr_selection_is_the_verifiers),
        cmocka_unit_test(required_event_missing),
        cmocka_unit_test(qualified_signer),
        cmocka_unit_test(reset_count),
        cmocka_unit_test(ak_certificate_roles),
        cmocka_unit_test(refs_roles_version_validity),
        cmocka_unit_test(wrong_nonce),
        cmocka_unit_test(another_tpms_quote),
        cmocka_unit_test(not_a_quote),
        cmocka_unit_test(chain_to_other_ca),
        cmocka_unit_test(revoked_leaf),
        cmocka_unit_test(ak_attributes),
        cmocka_unit_test(unprovisioned),
        cmocka_unit_test(missing_reference_value),
        cmocka_unit_test(refs_signature),
        cmocka_unit_test(refs_parser),
        cmocka_unit_test(malformed),
    };
    return cmocka_run_group_tests_name("attest_check", tests, setup, teardown);
}
