/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Control requests about the TPM (docs/ATTESTATION.md), passed on to trustme-tpmd.
 *
 * trustmed only checks the shape of what a client sends (sizes, lengths, ranges) and relays:
 * tpmd checks the certificate it is asked to install, and `trustme attest` checks the evidence
 * in its own process. Root never parses an untrusted certificate or quote.
 *
 * Every request becomes a tpm_op that remembers the client by connection and request id: tpmd
 * answers later, and by then the client may be gone (conn_find() returns NULL). The op is freed
 * in its callback, which tpmd_client calls exactly once (with an error if tpmd died). */
#include "commands_tpm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "crypto.h"
#include "enrollment.h"
#include "measurement.h"
#include "service_options.h"
#include "tpmd_client.h"

#define CHAIN_PEM_MAX (256 * 1024)
#define COMMON_NAME_MAX 64 /* X.509's upper bound for a commonName */
#define RECOVERY_KEY_LEN 32
#define NONCE_LEN 32
#define PCR_COUNT (TM_PCR_MAX + 1)

typedef Trustme__Tpmd__Request TpmdRequest;
typedef Trustme__Tpmd__Response TpmdResponse;

struct tpm_op;
/* Answers the client (conn may be NULL: it is gone) from tpmd's successful answer. Returns 0,
 * or -errno with err set when the answer cannot be used; the caller then reports err. */
typedef int (*tpm_done_fn)(struct daemon *d, struct conn *conn, struct tpm_op *op, const TpmdResponse *resp,
                           tm_err *err);

struct tpm_op {
    uint64_t conn_id, req_id;
    char actor[48];
    const char *what; /* prefix of error messages: "device csr" */
    const char *audit_event; /* NULL: not a security-relevant change */
    char audit_ok[256]; /* the audit detail on success */
    Trustme__Tpmd__Response__BodyCase expect[2]; /* tpmd's answers that mean success */
    tpm_done_fn done;
};

static struct tpm_op *op_new(struct conn *conn, uint64_t id, const char *what, Trustme__Tpmd__Response__BodyCase expect,
                             tpm_done_fn done)
{
    struct tpm_op *op = calloc(1, sizeof(*op));
    if (!op) {
        conn_send_error(conn, id, ENOMEM, "out of memory");
        return NULL;
    }
    op->conn_id = conn->id;
    op->req_id = id;
    snprintf(op->actor, sizeof(op->actor), "%s", conn->actor);
    op->what = what;
    op->expect[0] = op->expect[1] = expect;
    op->done = done;
    return op;
}

static void op_fail(struct daemon *d, struct conn *conn, struct tpm_op *op, const tm_err *err)
{
    if (op->audit_event)
        daemon_audit(d, op->audit_event, "fail", NULL, op->actor, "%s", err->msg);
    if (conn)
        conn_send_error(conn, op->req_id, err->code > 0 ? err->code : EIO, "%s: %s", op->what, err->msg);
}

static void on_tpmd_reply(struct daemon *d, const TpmdResponse *resp, const tm_err *err, void *userdata)
{
    _cleanup_free_ struct tpm_op *op = userdata;
    struct conn *conn = conn_find(d, op->conn_id);
    tm_err e = {0};
    if (err) {
        /* tpmd's own Error, or tpmd gone: its message already says which. */
        op_fail(d, conn, op, err);
        return;
    }
    if (!resp || (resp->body_case != op->expect[0] && resp->body_case != op->expect[1])) {
        tm_err_set(&e, EPROTO, "unexpected answer from trustme-tpmd (body %d)", resp ? (int)resp->body_case : -1);
        op_fail(d, conn, op, &e);
        return;
    }
    if (op->done(d, conn, op, resp, &e) < 0) {
        op_fail(d, conn, op, &e);
        return;
    }
    if (op->audit_event)
        daemon_audit(d, op->audit_event, "ok", NULL, op->actor, "%s", op->audit_ok);
}

