/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Writes the seeds of fuzz_scd_request and fuzz_scd_files into <dir>/scd_request/ and
 * <dir>/scd_files/: one valid request of each kind against the fixture's tokens
 * (scd_fixture.h), and one valid file of each kind. Key blobs are made with the fixture's KEK
 * (those of the requests bound to its device secret, which fuzz_scd_request hands scd first),
 * requests that use a token carry the digest of its fixture files (fx_anchor), certificates
 * with a small PKI made here (P-256, valid 2020..2120, verified at 2025-01-01). The verify seeds
 * draw new keys on every run: keep the committed ones unless the Verify request changes.
 *
 *   ninja -C build-fuzz tests/fuzz/gen_scd_seeds && build-fuzz/tests/fuzz/gen_scd_seeds tests/fuzz/corpus */
#include <errno.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fileio.h"
#include "keywrap.h"
#include "proto.h"
#include "scd.pb-c.h"
#include "scd_fixture.h"

typedef Trustme__Scd__Request Request;

#define AT_TIME 1735689600 /* 2025-01-01 */

static const char *out_dir;
static char *state_dir; /* the fixture, for the anchored digests */

static void die(const char *what)
{
    fprintf(stderr, "gen_scd_seeds: %s\n", what);
    exit(1);
}

static void put(const char *target, const char *name, const void *data, size_t len)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", out_dir, target);
    mkdir_p(path, 0755);
    snprintf(path, sizeof(path), "%s/%s/%s", out_dir, target, name);
    tm_err err = {0};
    if (write_file_replace(path, data, len, 0644, &err) < 0)
        die(err.msg);
}

/* A file seed for fuzz_scd_files: the selector byte, then the file. */
static void put_file(const char *name, uint8_t sel, const void *data, size_t len)
{
    uint8_t *buf = malloc(len + 1);
    if (!buf)
        die("out of memory");
    buf[0] = sel;
    memcpy(buf + 1, data, len);
    put("scd_files", name, buf, len + 1);
    free(buf);
}

static uint64_t next_id = 1;

/* With the current version unless the request has one already, and the next id. */
static void put_request(const char *name, Request *rq)
{
    if (!rq->has_version) {
        rq->has_version = true;
        rq->version = TM_PROTOCOL_VERSION;
    }
    rq->has_id = true;
    rq->id = next_id++;
    size_t len = trustme__scd__request__get_packed_size(rq);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        die("out of memory");
    trustme__scd__request__pack(rq, buf);
    put("scd_request", name, buf, len);
    free(buf);
}

static ProtobufCBinaryData bin(const char *s)
{
    return (ProtobufCBinaryData){.len = strlen(s), .data = (uint8_t *)s};
}

/* The token state trustmed anchored for uuid, as it sends with every request using the token. */
static uint8_t anchor_buf[32];

static void set_anchor(Request *rq, const char *uuid)
{
    fx_anchor(state_dir, uuid, anchor_buf);
    rq->has_token_anchor = true;
    rq->token_anchor = (ProtobufCBinaryData){.len = sizeof(anchor_buf), .data = anchor_buf};
}

static void make_blob_for(const struct secret *device_secret, const char *uuid, uint8_t blob[KEYWRAP_BLOB_LEN])
{
    _cleanup_secret_ struct secret *kek = fx_secret(fx_kek_bytes, sizeof(fx_kek_bytes));
    _cleanup_secret_ struct secret *key = fx_secret(fx_key_bytes, sizeof(fx_key_bytes));
    tm_err err = {0};
    if (keywrap_seal_soft(kek, device_secret, uuid, key, blob, &err) < 0)
        die(err.msg);
}

static void make_blob(const struct secret *device_secret, uint8_t blob[KEYWRAP_BLOB_LEN])
{
    make_blob_for(device_secret, FX_UUID_SOFT, blob);
}

/* A device-bound blob of uuid's token (the fixture's KEK and key). */
static ProtobufCBinaryData bound_blob(const char *uuid)
{
    static uint8_t blob[KEYWRAP_BLOB_LEN];
    _cleanup_secret_ struct secret *ds = fx_secret(fx_device_secret_bytes, sizeof(fx_device_secret_bytes));
    make_blob_for(ds, uuid, blob);
    return (ProtobufCBinaryData){.len = sizeof(blob), .data = blob};
}

