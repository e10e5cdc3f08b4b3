/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The fleet's trust, its device groups and enrollment (docs/FLEET.md "Enrollment"). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "cleanup.h"
#include "db.h"
#include "fleet.h"
#include "hex.h"
#include "verify.h"

#define AK_EKU "clientAuth" /* the Device CA's profile (docs/PKI.md), as trustme-verify checks it */

bool fleet_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > FLEET_NAME_MAX || s[0] == '.' || s[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isascii((unsigned char)s[i]) || !(isalnum((unsigned char)s[i]) || strchr("._-", s[i])))
            return false;
    return true;
}

bool fleet_address_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 3 || n > FLEET_ADDRESS_MAX || !strchr(s, ':'))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isascii((unsigned char)s[i]) || !(isalnum((unsigned char)s[i]) || strchr(".-:[]", s[i])))
            return false;
    return true;
}

void fleet_trust_done(struct fleet_trust *t)
{
    free(t->ak_anchors);
    free(t->rim_anchors);
    free(t->crls);
    *t = (struct fleet_trust){0};
}

static char *dup_value(PGresult *res, int col, size_t *ret_len)
{
    if (PQgetisnull(res, 0, col)) {
        *ret_len = 0;
        return NULL;
    }
    *ret_len = (size_t)PQgetlength(res, 0, col);
    return strdup(PQgetvalue(res, 0, col));
}

int fleet_trust_load(PGconn *c, struct fleet_trust *ret, tm_err *err)
{
    _cleanup_res_ PGresult *res = NULL;
    int r = fleet_exec(c, &res, err, "SELECT ak_anchors, device_cas, rim_anchors, rim_cas, crls FROM trust", 0, NULL);
    if (r < 0)
        return r;
    if (PQntuples(res) != 1)
        return tm_err_set(err, ENOENT, "the fleet has no trust anchors yet: run `trustme-fleet trust`");
    struct fleet_trust t = {0};
    size_t len;
    t.ak_anchors = dup_value(res, 0, &t.ak_anchors_len);
    t.rim_anchors = dup_value(res, 2, &t.rim_anchors_len);
    t.crls = dup_value(res, 4, &t.crls_len);
    r = -ENOMEM;
    if (t.ak_anchors && t.rim_anchors && (t.crls || PQgetisnull(res, 0, 4))) {
        r = ca_pins_parse(PQgetvalue(res, 0, 1), (size_t)PQgetlength(res, 0, 1), "device CAs", &t.device_cas, err);
        if (r == 0)
            r = ca_pins_parse(PQgetvalue(res, 0, 3), (size_t)PQgetlength(res, 0, 3), "RIM CAs", &t.rim_cas, err);
    } else
        tm_err_set(err, ENOMEM, "out of memory");
    (void)len;
    if (r < 0) {
        fleet_trust_done(&t);
        return r;
    }
    *ret = t;
    return 0;
}

/* At least one CERTIFICATE block that parses. */
static int check_roots(const char *pem, const char *what, tm_err *err)
{
    if (!pem || !*pem || strlen(pem) > VERIFY_PEM_MAX)
        return tm_err_set(err, EINVAL, "%s: no certificates (or more than %d bytes)", what, VERIFY_PEM_MAX);
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    bool ok = x != NULL;
    X509_free(x);
    BIO_free(b);
    return ok ? 0 : tm_err_set(err, EINVAL, "%s: not a PEM certificate", what);
}

