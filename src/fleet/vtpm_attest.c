/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A container vTPM as an identity of its own (docs/FLEET.md "vTPM quotes"): its owner pins an
 * attestation key that it proved beside the vTPM's EK (trustme-owner take --fleet-key); after
 * each trusted verdict of the device, the worker checks the EK against the device's evidence,
 * fetches the vTPM's quote by that key through the device's relay and checks it against the
 * container's event log. */
#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_tcti.h>

#include "cleanup.h"
#include "db.h"
#include "fleet.h"
#include "hex.h"
#include "json_cleanup.h"
#include "jsonutil.h"
#include "log.h"
#include "relay.h"
#include "vtpm_ek.h"
#include "vtpm_quote.h"

#define FLEET_KEY_HANDLE 0x81018000u /* tpmd relays EvictControl for this handle only */
#define RUNTIME_PCR 11
#define QUOTE_CMD_MAX 128
#define QUOTE_RSP_MAX 4096

/* The key an owner may pin: a restricted ECDSA P-256 signing key with SHA-256 as its name
 * algorithm, made in the TPM (fixedTPM, fixedParent, sensitiveDataOrigin): what trustme-owner
 * makes and activates. */
static const char *key_mismatch(const TPMT_PUBLIC *p)
{
    TPMA_OBJECT need = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
                       TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN_ENCRYPT;
    if (p->type != TPM2_ALG_ECC || p->nameAlg != TPM2_ALG_SHA256 ||
        p->parameters.eccDetail.curveID != TPM2_ECC_NIST_P256)
        return "not an ECC P-256 key with nameAlg SHA-256";
    if ((p->objectAttributes & need) != need || (p->objectAttributes & TPMA_OBJECT_DECRYPT))
        return "not a restricted signing key made in the TPM (fixedTPM, fixedParent, sensitiveDataOrigin)";
    if (p->parameters.eccDetail.scheme.scheme != TPM2_ALG_ECDSA ||
        p->parameters.eccDetail.scheme.details.ecdsa.hashAlg != TPM2_ALG_SHA256)
        return "its scheme is not ECDSA with SHA-256";
    return NULL;
}

static int parse_key(const char *hex, TPMT_PUBLIC *pub, uint8_t name[34], tm_err *err)
{
    size_t n = strlen(hex) / 2;
    uint8_t buf[400];
    if (n == 0 || n > sizeof(buf) || tm_hex_decode(hex, 2 * n, buf, n, 0, err) < 0 || strlen(hex) != 2 * n)
        return tm_err_set(err, EINVAL, "public: a TPMT_PUBLIC in hex, at most %zu bytes", sizeof(buf));
    size_t off = 0;
    *pub = (TPMT_PUBLIC){0};
    if (Tss2_MU_TPMT_PUBLIC_Unmarshal(buf, n, &off, pub) != TSS2_RC_SUCCESS || off != n)
        return tm_err_set(err, EINVAL, "public: not a TPMT_PUBLIC");
    const char *bad = key_mismatch(pub);
    if (bad)
        return tm_err_set(err, EINVAL, "public: %s", bad);
    unsigned int dl = 32;
    name[0] = 0x00;
    name[1] = 0x0b;
    EVP_Digest(buf, n, name + 2, &dl, EVP_sha256(), NULL);
    return 0;
}