/* --- token requests --- */

static void status(const char *name, const char *uuid)
{
    Trustme__Scd__Status s = TRUSTME__SCD__STATUS__INIT;
    s.uuid = (char *)uuid;
    Request rq = TRUSTME__SCD__REQUEST__INIT;
    rq.body_case = TRUSTME__SCD__REQUEST__BODY_STATUS;
    rq.status = &s;
    put_request(name, &rq);
}

static void pair(const char *name, const char *uuid, bool pkcs11)
{
    Trustme__Scd__TokenSpec spec = TRUSTME__SCD__TOKEN_SPEC__INIT;
    spec.has_type = true;
    Trustme__Scd__Pair p = TRUSTME__SCD__PAIR__INIT;
    p.uuid = (char *)uuid;
    p.spec = &spec;
    p.has_pin = true;
    p.pin = bin(FX_PIN);
    if (pkcs11) {
        spec.type = TRUSTME__SCD__TOKEN_TYPE__TOKEN_PKCS11;
        spec.pkcs11_module = (char *)FX_P11_MODULE;
        spec.pkcs11_label = (char *)"fuzz";
    } else {
        spec.type = TRUSTME__SCD__TOKEN_TYPE__TOKEN_SOFT;
        spec.has_soft_kdf_n = true;
        spec.soft_kdf_n = FX_KDF_N;
        p.has_puk = true;
        p.puk = bin(FX_PUK);
    }
    Request rq = TRUSTME__SCD__REQUEST__INIT;
    rq.body_case = TRUSTME__SCD__REQUEST__BODY_PAIR;
    rq.pair = &p;
    put_request(name, &rq);
}

static void new_key(const char *name, const char *uuid, const char *pin, const char *anchor_of)
{
    Trustme__Scd__NewKey n = TRUSTME__SCD__NEW_KEY__INIT;
    n.uuid = (char *)uuid;
    n.has_pin = true;
    n.pin = bin(pin);
    Request rq = TRUSTME__SCD__REQUEST__INIT;
    rq.body_case = TRUSTME__SCD__REQUEST__BODY_NEW_KEY;
    rq.new_key = &n;
    if (anchor_of)
        set_anchor(&rq, anchor_of);
    put_request(name, &rq);
}

static void unwrap(const char *name, const char *uuid, const char *pin, const char *anchor_of)
{
    uint8_t blob[KEYWRAP_BLOB_LEN];
    _cleanup_secret_ struct secret *ds = fx_secret(fx_device_secret_bytes, sizeof(fx_device_secret_bytes));
    /* FX_UUID_SOFT's blob, except for the v2 token (its own) */
    make_blob_for(ds, strcmp(uuid, FX_UUID_V2) == 0 ? FX_UUID_V2 : FX_UUID_SOFT, blob);
    Trustme__Scd__Unwrap u = TRUSTME__SCD__UNWRAP__INIT;
    u.uuid = (char *)uuid;
    u.has_pin = u.has_wrapped = true;
    u.pin = bin(pin);
    u.wrapped = (ProtobufCBinaryData){.len = sizeof(blob), .data = blob};
    Request rq = TRUSTME__SCD__REQUEST__INIT;
    rq.body_case = TRUSTME__SCD__REQUEST__BODY_UNWRAP;
    rq.unwrap = &u;
    if (anchor_of)
        set_anchor(&rq, anchor_of);
    put_request(name, &rq);
}

/* with_blob: with the container's key.wrapped, which a re-key wraps anew */
static void change_pin(const char *name, const char *uuid, const char *old_pin, const char *new_pin, bool with_blob)
{
    Trustme__Scd__ChangePin c = TRUSTME__SCD__CHANGE_PIN__INIT;
    if ((c.has_wrapped = with_blob))
        c.wrapped = bound_blob(uuid);
    c.uuid = (char *)uuid;
    c.has_old_pin = c.has_new_pin = true;
    c.old_pin = bin(old_pin);
    c.new_pin = bin(new_pin);
    Request rq = TRUSTME__SCD__REQUEST__INIT;
    rq.body_case = TRUSTME__SCD__REQUEST__BODY_CHANGE_PIN;
    rq.change_pin = &c;
    set_anchor(&rq, uuid);
    put_request(name, &rq);
}