/* Hand req to tpmd; on failure (tpmd not running) the client is answered and op freed. */
static void op_send(struct conn *conn, TpmdRequest *req, struct tpm_op *op)
{
    tm_err err = {0};
    if (tpmd_call(conn->d, req, on_tpmd_reply, op, &err) < 0) {
        op_fail(conn->d, conn, op, &err); /* err says that tpmd is not running */
        free(op);
    }
}

static void send_response(struct conn *conn, uint64_t id, Trustme__Response *resp)
{
    if (conn)
        conn_send(conn, id, resp);
}

/* Every command here sends tpmd one request and answers its client with one response body; these
 * build the two (field is the body's member for case BODY_<kase>, body a pointer to it). */
#define TPMD_SEND(conn, op, kase, field, body)                 \
    do {                                                       \
        TpmdRequest treq_ = TRUSTME__TPMD__REQUEST__INIT;      \
        treq_.body_case = TRUSTME__TPMD__REQUEST__BODY_##kase; \
        treq_.field = (body);                                  \
        op_send((conn), &treq_, (op));                         \
    } while (0)

/* Answer op's client, if it is still there. */
#define ANSWER(conn, op, kase, field, body)             \
    do {                                                \
        Trustme__Response r_ = TRUSTME__RESPONSE__INIT; \
        r_.body_case = TRUSTME__RESPONSE__BODY_##kase;  \
        r_.field = (body);                              \
        send_response((conn), (op)->req_id, &r_);       \
    } while (0)

/* ---- measurements ----------------------------------------------------------------------------- */

static int measurements_done(struct daemon *d, struct conn *conn, struct tpm_op *op, const TpmdResponse *resp,
                             tm_err *err)
{
    const Trustme__Tpmd__Log *log = resp->log;
    if (!conn)
        return 0;
    size_t ne = log->n_events, np = log->n_pcrs;
    _cleanup_free_ Trustme__MeasurementEvent *events = calloc(ne ? ne : 1, sizeof(*events));
    _cleanup_free_ Trustme__MeasurementEvent **event_ptrs = calloc(ne ? ne : 1, sizeof(*event_ptrs));
    _cleanup_free_ Trustme__PcrValue *pcrs = calloc(np ? np : 1, sizeof(*pcrs));
    _cleanup_free_ Trustme__PcrValue **pcr_ptrs = calloc(np ? np : 1, sizeof(*pcr_ptrs));
    if (!events || !event_ptrs || !pcrs || !pcr_ptrs)
        return tm_err_set(err, ENOMEM, "out of memory");
    for (size_t i = 0; i < ne; i++) {
        const Trustme__Attest__Event *in = log->events[i];
        Trustme__MeasurementEvent *ev = &events[i];
        trustme__measurement_event__init(ev);
        ev->has_seq = in->has_seq;
        ev->seq = in->seq;
        ev->has_pcr = in->has_pcr;
        ev->pcr = in->pcr;
        ev->type = in->type;
        ev->name = in->name;
        ev->has_sha256 = in->has_sha256;
        ev->sha256 = in->sha256;
        event_ptrs[i] = ev;
    }
    for (size_t i = 0; i < np; i++) {
        trustme__pcr_value__init(&pcrs[i]);
        pcrs[i].has_index = log->pcrs[i]->has_index;
        pcrs[i].index = log->pcrs[i]->index;
        pcrs[i].has_sha256 = log->pcrs[i]->has_sha256;
        pcrs[i].sha256 = log->pcrs[i]->sha256;
        pcr_ptrs[i] = &pcrs[i];
    }
    Trustme__Measurements m = TRUSTME__MEASUREMENTS__INIT;
    m.n_events = ne;
    m.events = event_ptrs;
    m.n_pcrs = np;
    m.pcrs = pcr_ptrs;
    m.has_consistent = true;
    m.consistent = log->has_consistent && log->consistent;
    m.inconsistency = log->inconsistency;
    ANSWER(conn, op, MEASUREMENTS, measurements, &m);
    return 0;
}