int fleet_trust_set(PGconn *c, const char *ak_anchors, const char *device_cas, const char *rim_anchors,
                    const char *rim_cas, const char *crls, tm_err *err)
{
    struct ca_pins pins;
    int r;
    if ((r = check_roots(ak_anchors, "AK anchors", err)) < 0 || (r = check_roots(rim_anchors, "RIM anchors", err)) < 0)
        return r;
    if (!device_cas || (r = ca_pins_parse(device_cas, strlen(device_cas), "device CAs", &pins, err)) < 0 || !rim_cas ||
        (r = ca_pins_parse(rim_cas, strlen(rim_cas), "RIM CAs", &pins, err)) < 0)
        return r < 0 ? r : tm_err_set(err, EINVAL, "the device CAs and the RIM CAs are required");
    if (crls && (strlen(crls) > VERIFY_PEM_MAX || !strstr(crls, "-----BEGIN X509 CRL-----")))
        return tm_err_set(err, EINVAL, "CRLs: no PEM CRL (or more than %d bytes)", VERIFY_PEM_MAX);
    return FLEET_EXEC(c, NULL, err,
                      "INSERT INTO trust (id, ak_anchors, device_cas, rim_anchors, rim_cas, crls) "
                      "VALUES (1, $1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET ak_anchors = $1, "
                      "device_cas = $2, rim_anchors = $3, rim_cas = $4, crls = $5, updated_at = now()",
                      ak_anchors, device_cas, rim_anchors, rim_cas, crls);
}

/* bytes as a hex text parameter for decode($n, 'hex') */
static char *hex_param(const void *data, size_t len)
{
    char *h = malloc(2 * len + 1);
    if (h)
        tm_hex(data, len, h);
    return h;
}

int fleet_group_put(PGconn *c, const struct fleet_group_req *g, tm_err *err)
{
    if (!fleet_name_ok(g->name))
        return tm_err_set(err, EINVAL, "name: 1 to %d of A-Z a-z 0-9 . _ -, not starting with . or -", FLEET_NAME_MAX);
    if (g->interval_s < 1 || g->interval_s > 86400)
        return tm_err_set(err, EINVAL, "interval: 1 to 86400 seconds");
    for (size_t i = 0; i < g->npcrs; i++)
        if (g->pcrs[i] > 23)
            return tm_err_set(err, EINVAL, "pcrs: %u is not a PCR (0..23)", g->pcrs[i]);
    if (!g->refs_json || !g->refs_sig || !g->refs_chain)
        return tm_err_set(err, EINVAL, "the reference values, their signature and chain are required");
    _cleanup_(fleet_trust_done) struct fleet_trust t = {0};
    int r = fleet_trust_load(c, &t, err);
    if (r < 0)
        return r;
    /* Refused now rather than failing every device of the group later. */
    struct refvalues_files f = {
        .json = (char *)g->refs_json,
        .json_len = g->refs_json_len,
        .sig = (char *)g->refs_sig,
        .sig_len = g->refs_sig_len,
        .chain_pem = (char *)g->refs_chain,
        .chain_len = g->refs_chain_len,
    };
    struct refvalues_trust rt = {
        .anchors_pem = t.rim_anchors,
        .anchors_len = t.rim_anchors_len,
        .cas = &t.rim_cas,
        .crls_pem = t.crls,
        .crls_len = t.crls_len,
        .min_version = g->min_version,
    };
    _cleanup_(refvalues_freep) struct refvalues *refs = NULL;
    if ((r = refvalues_load(&f, &rt, &refs, err)) < 0) {
        tm_err_prefix(err, "reference values");
        return r == -ENOMEM ? r : tm_err_set(err, EACCES, "%s", err ? err->msg : "refused");
    }
    char interval[24], minv[24], rimv[24], pcrs[128] = "";
    snprintf(interval, sizeof(interval), "%lld", (long long)g->interval_s);
    snprintf(minv, sizeof(minv), "%llu", (unsigned long long)g->min_version);
    snprintf(rimv, sizeof(rimv), "%llu", (unsigned long long)refs->rim_version);
    size_t off = 0;
    for (size_t i = 0; i < g->npcrs; i++)
        off += (size_t)snprintf(pcrs + off, sizeof(pcrs) - off, "%s%u", i ? "," : "{", g->pcrs[i]);
    if (g->npcrs)
        snprintf(pcrs + off, sizeof(pcrs) - off, "}");
    _cleanup_free_ char *json = hex_param(g->refs_json, g->refs_json_len);
    _cleanup_free_ char *sig = hex_param(g->refs_sig, g->refs_sig_len);
    _cleanup_free_ char *chain = hex_param(g->refs_chain, g->refs_chain_len);
    if (!json || !sig || !chain)
        return tm_err_set(err, ENOMEM, "out of memory");
    return FLEET_EXEC(c, NULL, err,
                      "INSERT INTO device_groups (name, interval_s, pcrs, pin_ak, min_version, refs_json, refs_sig, "
                      "refs_chain, rim_version) VALUES ($1, $2, $3, $4, $5, decode($6, 'hex'), decode($7, 'hex'), "
                      "decode($8, 'hex'), $9) ON CONFLICT (name) DO UPDATE SET interval_s = $2, pcrs = $3, "
                      "pin_ak = $4, min_version = $5, refs_json = decode($6, 'hex'), refs_sig = decode($7, 'hex'), "
                      "refs_chain = decode($8, 'hex'), rim_version = $9, updated_at = now()",
                      g->name, interval, g->npcrs ? pcrs : NULL, g->pin_ak ? "true" : "false", minv, json, sig, chain,
                      rimv);
}