static void unlock(const char *name, const char *uuid, const char *puk, bool with_blob)
{
    Trustme__Scd__Unlock u = TRUSTME__SCD__UNLOCK__INIT;
    if ((u.has_wrapped = with_blob))
        u.wrapped = bound_blob(uuid);
    u.uuid = (char *)uuid;
    u.has_puk = u.has_new_pin = true;
    u.puk = bin(puk);
    u.new_pin = bin("56789");
    Request rq = TRUSTME__SCD__REQUEST__INIT;
    rq.body_case = TRUSTME__SCD__REQUEST__BODY_UNLOCK;
    rq.unlock = &u;
    set_anchor(&rq, uuid);
    put_request(name, &rq);
}

/* Settle a pending change: anchor_of's digest as the current generation, pending as the next. */
static void commit(const char *name, const char *uuid, const char *anchor_of, const uint8_t pending[32])
{
    static uint8_t p[32];
    memcpy(p, pending, 32);
    Trustme__Scd__TokenCommit c = TRUSTME__SCD__TOKEN_COMMIT__INIT;
    c.uuid = (char *)uuid;
    c.has_pending_sha256 = true;
    c.pending_sha256 = (ProtobufCBinaryData){.len = 32, .data = p};
    Request rq = TRUSTME__SCD__REQUEST__INIT;
    rq.body_case = TRUSTME__SCD__REQUEST__BODY_TOKEN_COMMIT;
    rq.token_commit = &c;
    set_anchor(&rq, anchor_of);
    put_request(name, &rq);
}

static void device_secret(const char *name, bool give)
{
    Trustme__Scd__DeviceSecret d = TRUSTME__SCD__DEVICE_SECRET__INIT;
    if (give) {
        d.has_secret = true;
        d.secret =
            (ProtobufCBinaryData){.len = sizeof(fx_device_secret_bytes), .data = (uint8_t *)fx_device_secret_bytes};
    } else {
        d.unavailable = (char *)"the TPM is not in the measured state";
    }
    Request rq = TRUSTME__SCD__REQUEST__INIT;
    rq.body_case = TRUSTME__SCD__REQUEST__BODY_DEVICE_SECRET;
    rq.device_secret = &d;
    put_request(name, &rq);
}

static void wipe(const char *name, const char *uuid, const char *pin)
{
    Trustme__Scd__Wipe w = TRUSTME__SCD__WIPE__INIT;
    w.uuid = (char *)uuid;
    if (pin) {
        w.has_pin = true;
        w.pin = bin(pin);
    }
    Request rq = TRUSTME__SCD__REQUEST__INIT;
    rq.body_case = TRUSTME__SCD__REQUEST__BODY_WIPE;
    rq.wipe = &w;
    put_request(name, &rq);
}

/* --- signature verification --- */

static void add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    if (!ext || X509_add_ext(x, ext, -1) != 1)
        die("X509_add_ext");
    X509_EXTENSION_free(ext);
}

static X509 *make_cert(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key, bool ca)
{
    X509 *x = X509_new();
    X509_set_version(x, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x), ca ? 1 : 2);
    X509_NAME *name = X509_NAME_new();
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_subject_name(x, name);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
    X509_NAME_free(name);
    if (!ASN1_TIME_set_string_X509(X509_getm_notBefore(x), "20200101000000Z") ||
        !ASN1_TIME_set_string_X509(X509_getm_notAfter(x), "21200101000000Z"))
        die("ASN1_TIME_set_string_X509");
    X509_set_pubkey(x, key);
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
    add_ext(x, &ctx, NID_subject_key_identifier, "hash");
    add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always");
    add_ext(x, &ctx, NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
    add_ext(x, &ctx, NID_key_usage, ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
    if (!ca)
        add_ext(x, &ctx, NID_ext_key_usage, "codeSigning");
    if (X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) <= 0)
        die("X509_sign");
    return x;
}