void cmd_measurements(struct conn *conn, uint64_t id, const Trustme__Request *req)
{
    struct tpm_op *op = op_new(conn, id, "measurements", TRUSTME__TPMD__RESPONSE__BODY_LOG, measurements_done);
    if (!op)
        return;
    Trustme__Tpmd__GetLog gl = TRUSTME__TPMD__GET_LOG__INIT;
    TPMD_SEND(conn, op, GET_LOG, get_log, &gl);
}

/* ---- device info ------------------------------------------------------------------------------ */

static int device_info_done(struct daemon *d, struct conn *conn, struct tpm_op *op, const TpmdResponse *resp,
                            tm_err *err)
{
    const Trustme__Tpmd__DeviceInfo *in = resp->device_info;
    if (!conn)
        return 0;
    const char *problem = tpmd_secret_problem(d);
    Trustme__DeviceInfo info = TRUSTME__DEVICE_INFO__INIT;
    info.tcti = in->tcti;
    info.has_emulated = info.has_require_hardware = true;
    info.emulated = tpmd_emulated(d);
    info.require_hardware = d->device.tpm_require_hardware;
    if (in->has_embedded && in->embedded)
        info.swtpm_state_dir = (char *)tpmd_swtpm_state_dir(d);
    info.has_embedded = in->has_embedded;
    info.embedded = in->embedded;
    info.has_ak_public_pem = in->has_ak_public_pem;
    info.ak_public_pem = in->ak_public_pem;
    info.has_ak_name = in->has_ak_name;
    info.ak_name = in->ak_name;
    info.has_cert_chain_pem = in->has_cert_chain_pem;
    info.cert_chain_pem = in->cert_chain_pem;
    info.attest_address = in->attest_address;
    info.has_boot_pcr = in->has_boot_pcr;
    info.boot_pcr = in->boot_pcr;
    info.has_runtime_pcr = in->has_runtime_pcr;
    info.runtime_pcr = in->runtime_pcr;
    info.has_secret_sealed = in->has_secret_sealed;
    info.secret_sealed = in->secret_sealed;
    info.manufacturer = in->manufacturer;
    info.secret_problem = (char *)(problem ? problem : "");
    info.has_da_lockout = in->has_da_lockout;
    info.da_lockout = in->da_lockout;
    info.has_da_failures = in->has_da_failures;
    info.da_failures = in->da_failures;
    info.has_da_max_tries = in->has_da_max_tries;
    info.da_max_tries = in->da_max_tries;
    info.has_da_recovery_s = in->has_da_recovery_s;
    info.da_recovery_s = in->da_recovery_s;
    info.has_ek_public_pem = in->has_ek_public_pem;
    info.ek_public_pem = in->ek_public_pem;
    info.has_ek_cert_pem = in->has_ek_cert_pem;
    info.ek_cert_pem = in->ek_cert_pem;
    info.has_vtpm_issuer_chain_pem = in->has_vtpm_issuer_chain_pem;
    info.vtpm_issuer_chain_pem = in->vtpm_issuer_chain_pem;
    ANSWER(conn, op, DEVICE_INFO, device_info, &info);
    return 0;
}

static void ask_device_info(struct conn *conn, uint64_t id, const char *what)
{
    struct tpm_op *op = op_new(conn, id, what, TRUSTME__TPMD__RESPONSE__BODY_DEVICE_INFO, device_info_done);
    if (!op)
        return;
    Trustme__Tpmd__GetDeviceInfo gi = TRUSTME__TPMD__GET_DEVICE_INFO__INIT;
    TPMD_SEND(conn, op, DEVICE_INFO, device_info, &gi);
}

void cmd_device_info(struct conn *conn, uint64_t id, const Trustme__Request *req)
{
    ask_device_info(conn, id, "device info");
}

/* ---- device csr ------------------------------------------------------------------------------- */

static int csr_done(struct daemon *d, struct conn *conn, struct tpm_op *op, const TpmdResponse *resp, tm_err *err)
{
    const Trustme__Tpmd__Csr *csr = resp->csr;
    if (!csr->has_pem || csr->pem.len == 0)
        return tm_err_set(err, EPROTO, "trustme-tpmd returned an empty request");
    Trustme__DeviceCsr out = TRUSTME__DEVICE_CSR__INIT;
    out.has_pem = true;
    out.pem = csr->pem;
    ANSWER(conn, op, DEVICE_CSR, device_csr, &out);
    return 0;
}