/* A device certificate chain (leaf first) the fleet trusts: to its AK roots (X509_STRICT, EKU
 * clientAuth, the CRLs), an end entity issued by one of its Device CAs. The leaf's subject in
 * *res. what names the chain in messages. */
static int check_device_chain(const struct fleet_trust *t, const char *pem, const char *what, struct verify_result *res,
                              tm_err *err)
{
    struct verify_request rq = {
        .chain_pem = pem,
        .chain_len = strlen(pem),
        .anchors_pem = t->ak_anchors,
        .anchors_len = t->ak_anchors_len,
        .crls_pem = t->crls,
        .crls_len = t->crls_len,
        .leaf_only = true,
        .eku = AK_EKU,
        .cache = true, /* a device's TLS chain is checked again at every pull over TLS */
    };
    tm_err e2 = {0};
    int r = verify_signed(&rq, res, &e2);
    if (r < 0)
        return tm_err_set(err, r == -EINVAL ? EINVAL : EACCES, "%s: %s", what, e2.msg);
    if (pem_leaf_is_ca(pem, strlen(pem)) != 0)
        return tm_err_set(err, EACCES, "%s (%s) is a CA certificate", what, res->leaf_subject);
    if (!ca_pins_issued(&t->device_cas, res))
        return tm_err_set(err, EACCES, "%s (%s) was not issued by one of the fleet's Device CAs", what,
                          res->leaf_subject);
    return 0;
}

/* SHA-256 of the leaf's SubjectPublicKeyInfo (DER), as hex: what pins a device's TLS key. */
static int leaf_spki_hex(const char *pem, char hex[65], tm_err *err)
{
    BIO *in = BIO_new_mem_buf(pem, -1);
    X509 *x = in ? PEM_read_bio_X509(in, NULL, NULL, NULL) : NULL;
    unsigned char *der = NULL;
    int len = x ? i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der) : -1;
    uint8_t md[32];
    bool ok = len > 0 && EVP_Digest(der, (size_t)len, md, NULL, EVP_sha256(), NULL) == 1;
    OPENSSL_free(der);
    X509_free(x);
    BIO_free(in);
    ERR_clear_error();
    if (!ok)
        return tm_err_set(err, EINVAL, "the certificate's public key cannot be read");
    tm_hex(md, sizeof(md), hex);
    return 0;
}