int fleet_vtpm_key(PGconn *c, const char *device, const char *ek, const char *key_json, size_t key_len,
                   const char *ek_cert_pem, size_t pem_len, tm_err *err)
{
    if (!device || !fleet_name_ok(device))
        return tm_err_set(err, EINVAL, "device: not a device name");
    if (!ek || strlen(ek) != 36 + 7 || strcmp(ek + 36, "/ek-ecc") != 0)
        return tm_err_set(err, EINVAL, "ek: <uuid>/ek-ecc (the fleet key is activated with the ECC EK)");
    if (!ek_cert_pem || pem_len == 0 || pem_len > 65536 || memchr(ek_cert_pem, '\0', pem_len) ||
        !strstr(ek_cert_pem, "-----BEGIN CERTIFICATE-----"))
        return tm_err_set(err, EINVAL, "ek_cert_pem: the EK certificate and the device's vTPM issuer chain (PEM)");
    _cleanup_json_ json_t *o = NULL;
    int r = tm_json_parse_object(key_json, key_len, &o, err);
    if (r < 0)
        return tm_err_prefix(err, "key");
    static const char *const keys[] = {"container", "handle", "name", "public", NULL};
    const char *container = NULL, *name = NULL, *public = NULL;
    int64_t handle = 0;
    if ((r = tm_json_check_keys(o, "$.key", keys, err)) < 0 ||
        (r = tm_json_get_string(o, "$.key", "container", true, 36, &container, err)) < 0 ||
        (r = tm_json_get_int(o, "$.key", "handle", true, 0, UINT32_MAX, &handle, err)) < 0 ||
        (r = tm_json_get_string(o, "$.key", "name", true, 68, &name, err)) < 0 ||
        (r = tm_json_get_string(o, "$.key", "public", true, 800, &public, err)) < 0)
        return r;
    if (strncmp(container, ek, 36) != 0 || strlen(container) != 36)
        return tm_err_set(err, EINVAL, "$.key.container: the key is container %s's, not %.36s's", container, ek);
    if (handle != FLEET_KEY_HANDLE)
        return tm_err_set(err, EINVAL, "$.key.handle: the fleet key's handle is 0x%x", FLEET_KEY_HANDLE);
    TPMT_PUBLIC pub;
    uint8_t kname[34], want[34];
    if ((r = parse_key(public, &pub, kname, err)) < 0)
        return tm_err_prefix(err, "$.key");
    if (tm_hex_decode_str(name, want, sizeof(want), 0, NULL) < 0 || memcmp(want, kname, 34) != 0)
        return tm_err_set(err, EINVAL, "$.key.name: not the name of $.key.public");
    char handles[16];
    snprintf(handles, sizeof(handles), "%lld", (long long)handle);
    _cleanup_res_ PGresult *res = NULL;
    _cleanup_free_ char *pem = strndup(ek_cert_pem, pem_len);
    if (!pem)
        return tm_err_set(err, ENOMEM, "out of memory");
    /* A new key starts without a verdict: the last one was another key's. */
    r = FLEET_EXEC(c, &res, err,
                   "UPDATE vtpms SET ak_public = decode($3, 'hex'), ak_handle = $4::bigint, ek_cert_pem = $5, "
                   "quoted_at = NULL, quote_trusted = NULL, quote_failed = NULL, quote_report = NULL "
                   "WHERE device_id = (SELECT id FROM devices WHERE name = $1) AND name = $2 RETURNING id",
                   device, ek, public, handles, pem);
    if (r == 0 && PQntuples(res) != 1)
        r = tm_err_set(err, ENOENT, "device %s has no vTPM %s enrolled (trustme-fleet vtpm-enroll)", device, ek);
    return r;
}

/* TPM2_Quote(key, password session with the key's empty authorisation) of sel over nonce:
 * the command, built here; the relay carries it as it is. */