void cmd_device_csr(struct conn *conn, uint64_t id, const Trustme__Request *req)
{
    const char *cn = req->device_csr->common_name ? req->device_csr->common_name : "";
    size_t len = strlen(cn);
    if (len > COMMON_NAME_MAX) {
        conn_send_error(conn, id, EINVAL,
                        "device csr: the common name has %zu bytes, at most %d "
                        "are allowed",
                        len, COMMON_NAME_MAX);
        return;
    }
    for (size_t i = 0; i < len; i++)
        if (cn[i] < 0x20 || cn[i] > 0x7e) {
            conn_send_error(conn, id, EINVAL,
                            "device csr: the common name may hold printable "
                            "ASCII only (byte %zu is 0x%02x)",
                            i, (unsigned char)cn[i]);
            return;
        }
    bool tls = req->device_csr->has_tls && req->device_csr->tls;
    bool issuer = req->device_csr->has_vtpm_issuer && req->device_csr->vtpm_issuer;
    if (tls && issuer) {
        conn_send_error(conn, id, EINVAL, "device csr: --tls and --vtpm-issuer ask for different keys; choose one");
        return;
    }
    struct tpm_op *op = op_new(conn, id, "device csr", TRUSTME__TPMD__RESPONSE__BODY_CSR, csr_done);
    if (!op)
        return;
    op->audit_event = "device.csr";
    if (issuer)
        snprintf(op->audit_ok, sizeof(op->audit_ok), "vTPM-issuing key certificate request");
    else
        snprintf(op->audit_ok, sizeof(op->audit_ok), "%s certificate request, common name \"%s\"",
                 tls ? "TLS client key" : "AK", len ? cn : "(default)");
    Trustme__Tpmd__DeviceCsr dc = TRUSTME__TPMD__DEVICE_CSR__INIT;
    dc.common_name = (char *)cn;
    dc.has_tls = tls;
    dc.tls = tls;
    dc.has_vtpm_issuer = issuer;
    dc.vtpm_issuer = issuer;
    TPMD_SEND(conn, op, DEVICE_CSR, device_csr, &dc);
}

/* ---- device tls sign --------------------------------------------------------------------------- */

static int tls_sign_done(struct daemon *d, struct conn *conn, struct tpm_op *op, const TpmdResponse *resp, tm_err *err)
{
    const Trustme__Tpmd__TlsSignature *ts = resp->tls_signature;
    if (!ts->has_signature || ts->signature.len != 64)
        return tm_err_set(err, EPROTO, "trustme-tpmd returned a malformed signature");
    Trustme__DeviceTlsSignature out = TRUSTME__DEVICE_TLS_SIGNATURE__INIT;
    out.has_signature = true;
    out.signature = ts->signature;
    ANSWER(conn, op, DEVICE_TLS_SIGNATURE, device_tls_signature, &out);
    return 0;
}

/* The TPM signs what it is given: the key's worth is that it cannot leave the TPM, not that
 * it signs only handshakes. Who may ask is the admin role's (docs/ROLES.md). */
void cmd_device_tls_sign(struct conn *conn, uint64_t id, const Trustme__Request *req)
{
    const Trustme__DeviceTlsSignRequest *rq = req->device_tls_sign;
    if (!rq->has_digest || rq->digest.len != 32) {
        conn_send_error(conn, id, EINVAL, "device tls sign: the digest must be a SHA-256 digest (32 bytes)");
        return;
    }
    struct tpm_op *op = op_new(conn, id, "device tls sign", TRUSTME__TPMD__RESPONSE__BODY_TLS_SIGNATURE, tls_sign_done);
    if (!op)
        return;
    Trustme__Tpmd__TlsSign ts = TRUSTME__TPMD__TLS_SIGN__INIT;
    ts.has_digest = true;
    ts.digest = rq->digest;
    TPMD_SEND(conn, op, TLS_SIGN, tls_sign, &ts);
}