int fleet_device_tls_check(PGconn *c, const char *device, const char *peer_chain_pem, tm_err *err)
{
    _cleanup_res_ PGresult *res = NULL;
    int r = FLEET_EXEC(c, &res, err, "SELECT encode(tls_spki, 'hex') FROM devices WHERE name = $1", device);
    if (r < 0)
        return r;
    if (PQntuples(res) == 0)
        return 0; /* not enrolled: the push endpoint says so */
    /* A device enrolled without a TLS key: the channel proves nothing, whatever certificate
     * (an operator's, none) the client has. */
    if (PQgetisnull(res, 0, 0))
        return 0;
    const char *pinned = PQgetvalue(res, 0, 0);
    if (!peer_chain_pem)
        return tm_err_set(err, EACCES,
                          "device %s is enrolled with a TLS client key in its TPM: it pushes over TLS with that "
                          "key's certificate, and presented none",
                          device);
    _cleanup_(fleet_trust_done) struct fleet_trust t = {0};
    if ((r = fleet_trust_load(c, &t, err)) < 0)
        return r;
    return fleet_device_tls_pinned(&t, device, pinned, peer_chain_pem, "the client certificate", err);
}

int fleet_device_tls_pinned(const struct fleet_trust *t, const char *device, const char *pinned_hex,
                            const char *chain_pem, const char *what, tm_err *err)
{
    struct verify_result vr;
    char hex[65];
    int r;
    if ((r = check_device_chain(t, chain_pem, what, &vr, err)) < 0 || (r = leaf_spki_hex(chain_pem, hex, err)) < 0)
        return r < 0 && r != -ENOMEM ? -EACCES : r;
    if (strcmp(pinned_hex, hex) != 0)
        return tm_err_set(err, EACCES, "%s (%s) is not the TLS certificate device %s enrolled with", what,
                          vr.leaf_subject, device);
    return 0;
}

int fleet_enroll(PGconn *c, const struct fleet_enroll_req *e, tm_err *err)
{
    if (!fleet_name_ok(e->name))
        return tm_err_set(err, EINVAL, "name: 1 to %d of A-Z a-z 0-9 . _ -, not starting with . or -", FLEET_NAME_MAX);
    if (!fleet_name_ok(e->group))
        return tm_err_set(err, EINVAL, "group: not a group name");
    if (e->address && !fleet_address_ok(e->address))
        return tm_err_set(err, EINVAL, "address: HOST:PORT of the device's attestation endpoint");
    uint8_t ak[34];
    int r;
    if (!e->ak_name_hex || (r = tm_hex_decode_str(e->ak_name_hex, ak, sizeof(ak), 0, err)) < 0)
        return tm_err_set(err, EINVAL, "ak_name: 68 lower-case hex digits (trustme device info --json)");
    if (ak[0] != 0x00 || ak[1] != 0x0b)
        return tm_err_set(err, EINVAL, "ak_name: not a SHA-256 TPM name (000b...)");
    if (!e->cert_chain_pem || !*e->cert_chain_pem || strlen(e->cert_chain_pem) > VERIFY_PEM_MAX)
        return tm_err_set(err, EINVAL, "cert_chain_pem: the AK certificate chain is required");
    _cleanup_(fleet_trust_done) struct fleet_trust t = {0};
    if ((r = fleet_trust_load(c, &t, err)) < 0)
        return r;
    struct verify_result res;
    if ((r = check_device_chain(&t, e->cert_chain_pem, "the AK certificate chain", &res, err)) < 0)
        return r;
    /* The TLS client key: a certificate of the same fleet, for a key the Device CA took to be in
     * the device's TPM (trustme-pki issue --profile tls); its key is pinned. */
    char spki[65] = "";
    struct verify_result tls_res;
    if (e->tls_cert_pem) {
        if (!*e->tls_cert_pem || strlen(e->tls_cert_pem) > VERIFY_PEM_MAX)
            return tm_err_set(err, EINVAL, "tls_cert_pem: the device's TLS certificate (PEM)");
        if ((r = check_device_chain(&t, e->tls_cert_pem, "the TLS certificate", &tls_res, err)) < 0 ||
            (r = leaf_spki_hex(e->tls_cert_pem, spki, err)) < 0)
            return r;
    }
    /* The AK name pins the key; the certificate must be for that key. The binding of the two is
     * checked at every quote ("AK binding": the certificate's key is the TPMT_PUBLIC's, whose
     * name is pinned). */
    char akhex[69];
    tm_hex(ak, sizeof(ak), akhex);
    if ((r = fleet_begin(c, err)) < 0)
        return r;
    _cleanup_res_ PGresult *ins = NULL;
    r = FLEET_EXEC(c, &ins, err,
                   "INSERT INTO devices (name, group_id, address, ak_name, cert_chain_pem, subject, tls_spki) "
                   "SELECT $1, id, $3, decode($4, 'hex'), $5, $6, decode($7, 'hex') FROM device_groups "
                   "WHERE name = $2 RETURNING id",
                   e->name, e->group, e->address, akhex, e->cert_chain_pem, res.leaf_subject, spki[0] ? spki : NULL);
    if (r == 0 && PQntuples(ins) != 1)
        r = tm_err_set(err, ENOENT, "group %s: no such group", e->group);
    if (r == 0)
        r = FLEET_EXEC(c, NULL, err, "INSERT INTO work (device_id) VALUES ($1)", PQgetvalue(ins, 0, 0));
    if (r == 0)
        r = fleet_commit(c, err);
    if (r < 0) {
        fleet_rollback(c);
        if (r == -EEXIST)
            tm_err_set(err, EEXIST, "a device named %s or with this AK or TLS key is enrolled already", e->name);
    }
    return r;
}