static X509_CRL *make_crl(X509 *issuer, EVP_PKEY *key)
{
    X509_CRL *c = X509_CRL_new();
    X509_CRL_set_version(c, 1);
    X509_CRL_set_issuer_name(c, X509_get_subject_name(issuer));
    ASN1_TIME *t = ASN1_TIME_new();
    ASN1_TIME_set_string_X509(t, "20240101000000Z");
    X509_CRL_set1_lastUpdate(c, t);
    ASN1_TIME_set_string_X509(t, "21000101000000Z");
    X509_CRL_set1_nextUpdate(c, t);
    ASN1_TIME_free(t);
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, NULL, NULL, c, 0);
    X509_EXTENSION *akid = X509V3_EXT_conf_nid(NULL, &ctx, NID_authority_key_identifier, "keyid:always");
    if (!akid)
        die("CRL AKID");
    X509_CRL_add_ext(c, akid, -1);
    X509_EXTENSION_free(akid);
    if (X509_CRL_sign(c, key, EVP_sha256()) <= 0)
        die("X509_CRL_sign");
    return c;
}

/* PEM of x (a certificate or a CRL) into a malloc'd buffer. */
static ProtobufCBinaryData pem(X509 *cert, X509_CRL *crl)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (!b || !(cert ? PEM_write_bio_X509(b, cert) : PEM_write_bio_X509_CRL(b, crl)))
        die("PEM_write");
    char *p;
    long n = BIO_get_mem_data(b, &p);
    ProtobufCBinaryData d = {.len = (size_t)n, .data = malloc((size_t)n)};
    if (!d.data)
        die("out of memory");
    memcpy(d.data, p, (size_t)n);
    BIO_free(b);
    return d;
}

