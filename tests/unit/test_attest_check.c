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
    EVP_PKEY *root_key, *other_root_key, *ak, *other_ak, *signer_key;
    X509 *root, *other_root, *leaf, *leaf_other_ca, *signer;
    X509_CRL *crl_revoking_leaf;
    char *anchors; /* the root only: other_root is nobody's anchor */
    char *crl_pem;
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

static X509 *make_cert(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key,
                       long serial, const char *eku)
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
        add_ext(x, issuer, NID_basic_constraints, "critical,CA:FALSE");
        add_ext(x, issuer, NID_key_usage, "critical,digitalSignature");
        add_ext(x, issuer, NID_ext_key_usage, eku);
    } else {
        add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign");
    }
    assert_true(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
    return x;
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

static char *refs_json(size_t skip)
{
    char *s = malloc(8192);
    size_t used = (size_t)sprintf(s, "{\"format\": \"trustme-reference-values\", \"version\": 1, "
                                     "\"values\": [");
    bool first = true;
    for (size_t i = 0; i < N_EVENTS; i++) {
        if (i == skip)
            continue;
        uint8_t h[32];
        char hex[65];
        content_hash(i, h);
        tm_hex(h, 32, hex);
        used += (size_t)sprintf(s + used, "%s{\"type\": \"%s\", \"name\": \"%s\", "
                                "\"sha256\": \"%s\"}", first ? "" : ", ", events[i].type,
                                events[i].name, hex);
        first = false;
    }
    strcpy(s + used, "]}\n");
    return s;
}

static struct refvalues *signed_refs(struct fixture *f, size_t skip)
{
    char *json = refs_json(skip);
    uint8_t sig[128];
    struct refvalues_files rf = {.json = json, .json_len = strlen(json)};
    rf.sig_len = sign_der(f->signer_key, json, rf.json_len, sig, sizeof(sig));
    rf.sig = (char *)sig;
    rf.chain_pem = pem_of(f->signer, NULL);
    rf.chain_len = strlen(rf.chain_pem);
    struct refvalues *r = NULL;
    tm_err err = {0};
    if (refvalues_load(&rf, f->anchors, strlen(f->anchors), NULL, 0, 0, &r, &err) < 0)
        fail_msg("refvalues_load: %s", err.msg);
    free(json);
    free(rf.chain_pem);
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
    f->root = make_cert("Test Device Root", f->root_key, NULL, NULL, 1, NULL);
    f->other_root = make_cert("Other Root", f->other_root_key, NULL, NULL, 1, NULL);
    f->leaf = make_cert("device-1", f->ak, f->root, f->root_key, 42, "clientAuth");
    f->leaf_other_ca = make_cert("device-1", f->ak, f->other_root, f->other_root_key, 42,
                                 "clientAuth");
    f->signer = make_cert("release signing", f->signer_key, f->root, f->root_key, 7,
                          "codeSigning");
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
    EVP_PKEY *keys[] = {f->root_key, f->other_root_key, f->ak, f->other_ak, f->signer_key};
    X509 *certs[] = {f->root, f->other_root, f->leaf, f->leaf_other_ca, f->signer};
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
    EVP_PKEY *signing_key;   /* default: the AK */
    EVP_PKEY *public_key;    /* TPMT_PUBLIC of; default: the AK */
    TPMA_OBJECT attributes;  /* default: what tpmd's AK has */
    X509 *cert;              /* default: the leaf; the chain is cert only */
    bool no_cert;
    const uint8_t *quoted_nonce; /* default: the verifier's */
    bool pcr12_unlogged;     /* PCR 12 extended once more than the log says (quoted so) */
};

struct evidence {
    Trustme__Attest__Quote q;
    Trustme__Attest__Event ev[N_EVENTS], *evp[N_EVENTS];
    Trustme__Attest__PcrValue pv[2], *pvp[2];
    uint8_t hashes[N_EVENTS][32];
    char names[N_EVENTS][64], types[N_EVENTS][32];
    uint8_t pcr[2][32]; /* PCR 11, PCR 12 */
    uint8_t attest[2048], sig[256], akpub[1024];
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
static void quote(EVP_PKEY *key, const uint8_t *qnonce, struct evidence *e)
{
    TPMS_ATTEST a;
    memset(&a, 0, sizeof(a));
    a.magic = TPM2_GENERATED_VALUE;
    a.type = TPM2_ST_ATTEST_QUOTE;
    a.qualifiedSigner.size = 34;
    a.extraData.size = ATTEST_NONCE_LEN;
    memcpy(a.extraData.buffer, qnonce, ATTEST_NONCE_LEN);
    a.clockInfo.clock = 123456;
    a.clockInfo.safe = 1;
    a.firmwareVersion = 0x2019;
    TPMS_PCR_SELECTION *s = &a.attested.quote.pcrSelect.pcrSelections[0];
    a.attested.quote.pcrSelect.count = 1;
    s->hash = TPM2_ALG_SHA256;
    s->sizeofSelect = 3;
    s->pcrSelect[PCR_RUNTIME / 8] |= 1u << (PCR_RUNTIME % 8);
    s->pcrSelect[PCR_BOOT / 8] |= 1u << (PCR_BOOT % 8);
    a.attested.quote.pcrDigest.size = 32;
    struct tm_sha256_ctx h;
    tm_sha256_init(&h);
    tm_sha256_update(&h, e->pcr[0], 32);
    tm_sha256_update(&h, e->pcr[1], 32);
    tm_sha256_final(&h, a.attested.quote.pcrDigest.buffer);
    size_t off = 0;
    assert_int_equal(Tss2_MU_TPMS_ATTEST_Marshal(&a, e->attest, sizeof(e->attest), &off),
                     TSS2_RC_SUCCESS);
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
    assert_int_equal(Tss2_MU_TPMT_SIGNATURE_Marshal(&sig, e->sig, sizeof(e->sig), &off),
                     TSS2_RC_SUCCESS);
    e->q.has_signature = true;
    e->q.signature.data = e->sig;
    e->q.signature.len = off;
}

#define AK_ATTRS (TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | \
                  TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH | \
                  TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN_ENCRYPT)

static void evidence_make(struct fixture *f, struct evidence *e, struct opts o)
{
    memset(e, 0, sizeof(*e));
    trustme__attest__quote__init(&e->q);
    for (size_t i = 0; i < N_EVENTS; i++) {
        Trustme__Attest__Event *ev = &e->ev[i];
        trustme__attest__event__init(ev);
        strcpy(e->names[i], events[i].name);
        strcpy(e->types[i], events[i].type);
        content_hash(i, e->hashes[i]);
        ev->has_seq = ev->has_pcr = ev->has_sha256 = true;
        ev->seq = i;
        ev->pcr = events[i].pcr;
        ev->type = e->types[i];
        ev->name = e->names[i];
        ev->sha256.data = e->hashes[i];
        ev->sha256.len = 32;
        e->evp[i] = ev;
        uint8_t d[32];
        tm_event_digest(ev->pcr, ev->type, ev->name, ev->sha256.data, d);
        tm_pcr_extend(e->pcr[ev->pcr == PCR_BOOT], d);
    }
    if (o.pcr12_unlogged) {
        uint8_t d[32] = {1};
        tm_pcr_extend(e->pcr[1], d);
    }
    e->q.events = e->evp;
    e->q.n_events = N_EVENTS;
    for (size_t i = 0; i < 2; i++) {
        trustme__attest__pcr_value__init(&e->pv[i]);
        e->pv[i].has_index = e->pv[i].has_sha256 = true;
        e->pv[i].index = i ? PCR_BOOT : PCR_RUNTIME;
        e->pv[i].sha256.data = e->pcr[i];
        e->pv[i].sha256.len = 32;
        e->pvp[i] = &e->pv[i];
    }
    e->q.pcrs = e->pvp;
    e->q.n_pcrs = 2;
    quote(o.signing_key ? o.signing_key : f->ak, o.quoted_nonce ? o.quoted_nonce : nonce, e);
    size_t len = 0;
    tpm_public(o.public_key ? o.public_key : f->ak, o.attributes ? o.attributes : AK_ATTRS,
               e->akpub, &len);
    e->q.has_ak_public = true;
    e->q.ak_public.data = e->akpub;
    e->q.ak_public.len = len;
    if (!o.no_cert) {
        e->chain = pem_of(o.cert ? o.cert : f->leaf, NULL);
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
    return (struct attest_policy){.nonce = nonce, .nonce_len = sizeof(nonce),
                                  .anchors_pem = f->anchors, .anchors_len = strlen(f->anchors),
                                  .refs = f->refs};
}

#define BIT(c) (1u << (c))

/* Exactly the checks in failing fail; the report has all seven in order. */
static void expect_checks_(const struct attest_report *rep, unsigned failing, const char *file,
                           int line)
{
    static const char *const names[] = {"certificate chain", "AK binding", "quote signature",
                                        "nonce", "PCR digest", "event log", "reference values"};
    bool bad = false;
    for (int i = 0; i < ATTEST_CHECK_COUNT; i++) {
        const struct attest_check *c = &rep->checks[i];
        if (strcmp(c->name, names[i]) != 0 || c->ok == !!(failing & BIT(i)) || !c->detail[0]) {
            print_error("check %d \"%s\": %s, expected %s: %s\n", i, c->name,
                        c->ok ? "ok" : "FAIL", failing & BIT(i) ? "FAIL" : "ok", c->detail);
            bad = true;
        }
    }
    if (bad || rep->trusted != (failing == 0))
        _fail(file, line);
}
#define expect_checks(rep, failing) expect_checks_((rep), (failing), __FILE__, __LINE__)

static void expect_detail_(const struct attest_report *rep, enum attest_check_id id,
                           const char *text, const char *file, int line)
{
    if (!strstr(rep->checks[id].detail, text)) {
        print_error("%s: \"%s\" does not contain \"%s\"\n", rep->checks[id].name,
                    rep->checks[id].detail, text);
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
    expect_detail(&rep, ATTEST_CHECK_CHAIN, "CN=device-1, issued under CN=Test Device Root");
    expect_detail(&rep, ATTEST_CHECK_PCR_DIGEST, "PCRs 11, 12");
    expect_detail(&rep, ATTEST_CHECK_EVENT_LOG, "7 events replay");
    expect_detail(&rep, ATTEST_CHECK_REFERENCE_VALUES, "all 7 events are reference values");
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
        /* A changed type or hash is also no longer a reference value. */
        expect_checks(&rep, BIT(ATTEST_CHECK_EVENT_LOG) |
                                (field == 1 || field == 2 ? BIT(ATTEST_CHECK_REFERENCE_VALUES)
                                                          : 0));
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
    expect_checks(&rep, BIT(ATTEST_CHECK_EVENT_LOG));
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
    expect_detail(&rep, ATTEST_CHECK_PCR_DIGEST, "the quote selects PCRs 11, 12, but 12 were "
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
    expect_checks(&rep, BIT(ATTEST_CHECK_CHAIN) | BIT(ATTEST_CHECK_AK_BINDING) |
                            BIT(ATTEST_CHECK_QUOTE_SIGNATURE));
    expect_detail(&rep, ATTEST_CHECK_CHAIN, "extendedKeyUsage lacks TLS Web Client");
    evidence_done(&e);
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
    expect_checks(&rep, BIT(ATTEST_CHECK_CHAIN) | BIT(ATTEST_CHECK_AK_BINDING) |
                            BIT(ATTEST_CHECK_QUOTE_SIGNATURE));
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
    expect_detail(&rep, ATTEST_CHECK_REFERENCE_VALUES, "1 of 7 events are not reference values: "
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
    json[20] = 'X'; /* edited after signing */
    assert_int_equal(refvalues_load(&rf, f->anchors, strlen(f->anchors), NULL, 0, 0, &r, &err),
                     -EBADMSG);
    assert_err_contains(&err, "signature: signature does not verify");
    free(rf.chain_pem);
    /* A signer without codeSigning (the device's own certificate). */
    json[20] = 'r';
    rf.chain_pem = pem_of(f->leaf, NULL);
    rf.chain_len = strlen(rf.chain_pem);
    assert_int_equal(refvalues_load(&rf, f->anchors, strlen(f->anchors), NULL, 0, 0, &r, &err),
                     -EKEYREJECTED);
    assert_err_contains(&err, "lacks Code Signing");
    assert_null(r);
    free(rf.chain_pem);
    free(json);
}

static void refs_parser(void **state)
{
    (void)state;
    static const struct {
        const char *json, *error;
    } bad[] = {
        {"[]", "$: "},
        {"{'format': 'trustme-reference-values', 'version': 1, 'values': [], 'x': 1}", "$.x: unknown key"},
        {"{'format': 'other', 'version': 1, 'values': []}", "$.format: \"other\""},
        {"{'format': 'trustme-reference-values', 'version': 2, 'values': []}", "$.version"},
        {"{'format': 'trustme-reference-values', 'version': '1', 'values': []}", "$.version"},
        {"{'format': 'trustme-reference-values', 'version': 1, 'values': {}}", "$.values"},
        {"{'format': 'trustme-reference-values', 'version': 1}", "$.values"},
        {"{'format': 'trustme-reference-values', 'version': 1, 'values': [1]}", "$.values[0]: expected an object"},
        {"{'format': 'trustme-reference-values', 'version': 1, 'values': [{'type': 'binary', "
         "'name': 'a', 'sha256': 'AB00000000000000000000000000000000000000000000000000000000000000'}]}",
         "$.values[0].sha256: expected 64 lower-case hex digits"},
        {"{'format': 'trustme-reference-values', 'version': 1, 'values': [{'type': 'binary', "
         "'name': 'a', 'sha256': 'ab'}]}", "$.values[0].sha256"},
        {"{'format': 'trustme-reference-values', 'version': 1, 'values': [{'type': 'firmware', "
         "'name': 'a', 'sha256': '" "0000000000000000000000000000000000000000000000000000000000000000'}]}",
         "$.values[0]: event type firmware is unknown"},
        {"{'format': 'trustme-reference-values', 'version': 1, 'values': [{'type': 'binary', "
         "'name': 'a\\u0001', 'sha256': '0000000000000000000000000000000000000000000000000000000000000000'}]}",
         "$.values[0]: event name has a byte 0x01"},
        {"{'format': 'trustme-reference-values', 'version': 1, 'values': [{'type': 'binary', "
         "'sha256': '0000000000000000000000000000000000000000000000000000000000000000'}]}",
         "$.values[0].name"},
        {"{'format': 'trustme-reference-values', 'version': 1, 'values': [{'type': 'binary', "
         "'name': 'a', 'sha256': '0000000000000000000000000000000000000000000000000000000000000000', 'pcr': 1}]}",
         "$.values[0].pcr: unknown key"},
        {"{'format': 'trustme-reference-values', 'format': 'trustme-reference-values', 'version': 1, 'values': []}",
         "$.format: key appears more than once"},
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
    char *s = sq("{'format': 'trustme-reference-values', 'version': 1, 'values': ["
                 "{'type': 'binary', 'name': 'b', 'sha256': '" "0101010101010101010101010101010101010101010101010101010101010101'},"
                 "{'type': 'binary', 'name': 'a', 'sha256': '" "0000000000000000000000000000000000000000000000000000000000000000'},"
                 "{'type': 'binary', 'name': 'a', 'sha256': '" "0000000000000000000000000000000000000000000000000000000000000000'}]}");
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
    s = sq("{'format': 'trustme-reference-values', 'version': 1, 'values': []}");
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
    expect_checks(&rep, BIT(ATTEST_CHECK_CHAIN) | BIT(ATTEST_CHECK_AK_BINDING) |
                            BIT(ATTEST_CHECK_QUOTE_SIGNATURE));
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