int fleet_device_remove(PGconn *c, const char *name, tm_err *err)
{
    if (!fleet_name_ok(name))
        return tm_err_set(err, EINVAL, "name: not a device name");
    _cleanup_res_ PGresult *res = NULL;
    int r = FLEET_EXEC(c, &res, err, "DELETE FROM devices WHERE name = $1 RETURNING id", name);
    if (r == 0 && PQntuples(res) == 0)
        r = tm_err_set(err, ENOENT, "device %s: not enrolled", name);
    return r;
}

int fleet_vtpm_enroll(PGconn *c, const char *device, const char *ek, const char *name_hex, tm_err *err)
{
    if (!device || !fleet_name_ok(device))
        return tm_err_set(err, EINVAL, "device: not a device name");
    /* <uuid>/ek-rsa|ek-ecc, the uuid in lower-case hex as trustmed writes it */
    static const char *const kinds[] = {"/ek-rsa", "/ek-ecc"};
    bool ok = ek && strlen(ek) == 36 + 7 && (strcmp(ek + 36, kinds[0]) == 0 || strcmp(ek + 36, kinds[1]) == 0);
    for (int i = 0; ok && i < 36; i++)
        ok = (i == 8 || i == 13 || i == 18 || i == 23)
                 ? ek[i] == '-'
                 : (isdigit((unsigned char)ek[i]) || (ek[i] >= 'a' && ek[i] <= 'f'));
    if (!ok)
        return tm_err_set(err, EINVAL, "ek: <uuid>/ek-rsa or <uuid>/ek-ecc (trustme vtpm info)");
    if (name_hex && strlen(name_hex) == 68 && strncmp(name_hex, "000b", 4) == 0)
        name_hex += 4;
    uint8_t digest[32];
    if (!name_hex || tm_hex_decode_str(name_hex, digest, sizeof(digest), 0, err) < 0)
        return tm_err_set(err, EINVAL, "name: the EK's TPM name, 000b and 64 hex digits (trustme vtpm info)");
    char hex[65];
    tm_hex(digest, sizeof(digest), hex);
    _cleanup_res_ PGresult *res = NULL;
    int r = FLEET_EXEC(c, &res, err,
                       "INSERT INTO vtpms (device_id, name, ek_digest) SELECT id, $2, decode($3, 'hex') FROM devices "
                       "WHERE name = $1 RETURNING id",
                       device, ek, hex);
    if (r == 0 && PQntuples(res) != 1)
        r = tm_err_set(err, ENOENT, "device %s: not enrolled", device);
    if (r == -EEXIST)
        tm_err_set(err, EEXIST, "device %s has a vTPM %s enrolled already", device, ek);
    return r;
}