static size_t quote_command(uint8_t out[QUOTE_CMD_MAX], uint32_t handle, const uint8_t nonce[32],
                            const TPML_PCR_SELECTION *sel)
{
    size_t off = 10;
    TPM2B_DATA qd = {.size = 32};
    memcpy(qd.buffer, nonce, 32);
    TPMT_SIG_SCHEME scheme = {.scheme = TPM2_ALG_ECDSA, .details.ecdsa.hashAlg = TPM2_ALG_SHA256};
    uint8_t auth[9] = {0x40, 0x00, 0x00, 0x09, 0, 0, 0, 0, 0}; /* TPM_RS_PW, no nonce, no attrs, empty */
    uint32_t authsize = sizeof(auth);
    if (Tss2_MU_UINT32_Marshal(handle, out, QUOTE_CMD_MAX, &off) != TSS2_RC_SUCCESS ||
        Tss2_MU_UINT32_Marshal(authsize, out, QUOTE_CMD_MAX, &off) != TSS2_RC_SUCCESS)
        return 0;
    memcpy(out + off, auth, sizeof(auth));
    off += sizeof(auth);
    if (Tss2_MU_TPM2B_DATA_Marshal(&qd, out, QUOTE_CMD_MAX, &off) != TSS2_RC_SUCCESS ||
        Tss2_MU_TPMT_SIG_SCHEME_Marshal(&scheme, out, QUOTE_CMD_MAX, &off) != TSS2_RC_SUCCESS ||
        Tss2_MU_TPML_PCR_SELECTION_Marshal(sel, out, QUOTE_CMD_MAX, &off) != TSS2_RC_SUCCESS)
        return 0;
    size_t hdr = 0;
    Tss2_MU_UINT16_Marshal(TPM2_ST_SESSIONS, out, 10, &hdr);
    Tss2_MU_UINT32_Marshal((uint32_t)off, out, 10, &hdr);
    Tss2_MU_UINT32_Marshal(TPM2_CC_Quote, out, 10, &hdr);
    return off;
}

struct vtpm_result {
    const char *failed; /* a FLEET_CHECK_VTPM_*, or NULL: trusted */
    char detail[1024];
    size_t events;
};

static void fail(struct vtpm_result *res, const char *check, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(struct vtpm_result *res, const char *check, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->detail, sizeof(res->detail), fmt, ap);
    va_end(ap);
    res->failed = check;
}

/* The vTPM's quote over nonce, through the device's relay, checked; the result in res. */
static void quote_vtpm(const struct fleet_target *t, const char *uuid, const TPMT_PUBLIC *akpub,
                       const uint8_t akname[34], uint32_t handle, int timeout_ms, struct vtpm_result *res)
{
    tm_err err = {0};
    if (t->tls_spki[0]) {
        fail(res, FLEET_CHECK_VTPM_FETCH, "the device is pulled over TLS: its vTPMs' quotes are not fetched that way");
        return;
    }
    struct relay *rl = NULL;
    if (relay_open(t->address, uuid, timeout_ms, &rl, &err) < 0) {
        fail(res, FLEET_CHECK_VTPM_FETCH, "%s", err.msg);
        return;
    }
    _cleanup_free_ char *log = NULL;
    size_t loglen = 0;
    uint8_t pcr_values[24][32], nonce[32];
    char why[1024] = "";
    if (relay_event_log(rl, &log, &loglen, &err) < 0) {
        fail(res, FLEET_CHECK_VTPM_FETCH, "the container's event log: %s", err.msg);
        goto out;
    }
    if (vtpm_container_log_check(log, NULL, pcr_values, &res->events, why, sizeof(why)) < 0) {
        fail(res, FLEET_CHECK_VTPM_LOG, "%s", why);
        goto out;
    }
    /* The PCRs the log extends, and the runtime PCR whatever it holds. */
    TPML_PCR_SELECTION sel = {.count = 1};
    sel.pcrSelections[0].hash = TPM2_ALG_SHA256;
    sel.pcrSelections[0].sizeofSelect = 3;
    static const uint8_t zero[32];
    for (unsigned i = 0; i < 24; i++)
        if (i == RUNTIME_PCR || memcmp(pcr_values[i], zero, 32) != 0)
            sel.pcrSelections[0].pcrSelect[i / 8] |= (uint8_t)(1u << (i % 8));
    if (getrandom(nonce, sizeof(nonce), 0) != sizeof(nonce)) {
        fail(res, FLEET_CHECK_VTPM_FETCH, "getrandom failed");
        goto out;
    }
    uint8_t cmd[QUOTE_CMD_MAX], rsp[QUOTE_RSP_MAX];
    size_t cmdlen = quote_command(cmd, handle, nonce, &sel), rsplen = sizeof(rsp);
    TSS2_TCTI_CONTEXT *tcti = relay_tcti(rl);
    size_t off = 6;
    uint32_t rc = 0, psize = 0;
    TPM2B_ATTEST quoted = {0};
    TPMT_SIGNATURE sig = {0};
    /* The TPM may ask for the command again (TPM_RC_RETRY, YIELDED, TESTING), as ESAPI would. */
    for (int attempt = 0; attempt < 4; attempt++) {
        rsplen = sizeof(rsp);
        off = 6;
        if (!cmdlen || Tss2_Tcti_Transmit(tcti, cmdlen, cmd) != TSS2_RC_SUCCESS ||
            Tss2_Tcti_Receive(tcti, &rsplen, rsp, timeout_ms) != TSS2_RC_SUCCESS) {
            fail(res, FLEET_CHECK_VTPM_FETCH, "the quote: %s", *relay_error(rl) ? relay_error(rl) : "the relay failed");
            goto out;
        }
        if (Tss2_MU_UINT32_Unmarshal(rsp, rsplen, &off, &rc) != TSS2_RC_SUCCESS) {
            fail(res, FLEET_CHECK_VTPM_FETCH, "the vTPM's answer is cut short");
            goto out;
        }
        if (rc != TPM2_RC_RETRY && rc != TPM2_RC_YIELDED && rc != TPM2_RC_TESTING)
            break;
    }
    if (rc != TPM2_RC_SUCCESS) {
        /* No key at the handle (evicted, a vTPM made anew): the vTPM cannot quote. */
        fail(res, FLEET_CHECK_VTPM_FETCH, "the vTPM refused the quote by the key at 0x%x: TPM response code 0x%x",
             handle, rc);
        goto out;
    }
    if (Tss2_MU_UINT32_Unmarshal(rsp, rsplen, &off, &psize) != TSS2_RC_SUCCESS ||
        Tss2_MU_TPM2B_ATTEST_Unmarshal(rsp, rsplen, &off, &quoted) != TSS2_RC_SUCCESS ||
        Tss2_MU_TPMT_SIGNATURE_Unmarshal(rsp, rsplen, &off, &sig) != TSS2_RC_SUCCESS) {
        fail(res, FLEET_CHECK_VTPM_QUOTE, "the vTPM's answer is not a quote");
        goto out;
    }
    int r = vtpm_quote_check(&quoted, &sig, akpub, akname, nonce, &sel, pcr_values, why, sizeof(why));
    if (r == -EKEYREJECTED)
        fail(res, FLEET_CHECK_VTPM_SIGNATURE, "%s", why);
    else if (r < 0)
        fail(res, strstr(why, "event log") ? FLEET_CHECK_VTPM_LOG : FLEET_CHECK_VTPM_QUOTE, "%s", why);
out:
    relay_close(rl);
}