/* ---- device cert install ---------------------------------------------------------------------- */

/* The chain is stored: answer with the device info, which shows it. tpmd may answer the install
 * with the info itself, or with Ok, after which it is asked (in order, so it is the new state). */
static int cert_install_done(struct daemon *d, struct conn *conn, struct tpm_op *op, const TpmdResponse *resp,
                             tm_err *err)
{
    if (resp->body_case == TRUSTME__TPMD__RESPONSE__BODY_DEVICE_INFO)
        return device_info_done(d, conn, op, resp, err);
    if (conn)
        ask_device_info(conn, op->req_id, "device cert install");
    return 0;
}

static size_t count_certs(const uint8_t *pem, size_t len)
{
    static const char marker[] = "-----BEGIN CERTIFICATE-----";
    size_t n = 0;
    for (const uint8_t *p = pem, *end = pem + len; (p = memmem(p, (size_t)(end - p), marker, sizeof(marker) - 1));
         p += sizeof(marker) - 1)
        n++;
    return n;
}

void cmd_device_cert_install(struct conn *conn, uint64_t id, const Trustme__Request *req)
{
    const Trustme__DeviceCertInstallRequest *rq = req->device_cert_install;
    if (!rq->has_chain_pem || rq->chain_pem.len == 0) {
        conn_send_error(conn, id, EINVAL, "device cert install: no certificate given");
        return;
    }
    if (rq->chain_pem.len > CHAIN_PEM_MAX) {
        conn_send_error(conn, id, EFBIG,
                        "device cert install: the chain has %zu bytes, at most %d "
                        "are allowed",
                        rq->chain_pem.len, CHAIN_PEM_MAX);
        return;
    }
    /* Only the shape: whether these are certificates for the AK is tpmd's check. */
    size_t certs = count_certs(rq->chain_pem.data, rq->chain_pem.len);
    bool encrypted = memmem(rq->chain_pem.data, rq->chain_pem.len, "-----BEGIN " ENROLL_PEM_CERT,
                            strlen("-----BEGIN " ENROLL_PEM_CERT)) != NULL;
    if ((certs == 0 && !encrypted) || memchr(rq->chain_pem.data, '\0', rq->chain_pem.len)) {
        conn_send_error(conn, id, EINVAL,
                        "device cert install: not PEM certificates (give the "
                        "certificate trustme-pki issued, then its CAs)");
        return;
    }
    struct tpm_op *op = op_new(conn, id, "device cert install", TRUSTME__TPMD__RESPONSE__BODY_OK, cert_install_done);
    if (!op)
        return;
    op->expect[1] = TRUSTME__TPMD__RESPONSE__BODY_DEVICE_INFO;
    op->audit_event = "device.cert.install";
    char sha[TM_SHA256_HEX_LEN + 1];
    tm_sha256_hex(rq->chain_pem.data, rq->chain_pem.len, sha);
    snprintf(op->audit_ok, sizeof(op->audit_ok),
             "%scertificate chain of %zu certificate%s "
             "installed, sha256 of the PEM %s",
             encrypted ? "AK certificate (credential "
                         "activation) and a "
                       : "",
             certs, certs == 1 ? "" : "s", sha);
    Trustme__Tpmd__CertInstall ci = TRUSTME__TPMD__CERT_INSTALL__INIT;
    ci.has_chain_pem = true;
    ci.chain_pem = rq->chain_pem;
    TPMD_SEND(conn, op, CERT_INSTALL, cert_install, &ci);
}

/* ---- device reseal ---------------------------------------------------------------------------- */

static int reseal_done(struct daemon *d, struct conn *conn, struct tpm_op *op, const TpmdResponse *resp, tm_err *err)
{
    /* The secret goes to scd whether or not the client is still there; trustmed never keeps it. */
    tpmd_secret_deliver(d, resp);
    if (conn)
        conn_send_ok(conn, op->req_id);
    return 0;
}

/* The request's copy of the key is wiped by commands_dispatch() once this returns; tpmd_call
 * has packed its own copy by then. */