static void verify(void)
{
    static const char data[] = "GuestOS image";
    EVP_PKEY *root_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *leaf_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (!root_key || !leaf_key)
        die("keygen");
    X509 *root = make_cert("fuzz root", root_key, NULL, NULL, true);
    X509 *leaf = make_cert("fuzz signer", leaf_key, root, root_key, false);
    X509_CRL *crl = make_crl(root, root_key);

    uint8_t sig[128];
    size_t sig_len = sizeof(sig);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, leaf_key) != 1 ||
        EVP_DigestSign(md, sig, &sig_len, (const uint8_t *)data, sizeof(data) - 1) != 1)
        die("EVP_DigestSign");
    EVP_MD_CTX_free(md);

    ProtobufCBinaryData anchor = pem(root, NULL), crl_pem = pem(NULL, crl);
    Trustme__Scd__Verify v = TRUSTME__SCD__VERIFY__INIT;
    v.has_data = v.has_signature = v.has_chain_pem = v.has_at_time = true;
    v.data = (ProtobufCBinaryData){.len = sizeof(data) - 1, .data = (uint8_t *)data};
    v.signature = (ProtobufCBinaryData){.len = sig_len, .data = sig};
    v.chain_pem = pem(leaf, NULL);
    v.n_anchors_pem = 1;
    v.anchors_pem = &anchor;
    v.eku_oid = (char *)"1.3.6.1.5.5.7.3.3";
    v.at_time = AT_TIME;
    Request rq = TRUSTME__SCD__REQUEST__INIT;
    rq.body_case = TRUSTME__SCD__REQUEST__BODY_VERIFY;
    rq.verify = &v;
    put_request("verify", &rq);
    v.n_crls_pem = 1;
    v.crls_pem = &crl_pem;
    v.eku_oid = (char *)"codeSigning";
    put_request("verify-crl", &rq);
    /* An empty element arrives as (NULL, 0): it once reached memcpy. */
    ProtobufCBinaryData anchors[2] = {anchor, {0}};
    v.n_crls_pem = 0;
    v.anchors_pem = anchors;
    v.n_anchors_pem = 2;
    put_request("verify-empty-anchor", &rq);

    free(anchor.data);
    free(crl_pem.data);
    free(v.chain_pem.data);
    X509_CRL_free(crl);
    X509_free(leaf);
    X509_free(root);
    EVP_PKEY_free(leaf_key);
    EVP_PKEY_free(root_key);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
        return 2;
    }
    out_dir = argv[1];
    state_dir = fx_state_new();

    status("status", FX_UUID_SOFT);
    status("status-locked", FX_UUID_LOCKED);
    status("status-free", FX_UUID_FREE);
    pair("pair-soft", FX_UUID_FREE, false);
    pair("pair-pkcs11", FX_UUID_FREE, true);
    pair("pair-exists", FX_UUID_SOFT, false);
    new_key("new-key", FX_UUID_SOFT, FX_PIN, FX_UUID_SOFT);
    new_key("new-key-no-anchor", FX_UUID_SOFT, FX_PIN, NULL);
    unwrap("unwrap", FX_UUID_SOFT, FX_PIN, FX_UUID_SOFT);
    unwrap("unwrap-wrong-pin", FX_UUID_SOFT, "4321", FX_UUID_SOFT);
    /* Another token's digest: the files are not the anchored ones. */
    unwrap("unwrap-stale-anchor", FX_UUID_SOFT, FX_PIN, FX_UUID_P11);
    /* A leftover tries file says locked: scd leaves the counting to trustmed, so the PIN is
     * checked (and opens), then the blob, FX_UUID_SOFT's, does not authenticate. */
    unwrap("unwrap-stale-tries", FX_UUID_LOCKED, FX_PIN, FX_UUID_LOCKED);
    change_pin("change-pin", FX_UUID_SOFT, FX_PIN, "56789", false);
    /* Re-keying re-wraps the key blob; a v2 token is migrated to v3 on the way. */
    change_pin("change-pin-rewrap", FX_UUID_SOFT, FX_PIN, "56789", true);
    change_pin("change-pin-v2", FX_UUID_V2, FX_PIN, "56789", true);
    /* An empty bytes field arrives as (NULL, 0): it once reached memchr and memcpy. */
    change_pin("change-pin-empty", FX_UUID_SOFT, FX_PIN, "", false);
    unlock("unlock", FX_UUID_LOCKED, FX_PUK, false);
    unlock("unlock-rewrap", FX_UUID_LOCKED, FX_PUK, true);
    unlock("unlock-v2", FX_UUID_V2, FX_PUK, true);
    unlock("unlock-wrong-puk", FX_UUID_LOCKED, "87654321", false);
    unwrap("unwrap-v2", FX_UUID_V2, FX_PIN, FX_UUID_V2);
    /* No pending file: the current generation stays (and a wrong one is refused). */
    uint8_t other[32];
    memset(other, 0x5a, sizeof(other));
    commit("commit", FX_UUID_SOFT, FX_UUID_SOFT, other);
    commit("commit-stale", FX_UUID_SOFT, FX_UUID_P11, other);
    device_secret("device-secret", true);
    device_secret("device-secret-unavailable", false);
    wipe("wipe", FX_UUID_SOFT, NULL);
    wipe("wipe-pkcs11", FX_UUID_P11, FX_PIN);
    wipe("wipe-bad-record", FX_UUID_BADREC, NULL);
    verify();
    Request rq = TRUSTME__SCD__REQUEST__INIT;
    put_request("no-body", &rq);
    rq.version = TM_PROTOCOL_VERSION + 1;
    put_request("bad-version", &rq);

    uint8_t blob[KEYWRAP_BLOB_LEN];
    make_blob(NULL, blob);
    put_file("blob", 0, blob, sizeof(blob));
    _cleanup_secret_ struct secret *ds = fx_secret(fx_device_secret_bytes, sizeof(fx_device_secret_bytes));
    make_blob(ds, blob);
    put_file("blob-bound", 4, blob, sizeof(blob));
    static const char rec_soft[] = "{\"version\":1,\"type\":\"soft\"}\n";
    static const char rec_p11[] = "{\"version\":1,\"type\":\"pkcs11\",\"pkcs11\":{\"module\":"
                                  "\"/usr/lib/softhsm/libsofthsm2.so\",\"label\":\"trustme\","
                                  "\"serial\":\"0123456789abcdef\"}}\n";
    put_file("record-soft", 1, rec_soft, sizeof(rec_soft) - 1);
    put_file("record-pkcs11", 1, rec_p11, sizeof(rec_p11) - 1);
    char soft[2048];
    size_t n = fx_soft_file(FX_UUID_SOFT, soft, sizeof(soft));
    put_file("soft", 2, soft, n);
    n = fx_soft_file_v2(FX_UUID_SOFT, soft, sizeof(soft));
    put_file("soft-v2", 2, soft, n);
    static const char tries[] = "{\"pin_failures\":1,\"puk_failures\":0}\n";
    put_file("tries", 3, tries, sizeof(tries) - 1);
    return 0;
}