/* The vTPM's EK against the device's evidence: the device's trusted log names the enrolled EK
 * (its last event of that name), and the EK certificate chains to the fleet's AK roots through
 * a vTPM issuer a Device CA certified, names the container and certifies that EK. */
static void check_ek(const struct fleet_trust *trust, const struct fleet_verdict *dv, const char *vname,
                     const uint8_t enrolled[32], const char *pem, struct vtpm_result *res)
{
    const uint8_t *seen = NULL;
    for (size_t i = 0; i < dv->nvtpms; i++)
        if (strcmp(dv->vtpms[i].name, vname) == 0)
            seen = dv->vtpms[i].digest;
    if (!seen) {
        fail(res, FLEET_CHECK_VTPM_EK, "the device's log names no EK %s", vname);
        return;
    }
    if (memcmp(seen, enrolled, 32) != 0) {
        fail(res, FLEET_CHECK_VTPM_EK, "the device's log names another EK as %s (a vTPM made anew?)", vname);
        return;
    }
    const Trustme__Attest__Quote *q = dv->response->quote;
    uint32_t pcrs[REFVALUES_PCRS];
    size_t npcrs = 0;
    for (size_t i = 0; i < q->n_pcrs && npcrs < REFVALUES_PCRS; i++)
        if (q->pcrs[i]->has_index)
            pcrs[npcrs++] = q->pcrs[i]->index;
    struct attest_policy pol = {
        .pcrs = pcrs,
        .npcrs = npcrs,
        .ak_anchors_pem = trust->ak_anchors,
        .ak_anchors_len = trust->ak_anchors_len,
        .device_cas = &trust->device_cas,
        .crls_pem = trust->crls,
        .crls_len = trust->crls_len,
    };
    char uuid[37];
    snprintf(uuid, sizeof(uuid), "%.36s", vname);
    struct attest_check c;
    vtpm_ek_check(pem, strlen(pem), "the EK certificate", q, &pol, &dv->report, uuid, "ecc", &c);
    if (!c.ok)
        fail(res, FLEET_CHECK_VTPM_EK, "%s", c.detail);
}