void cmd_device_reseal(struct conn *conn, uint64_t id, const Trustme__Request *req)
{
    const Trustme__DeviceResealRequest *rq = req->device_reseal;
    if (!rq->has_recovery_key || rq->recovery_key.len == 0) {
        conn_send_error(conn, id, EINVAL, "device reseal: no recovery key given");
        return;
    }
    if (rq->recovery_key.len != RECOVERY_KEY_LEN) {
        daemon_audit(conn->d, "device.reseal", "fail", NULL, conn->actor, "a recovery key of %zu bytes",
                     rq->recovery_key.len);
        conn_send_error(conn, id, EINVAL,
                        "device reseal: the recovery key has %zu bytes, it must "
                        "have %d",
                        rq->recovery_key.len, RECOVERY_KEY_LEN);
        return;
    }
    struct tpm_op *op = op_new(conn, id, "device reseal", TRUSTME__TPMD__RESPONSE__BODY_SECRET, reseal_done);
    if (!op)
        return;
    op->audit_event = "device.reseal";
    snprintf(op->audit_ok, sizeof(op->audit_ok),
             "the device storage secret is sealed to the "
             "current boot state");
    Trustme__Tpmd__Reseal rs = TRUSTME__TPMD__RESEAL__INIT;
    rs.has_recovery_key = true;
    rs.recovery_key = rq->recovery_key;
    TPMD_SEND(conn, op, RESEAL, reseal, &rs);
}

/* ---- attest ----------------------------------------------------------------------------------- */

static int attest_done(struct daemon *d, struct conn *conn, struct tpm_op *op, const TpmdResponse *resp, tm_err *err)
{
    if (!conn)
        return 0;
    /* Relayed as tpmd sent it: the client verifies it like a remote verifier would. */
    size_t len = trustme__attest__attest_response__get_packed_size(resp->attest);
    _cleanup_free_ uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return tm_err_set(err, ENOMEM, "out of memory");
    trustme__attest__attest_response__pack(resp->attest, buf);
    Trustme__AttestEvidence ev = TRUSTME__ATTEST_EVIDENCE__INIT;
    ev.has_response = true;
    ev.response.data = buf;
    ev.response.len = len;
    ANSWER(conn, op, ATTEST, attest, &ev);
    return 0;
}

void cmd_attest(struct conn *conn, uint64_t id, const Trustme__Request *req)
{
    const Trustme__AttestRequest *rq = req->attest;
    if (!rq->has_nonce || rq->nonce.len != NONCE_LEN) {
        conn_send_error(conn, id, EINVAL, "attest: the nonce must be %d random bytes (it has %zu)", NONCE_LEN,
                        rq->has_nonce ? rq->nonce.len : 0);
        return;
    }
    if (rq->n_pcrs > PCR_COUNT) {
        conn_send_error(conn, id, EINVAL, "attest: at most %d PCRs", PCR_COUNT);
        return;
    }
    bool seen[PCR_COUNT] = {false};
    for (size_t i = 0; i < rq->n_pcrs; i++) {
        if (rq->pcrs[i] > TM_PCR_MAX) {
            conn_send_error(conn, id, EINVAL, "attest: PCR %u does not exist (0..%d)", rq->pcrs[i], TM_PCR_MAX);
            return;
        }
        if (seen[rq->pcrs[i]]) {
            conn_send_error(conn, id, EINVAL, "attest: PCR %u is given twice", rq->pcrs[i]);
            return;
        }
        seen[rq->pcrs[i]] = true;
    }
    struct tpm_op *op = op_new(conn, id, "attest", TRUSTME__TPMD__RESPONSE__BODY_ATTEST, attest_done);
    if (!op)
        return;
    Trustme__Attest__AttestRequest ar = TRUSTME__ATTEST__ATTEST_REQUEST__INIT;
    ar.has_version = true;
    ar.version = 1;
    ar.has_id = true;
    ar.id = id;
    ar.has_nonce = true;
    ar.nonce = rq->nonce;
    ar.n_pcrs = rq->n_pcrs;
    ar.pcrs = rq->pcrs;
    TPMD_SEND(conn, op, ATTEST, attest, &ar);
}