static void record(PGconn *c, const char *id, const struct vtpm_result *res)
{
    _cleanup_json_ json_t *o =
        json_pack("{s:b,s:o,s:I}", "trusted", !res->failed, "detail", tm_json_text(res->failed ? res->detail : "ok"),
                  "events", (json_int_t)res->events);
    _cleanup_free_ char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    tm_err err = {0};
    if (FLEET_EXEC(c, NULL, &err,
                   "UPDATE vtpms SET quoted_at = now(), quote_trusted = $2::boolean, quote_failed = $3, "
                   "quote_report = $4::jsonb WHERE id = $1::int",
                   id, res->failed ? "false" : "true", res->failed, text ? text : "{}") < 0)
        log_warn("vTPM %s: verdict not recorded: %s", id, err.msg);
}

void fleet_vtpm_attest(PGconn *c, const struct fleet_trust *trust, const struct fleet_target *t,
                       const struct fleet_verdict *dv, int timeout_ms, const char *alert_command)
{
    char devid[24];
    snprintf(devid, sizeof(devid), "%lld", (long long)t->device_id);
    _cleanup_res_ PGresult *rows = NULL;
    tm_err err = {0};
    if (FLEET_EXEC_PREPARED(c, "fleet_vtpm_keys", &rows, &err,
                            "SELECT id::text, name, encode(ak_public, 'hex'), ak_handle::text, ek_cert_pem, "
                            "encode(ek_digest, 'hex') FROM vtpms WHERE device_id = $1::int AND ak_public IS NOT NULL "
                            "ORDER BY id",
                            devid) < 0) {
        log_warn("%s: vTPMs: %s", t->name, err.msg);
        return;
    }
    for (int i = 0; i < PQntuples(rows); i++) {
        const char *id = PQgetvalue(rows, i, 0), *vname = PQgetvalue(rows, i, 1);
        struct vtpm_result res = {0};
        TPMT_PUBLIC akpub;
        uint8_t akname[34], enrolled[32];
        char uuid[37];
        snprintf(uuid, sizeof(uuid), "%.36s", vname);
        if (!dv->trusted || !dv->response)
            fail(&res, FLEET_CHECK_VTPM_DEVICE, "the device's verdict is not trusted: %s",
                 dv->failed_check[0] ? dv->failed_check : "no evidence");
        else if (parse_key(PQgetvalue(rows, i, 2), &akpub, akname, &err) < 0 ||
                 tm_hex_decode_str(PQgetvalue(rows, i, 5), enrolled, 32, 0, &err) < 0)
            fail(&res, FLEET_CHECK_VTPM_QUOTE, "the pinned key: %s", err.msg);
        if (!res.failed)
            check_ek(trust, dv, vname, enrolled, PQgetvalue(rows, i, 4), &res);
        if (!res.failed)
            quote_vtpm(t, uuid, &akpub, akname, (uint32_t)strtoul(PQgetvalue(rows, i, 3), NULL, 10), timeout_ms, &res);
        record(c, id, &res);
        log_info("%s vTPM %s: %s%s%s", t->name, vname, res.failed ? "untrusted: " : "trusted",
                 res.failed ? res.failed : "", "");
        if (res.failed && dv->trusted) {
            char msg[256];
            snprintf(msg, sizeof(msg), "vTPM %s of device %s failed attestation: %s", vname, t->name, res.failed);
            fleet_alert_limited(c, alert_command, "vtpm-failed", t->name, msg, FLEET_PUSH_ALERT_S);
        }
    }
}
