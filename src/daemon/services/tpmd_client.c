/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustmed's side of trustme-tpmd: a supervised service (service.c) running as its own user,
 * the boot measurements, and the device storage secret on its way from tpmd to scd.
 *
 * Ordering does the synchronisation: tpmd answers requests in the order they were sent, and a
 * new tpmd's first requests are the boot measurements and the storage secret. A container
 * start's measurements are sent later, so by the time they are answered the secret has
 * reached trustmed and has been queued to scd ahead of the start's key request. */
#include "tpmd_client.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "crypto.h"
#include "fdutil.h"
#include "log.h"
#include "measurement.h"
#include "packet.h"
#include "proto.h"
#include "scd_client.h"
#include "service.h"
#include "service_options_private.h"
#include "child.h"

/* What the TPM part of trustmed knows (docs/ATTESTATION.md); d->tpm. */
struct tpmd_state {
    uint8_t trustmed_sha256[32]; /* /proc/self/exe at start */
    uint8_t scd_sha256[32]; /* the scd binary last started */
    bool scd_measured; /* scd_sha256 is set */
    bool secret_pending; /* a StorageSecret request is under way */
    bool scd_has_secret; /* the running scd holds the device secret */
    bool boot_measured; /* tpmd confirmed the virtualization layer's measurement */
    bool boot_measuring; /* that measurement is under way */
    char secret_problem[768]; /* why it does not, when tpmd said so */
    /* HKDF of the device storage secret for the per-container keystore keys (keystore_svc.c);
     * trustmed keeps only this, never the secret itself. */
    struct secret *keystore_root;
};

#define TPMD_REPLY_MAX (4u * 1024 * 1024) /* an event log or a quote with it */
#define TPMD_REQUEST_MAX (64u * 1024)
#define TPMD_MAX_GROUPS 32

typedef Trustme__Tpmd__Response Response;
typedef Trustme__Tpmd__Request Request;

struct tpmd_ctx {
    char binary[PATH_MAX];
    char data_dir[PATH_MAX]; /* <data>/tpm */
    char run_dir[PATH_MAX]; /* <run>/tpm */
    char vtpm_dir[PATH_MAX]; /* <run>/vtpm: the attestation endpoint relays to the vTPMs there */
    char swtpm_state[PATH_MAX];
    char recovery_out[PATH_MAX];
    uid_t uid;
    gid_t gid;
    gid_t groups[TPMD_MAX_GROUPS];
    int ngroups;
    char tcti[DEVICE_TCTI_MAX + 1];
    char attest_address[DEVICE_ADDRESS_MAX + 1];
    unsigned boot_pcr, runtime_pcr;
    char log_level[16];
};

/* tpmd needs no namespace of its own: it must reach the TPM device or swtpm's sockets and bind
 * its attestation port on the host. It gets its own uid, no capabilities, no_new_privs, and
 * nothing of trustmed's but fd 3. */
static void exec_child(const void *ctx, int sock, int exe, pid_t daemon_pid)
{
    const struct tpmd_ctx *c = ctx;
    tm_err err = {0};
    child_reset(daemon_pid);
    int fds[2] = {sock, exe};
    if (fd_keep_only(fds, 2) < 0 || fcntl(fds[0], F_SETFD, 0) < 0) {
        fprintf(stderr, "trustmed: cannot start %s: %s\n", c->binary, strerror(errno));
        _exit(127);
    }
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null >= 0)
        dup2(null, STDIN_FILENO); /* stdout/stderr stay: tpmd logs to trustmed's stderr */
    if (child_drop_privileges(c->uid, c->gid, c->groups, c->ngroups, &err) < 0) {
        fprintf(stderr, "trustmed: cannot start trustme-tpmd: %s\n", err.msg);
        _exit(127);
    }
    char boot[16], runtime[16];
    snprintf(boot, sizeof(boot), "%u", c->boot_pcr);
    snprintf(runtime, sizeof(runtime), "%u", c->runtime_pcr);
    char *argv[] = {"trustme-tpmd",
                    "--data-dir",
                    (char *)c->data_dir,
                    "--run-dir",
                    (char *)c->run_dir,
                    "--tcti",
                    (char *)c->tcti,
                    "--attest-address",
                    (char *)c->attest_address,
                    "--boot-pcr",
                    boot,
                    "--runtime-pcr",
                    runtime,
                    "--log-level",
                    (char *)c->log_level,
                    "--swtpm-state",
                    (char *)c->swtpm_state,
                    "--recovery-key-out",
                    (char *)c->recovery_out,
                    "--vtpm-dir",
                    (char *)c->vtpm_dir,
                    NULL};
    /* PATH: where tpmd finds swtpm for the embedded TPM; JOURNAL_STREAM: whether its stderr
     * (trustmed's) is the journal's (src/lib/log.c). */
    char journal[128] = "";
    const char *js = getenv("JOURNAL_STREAM");
    if (js && strlen(js) < sizeof(journal) - sizeof("JOURNAL_STREAM="))
        snprintf(journal, sizeof(journal), "JOURNAL_STREAM=%s", js);
    char *envp[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", journal[0] ? journal : NULL,
                    NULL};
    fexecve(fds[1], argv, envp);
    fprintf(stderr, "trustmed: cannot execute trustme-tpmd: %s\n", strerror(errno));
    _exit(127);
}

static uint64_t response_id(const ProtobufCMessage *m)
{
    return ((const Response *)m)->id;
}

/* What the last Ready reported, for on_ready (is_ready sees the message, on_ready the daemon). */
static struct {
    bool log_restarted;
    uint32_t old_log_events;
    uint32_t da_failures_cleared;
    bool da_lockout_cleared;
    char da_reset_error[256];
} last_ready;

static bool is_ready(const ProtobufCMessage *m)
{
    const Response *resp = (const Response *)m;
    if (resp->body_case != TRUSTME__TPMD__RESPONSE__BODY_READY)
        return false;
    const Trustme__Tpmd__Ready *r = resp->ready;
    log_info("trustme-tpmd ready (pid %u)", r->pid);
    last_ready.log_restarted = r->has_log_restarted && r->log_restarted;
    last_ready.old_log_events = r->old_log_events;
    last_ready.da_failures_cleared = r->has_da_failures_cleared ? r->da_failures_cleared : 0;
    last_ready.da_lockout_cleared = r->has_da_lockout_cleared && r->da_lockout_cleared;
    snprintf(last_ready.da_reset_error, sizeof(last_ready.da_reset_error), "%s",
             r->da_reset_error ? r->da_reset_error : "");
    return true;
}

static void on_ready(struct service *s)
{
    struct daemon *d = service_daemon(s);
    if (last_ready.log_restarted)
        daemon_audit(d, "tpm.reset", "ok", NULL, "trustmed",
                     "the TPM was reset: its PCRs were "
                     "fresh, the measurement log of the earlier TPM boot (%u events) was moved "
                     "aside and a new one started",
                     last_ready.old_log_events);
    if (last_ready.da_failures_cleared || last_ready.da_lockout_cleared)
        daemon_audit(d, "tpm.da-reset", "ok", NULL, "trustmed",
                     "cleared %u dictionary-attack "
                     "failures%s",
                     last_ready.da_failures_cleared, last_ready.da_lockout_cleared ? "; the TPM was in lockout" : "");
    if (last_ready.da_reset_error[0])
        daemon_audit(d, "tpm.da-reset", "fail", NULL, "trustmed", "%s", last_ready.da_reset_error);
}

static bool is_error(const ProtobufCMessage *m, tm_err *err)
{
    const Response *resp = (const Response *)m;
    if (resp->body_case != TRUSTME__TPMD__RESPONSE__BODY_ERROR)
        return false;
    tm_err_set(err, resp->error->has_code && resp->error->code > 0 ? resp->error->code : EIO, "%s",
               resp->error->message ? resp->error->message : "TPM service error");
    return true;
}

static void deliver(service_fn fn, struct daemon *d, const ProtobufCMessage *resp, const tm_err *err, void *userdata)
{
    ((tpmd_reply_fn)fn)(d, (const Response *)resp, err, userdata);
}

/* ---- the device storage secret ---------------------------------------------------------------- */

static void on_scd_secret(struct daemon *d, const Trustme__Scd__Response *resp, const tm_err *err, void *userdata)
{
    if (err) {
        log_error("trustme-scd did not take the device storage secret: %s", err->msg);
        return;
    }
    d->tpm->scd_has_secret = true;
    log_info("device storage secret unsealed and handed to trustme-scd");
}

/* Tell scd why there is no secret: it refuses key requests with this reason. */
static void tell_scd_unavailable(struct daemon *d, const char *why)
{
    Trustme__Scd__DeviceSecret ds = TRUSTME__SCD__DEVICE_SECRET__INIT;
    ds.unavailable = (char *)why;
    Trustme__Scd__Request req = TRUSTME__SCD__REQUEST__INIT;
    req.body_case = TRUSTME__SCD__REQUEST__BODY_DEVICE_SECRET;
    req.device_secret = &ds;
    tm_err e;
    if (scd_call(d, &req, NULL, NULL, &e) < 0)
        log_warn("cannot tell trustme-scd: %s", e.msg);
}

void tpmd_secret_deliver(struct daemon *d, const Trustme__Tpmd__Response *resp)
{
    const Trustme__Tpmd__Secret *sec = resp->secret;
    if (!sec || !sec->has_secret || sec->secret.len != 32) {
        snprintf(d->tpm->secret_problem, sizeof(d->tpm->secret_problem),
                 "the TPM service answered without a 32-byte device storage secret");
        tell_scd_unavailable(d, d->tpm->secret_problem);
        return;
    }
    if (sec->has_created && sec->created)
        log_warn("device storage secret created and sealed to the boot state; its recovery key "
                 "is in %s: move it off the device (docs/ATTESTATION.md)",
                 sec->recovery_key_path ? sec->recovery_key_path : "tpmd's run dir");
    d->tpm->secret_problem[0] = '\0';
    tm_err kerr;
    if (!d->tpm->keystore_root && secret_new(32, &d->tpm->keystore_root, &kerr) == 0)
        tm_hkdf_sha256(sec->secret.data, sec->secret.len, NULL, 0, "trustme keystore root v1", 24,
                       d->tpm->keystore_root->data, 32);
    /* The bytes stay in the response, which lives in locked memory and is wiped when freed;
     * the request to scd is packed into locked memory as well (packet.h). */
    Trustme__Scd__DeviceSecret ds = TRUSTME__SCD__DEVICE_SECRET__INIT;
    ds.has_secret = true;
    ds.secret = sec->secret;
    Trustme__Scd__Request req = TRUSTME__SCD__REQUEST__INIT;
    req.body_case = TRUSTME__SCD__REQUEST__BODY_DEVICE_SECRET;
    req.device_secret = &ds;
    tm_err e;
    if (scd_call(d, &req, on_scd_secret, NULL, &e) < 0)
        log_warn("cannot hand the device storage secret to trustme-scd: %s", e.msg);
}

const struct secret *tpmd_keystore_root(const struct daemon *d)
{
    return d->tpm ? d->tpm->keystore_root : NULL;
}

static void on_secret(struct daemon *d, const Response *resp, const tm_err *err, void *userdata)
{
    d->tpm->secret_pending = false;
    if (!err && !d->tpm->boot_measured) {
        /* Asked for together with the boot measurement (tpmd answers in order, so that the
         * measurement's answer came first): it failed, and the secret is dropped here (the
         * response lives in locked memory and is wiped when freed). */
        log_error("the device storage secret arrived, but the boot measurement failed: withheld");
        return;
    }
    if (!err) {
        tpmd_secret_deliver(d, resp);
        return;
    }
    if (!resp)
        return; /* tpmd died; its restart asks again */
    if (!d->tpm->boot_measured && d->tpm->secret_problem[0]) {
        /* tpmd refused as well; the failed measurement is the reason to report */
        log_info("the TPM service withheld the device storage secret too: %s", err->msg);
        return;
    }
    snprintf(d->tpm->secret_problem, sizeof(d->tpm->secret_problem), "%s", err->msg);
    log_error("device storage secret unavailable: %s", err->msg);
    daemon_audit(d, "device.secret", "fail", NULL, "trustmed", "%s", err->msg);
    tell_scd_unavailable(d, err->msg);
}

void tpmd_secret_refresh(struct daemon *d)
{
    if (d->tpm->secret_pending || d->tpm->scd_has_secret || !(d->tpm->boot_measured || d->tpm->boot_measuring) ||
        !service_running(d->tpmd))
        return;
    Trustme__Tpmd__StorageSecret ss = TRUSTME__TPMD__STORAGE_SECRET__INIT;
    Request req = TRUSTME__TPMD__REQUEST__INIT;
    req.body_case = TRUSTME__TPMD__REQUEST__BODY_STORAGE_SECRET;
    req.storage_secret = &ss;
    tm_err e;
    if (tpmd_call(d, &req, on_secret, NULL, &e) < 0) {
        log_warn("cannot ask trustme-tpmd for the device storage secret: %s", e.msg);
        return;
    }
    d->tpm->secret_pending = true;
}

void tpmd_scd_gone(struct daemon *d)
{
    d->tpm->scd_has_secret = false;
}

/* ---- the anchor table ------------------------------------------------------------------------ */

#define ANCHOR_CALL_MAX 64

static int anchor_call(struct daemon *d, const struct tpmd_anchor_entry *set, size_t n_set, const char *const *names,
                       size_t n_get, tpmd_reply_fn fn, void *userdata, tm_err *err)
{
    if (n_set > ANCHOR_CALL_MAX || n_get > ANCHOR_CALL_MAX)
        return tm_err_set(err, E2BIG, "at most %d anchor entries in one call", ANCHOR_CALL_MAX);
    Trustme__Tpmd__AnchorEntry ev[ANCHOR_CALL_MAX], *evp[ANCHOR_CALL_MAX];
    for (size_t i = 0; i < n_set; i++) {
        trustme__tpmd__anchor_entry__init(&ev[i]);
        ev[i].name = (char *)set[i].name;
        if (set[i].remove) {
            ev[i].has_remove = ev[i].remove = true;
        } else {
            ev[i].has_value = true;
            ev[i].value = (ProtobufCBinaryData){.len = set[i].len, .data = (uint8_t *)set[i].value};
        }
        evp[i] = &ev[i];
    }
    Trustme__Tpmd__AnchorRequest ar = TRUSTME__TPMD__ANCHOR_REQUEST__INIT;
    ar.n_set = n_set;
    ar.set = evp;
    ar.n_get = n_get;
    ar.get = (char **)names;
    Request req = TRUSTME__TPMD__REQUEST__INIT;
    req.body_case = TRUSTME__TPMD__REQUEST__BODY_ANCHOR;
    req.anchor = &ar;
    return tpmd_call(d, &req, fn, userdata, err);
}

int tpmd_anchor_get(struct daemon *d, const char *const *names, size_t n, tpmd_reply_fn fn, void *userdata, tm_err *err)
{
    return anchor_call(d, NULL, 0, names, n, fn, userdata, err);
}

int tpmd_anchor_update(struct daemon *d, const struct tpmd_anchor_entry *set, size_t n_set, const char *const *names,
                       size_t n_get, tpmd_reply_fn fn, void *userdata, tm_err *err)
{
    return anchor_call(d, set, n_set, names, n_get, fn, userdata, err);
}

const ProtobufCBinaryData *tpmd_anchor_value(const Trustme__Tpmd__Response *resp, const char *name)
{
    Trustme__Tpmd__AnchorEntry **entries;
    size_t n;
    if (resp && resp->body_case == TRUSTME__TPMD__RESPONSE__BODY_ANCHOR) {
        entries = resp->anchor->entries;
        n = resp->anchor->n_entries;
    } else if (resp && resp->body_case == TRUSTME__TPMD__RESPONSE__BODY_MEASURED) {
        entries = resp->measured->anchors;
        n = resp->measured->n_anchors;
    } else {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        const Trustme__Tpmd__AnchorEntry *e = entries[i];
        if (e->name && strcmp(e->name, name) == 0 && e->has_value)
            return &e->value;
    }
    return NULL;
}

/* At every tpmd start: a table tpmd refused is audited once, loudly. */
static void on_anchor_check(struct daemon *d, const Response *resp, const tm_err *err, void *userdata)
{
    if (!err) {
        service_emit(d, tpmd_anchors, d);
        return;
    }
    if (!resp)
        return;
    log_error("the TPM-anchored state is unavailable: %s", err->msg);
    daemon_audit(d, "tpm.anchor", "fail", NULL, "trustmed", "%s", err->msg);
}

/* ---- measurements ----------------------------------------------------------------------------- */

static void on_measured(struct daemon *d, const Response *resp, const tm_err *err, void *userdata)
{
    const char *what = userdata;
    if (err && resp)
        log_error("measuring %s failed: %s", what, err->msg);
}

/* No secret, no start, when the virtualization layer is not measured: the secret would go to
 * software nobody can tell from what it was sealed to. */
static void boot_measure_failed(struct daemon *d, const char *why)
{
    d->tpm->boot_measured = d->tpm->boot_measuring = false;
    snprintf(d->tpm->secret_problem, sizeof(d->tpm->secret_problem),
             "measuring the "
             "virtualization layer failed (%s): the device storage secret is withheld",
             why);
    log_error("%s", d->tpm->secret_problem);
    daemon_audit(d, "tpm.measure", "fail", NULL, "trustmed", "the virtualization layer: %s", why);
    tell_scd_unavailable(d, d->tpm->secret_problem);
}

static void on_boot_measured(struct daemon *d, const Response *resp, const tm_err *err, void *userdata)
{
    d->tpm->boot_measuring = false;
    if (err) {
        if (resp) /* else tpmd died: its restart measures again */
            boot_measure_failed(d, err->msg);
        return;
    }
    d->tpm->boot_measured = true;
    tpmd_secret_refresh(d); /* a no-op when the request went out with the measurement */
}

int tpmd_measure(struct daemon *d, const struct tm_event_item *items, size_t n, tpmd_reply_fn fn, void *userdata,
                 tm_err *err)
{
    return tpmd_measure_expect(d, items, n, NULL, 0, fn, userdata, err);
}

int tpmd_measure_expect(struct daemon *d, const struct tm_event_item *items, size_t n,
                        const struct tpmd_anchor_entry *expect, size_t n_expect, tpmd_reply_fn fn, void *userdata,
                        tm_err *err)
{
    if (n == 0 || n > TPMD_MEASURE_MAX)
        return tm_err_set(err, EINVAL, "%zu measurements in one request", n);
    if (n_expect > TPMD_MEASURE_EXPECT_MAX)
        return tm_err_set(err, E2BIG, "%zu anchor expectations in one request", n_expect);
    Trustme__Tpmd__AnchorEntry xv[TPMD_MEASURE_EXPECT_MAX], *xvp[TPMD_MEASURE_EXPECT_MAX];
    for (size_t i = 0; i < n_expect; i++) {
        trustme__tpmd__anchor_entry__init(&xv[i]);
        xv[i].name = (char *)expect[i].name;
        if (expect[i].remove) {
            xv[i].has_remove = xv[i].remove = true;
        } else {
            xv[i].has_value = true;
            xv[i].value = (ProtobufCBinaryData){.len = expect[i].len, .data = (uint8_t *)expect[i].value};
        }
        xvp[i] = &xv[i];
    }
    Trustme__Attest__Event ev[TPMD_MEASURE_MAX], *evp[TPMD_MEASURE_MAX];
    for (size_t i = 0; i < n; i++) {
        trustme__attest__event__init(&ev[i]);
        ev[i].has_pcr = ev[i].has_sha256 = true;
        ev[i].pcr = items[i].pcr;
        ev[i].type = (char *)items[i].type;
        ev[i].name = (char *)items[i].name;
        ev[i].sha256 = (ProtobufCBinaryData){.len = 32, .data = (uint8_t *)items[i].sha256};
        evp[i] = &ev[i];
    }
    Trustme__Tpmd__Measure m = TRUSTME__TPMD__MEASURE__INIT;
    m.n_items = n;
    m.items = evp;
    m.n_expect = n_expect;
    m.expect = xvp;
    Request req = TRUSTME__TPMD__REQUEST__INIT;
    req.body_case = TRUSTME__TPMD__REQUEST__BODY_MEASURE;
    req.measure = &m;
    return tpmd_call(d, &req, fn, userdata, err);
}

int tpmd_measure_complete(struct daemon *d, tpmd_reply_fn fn, void *userdata, tm_err *err)
{
    Trustme__Tpmd__Measure m = TRUSTME__TPMD__MEASURE__INIT;
    m.has_complete = m.complete = true;
    Request req = TRUSTME__TPMD__REQUEST__INIT;
    req.body_case = TRUSTME__TPMD__REQUEST__BODY_MEASURE;
    req.measure = &m;
    return tpmd_call(d, &req, fn, userdata, err);
}

/* The virtualization layer, in its fixed order: trustmed, scd, tpmd, device.json. */
static void measure_boot(struct service *s, int exe)
{
    struct daemon *d = service_daemon(s);
    unsigned pcr = d->device.boot_pcr;
    struct tm_event_item items[4] = {
        {pcr, TM_EVENT_BINARY, "trustmed", {0}},
        {pcr, TM_EVENT_BINARY, "trustme-scd", {0}},
        {pcr, TM_EVENT_BINARY, "trustme-tpmd", {0}},
        {pcr, TM_EVENT_DEVICE_CONFIG, "device.json", {0}},
    };
    memcpy(items[0].sha256, d->tpm->trustmed_sha256, 32);
    memcpy(items[1].sha256, d->tpm->scd_sha256, 32);
    memcpy(items[3].sha256, d->device.sha256, 32);
    tm_err e;
    uint64_t size;
    d->tpm->boot_measured = false;
    /* Hashing moves the file offset the child shares; fexecve does not care. */
    if (lseek(exe, 0, SEEK_SET) < 0 || tm_sha256_fd(exe, items[2].sha256, &size, NULL, NULL, &e) < 0) {
        boot_measure_failed(d, e.msg);
        return;
    }
    /* scd is always started (and measured) before tpmd. The secret is asked for right behind
     * the measurement, so that it reaches scd before any container start's key request (the
     * ordering note at the top), but handed on only if the measurement succeeded: its answer
     * arrives first (on_boot_measured, then on_secret). */
    if (tpmd_measure(d, items, 4, on_boot_measured, NULL, &e) < 0) {
        boot_measure_failed(d, e.msg);
        return;
    }
    d->tpm->boot_measuring = true;
    tpmd_secret_refresh(d);
    /* After a TPM reset the new log lacks the running containers; otherwise tpmd skips what it
     * holds already. Either way, what runs is in the log before any quote is answered. */
    service_emit(d, tpmd_ready, d);
    if (tpmd_anchor_get(d, NULL, 0, on_anchor_check, NULL, &e) < 0)
        log_error("cannot check the anchor table: %s", e.msg);
}

void tpmd_measure_scd(struct daemon *d, int exe)
{
    tm_err e;
    uint64_t size;
    if (lseek(exe, 0, SEEK_SET) < 0 || tm_sha256_fd(exe, d->tpm->scd_sha256, &size, NULL, NULL, &e) < 0) {
        log_error("cannot measure trustme-scd: %s", e.msg);
        return;
    }
    d->tpm->scd_measured = true;
    if (!service_running(d->tpmd))
        return; /* tpmd's start measures it with the rest */
    struct tm_event_item item = {d->device.boot_pcr, TM_EVENT_BINARY, "trustme-scd", {0}};
    memcpy(item.sha256, d->tpm->scd_sha256, 32);
    if (tpmd_measure(d, &item, 1, on_measured, "trustme-scd", &e) < 0)
        log_error("cannot measure trustme-scd: %s", e.msg);
}

static void on_service_exit(struct service *s)
{
    struct daemon *d = service_daemon(s);
    d->tpm->secret_pending = false;
    d->tpm->boot_measured = d->tpm->boot_measuring = false; /* the next tpmd measures again */
}

static const struct service_ops tpmd_ops = {
    .name = "trustme-tpmd",
    .audit_name = "tpmd",
    .what = "the TPM service (trustme-tpmd)",
    .response = &trustme__tpmd__response__descriptor,
    .reply_max = TPMD_REPLY_MAX,
    .request_max = TPMD_REQUEST_MAX,
    .stop_wait_ms = 5000, /* it shuts its swtpm down */
    /* SIGTERM: trustmed stops, so does the embedded TPM (a power-off). A bare EOF means
     * trustmed died: tpmd exits and leaves swtpm, PCRs and log to the next trustmed. */
    .stop_signal = SIGTERM,
    .exec_child = exec_child,
    .response_id = response_id,
    .is_ready = is_ready,
    .is_error = is_error,
    .deliver = deliver,
    .on_spawned = measure_boot,
    .on_ready = on_ready,
    .on_exit = on_service_exit,
};

/* tpmd runs as its own user without a mount namespace: every directory above its own must let
 * it through. Say so plainly instead of letting tpmd fail with EACCES. */
static int check_reachable(const char *dir, uid_t uid, gid_t gid, tm_err *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s", dir);
    for (char *slash = strrchr(path, '/'); slash; slash = strrchr(path, '/')) {
        *slash = '\0';
        const char *p = path[0] ? path : "/";
        struct stat st;
        if (stat(p, &st) < 0)
            return tm_err_sys(err, "cannot stat %s", p);
        bool through = (st.st_mode & S_IXOTH) || (st.st_uid == uid && (st.st_mode & S_IXUSR)) ||
                       (st.st_gid == gid && (st.st_mode & S_IXGRP));
        if (!through)
            return tm_err_set(err, EACCES,
                              "the TPM service's user cannot reach %s: %s (mode "
                              "%04o) must be searchable by others (chmod o+x %s), or choose a "
                              "--data-dir/--run-dir below such directories",
                              dir, p, (unsigned)(st.st_mode & 07777), p);
        if (!path[0])
            break;
    }
    return 0;
}

/* <dir> owned by the service's user, mode 0700. */
static int own_dir(const char *dir, uid_t uid, gid_t gid, tm_err *err)
{
    if ((mkdir(dir, 0700) < 0 && errno != EEXIST) || chown(dir, uid, gid) < 0 || chmod(dir, 0700) < 0)
        return tm_err_sys(err, "cannot prepare %s", dir);
    return 0;
}

/* device.json tpm.boot_chain "ima": the chain starts below root, in the kernel, which measured
 * trustmed's binary and device.json (an IMA policy with BPRM_CHECK and FILE_CHECK rules for them)
 * before either was used. trustmed then only checks that the kernel's log holds both with the
 * hashes it sees; where the kernel has no IMA, it refuses to start rather than fall back to
 * measuring itself. */
#define IMA_LOG "/sys/kernel/security/ima/ascii_runtime_measurements"

static int check_ima_chain(struct daemon *d, tm_err *err)
{
    _cleanup_fclose_ FILE *f = fopen(IMA_LOG, "re");
    if (!f)
        return tm_err_set(err, ENOTSUP,
                          "device.json tpm.boot_chain is \"ima\", but this kernel "
                          "has no IMA log (%s: %s): trustmed does not start on a weaker chain "
                          "than configured",
                          IMA_LOG, strerror(errno));
    char want_exe[2 * 32 + 8], want_cfg[2 * 32 + 8], line[4096];
    strcpy(want_exe, "sha256:");
    tm_hex(d->tpm->trustmed_sha256, 32, want_exe + 7);
    strcpy(want_cfg, "sha256:");
    tm_hex(d->device.sha256, 32, want_cfg + 7);
    bool exe = false, cfg = false;
    /* ima-ng lines: PCR template-hash ima-ng ALGO:FILEDATA-HASH PATH */
    while (fgets(line, sizeof(line), f)) {
        char *save, *field[4] = {NULL};
        char *tok = strtok_r(line, " \n", &save);
        for (int i = 0; tok && i < 4; i++, tok = strtok_r(NULL, " \n", &save))
            field[i] = tok;
        if (!field[3] || strcmp(field[2], "ima-ng") != 0)
            continue;
        exe |= strcmp(field[3], want_exe) == 0;
        cfg |= strcmp(field[3], want_cfg) == 0;
    }
    if (!exe || !cfg)
        return tm_err_set(err, EPERM,
                          "device.json tpm.boot_chain is \"ima\", but the kernel's IMA "
                          "log has no ima-ng entry for %s%s%s: the running binary or config is "
                          "not the one the kernel measured",
                          exe ? "" : "trustmed's binary", !exe && !cfg ? " and " : "", cfg ? "" : "device.json");
    log_info("boot chain: the kernel's IMA log holds trustmed (%s) and device.json", want_exe);
    return 0;
}

int tpmd_start(struct daemon *d, tm_err *err)
{
    struct tpmd_ctx c = {
        .ngroups = TPMD_MAX_GROUPS, .boot_pcr = d->device.boot_pcr, .runtime_pcr = d->device.runtime_pcr};
    int r =
        daemon_find_helper(d->service_opts->tpmd.binary, "trustme-tpmd", "/../tpmd", c.binary, sizeof(c.binary), err);
    if (r < 0)
        return tm_err_prefix(err, "the TPM service (use --tpmd-binary)");
    if ((r = daemon_helper_user(d->service_opts->tpmd.user, "the TPM service", &c.uid, &c.gid, c.groups, &c.ngroups,
                                err)) < 0)
        return r;
    snprintf(c.data_dir, sizeof(c.data_dir), "%s/tpm", d->data_dir);
    snprintf(c.run_dir, sizeof(c.run_dir), "%s/tpm", d->run_dir);
    snprintf(c.vtpm_dir, sizeof(c.vtpm_dir), "%s/vtpm", d->run_dir);
    snprintf(c.swtpm_state, sizeof(c.swtpm_state), "%s", d->service_opts->tpmd.swtpm_state);
    if (d->service_opts->tpmd.recovery_key_file[0])
        snprintf(c.recovery_out, sizeof(c.recovery_out), "%s", d->service_opts->tpmd.recovery_key_file);
    else
        snprintf(c.recovery_out, sizeof(c.recovery_out), "%s/recovery-key", c.run_dir);
    snprintf(c.tcti, sizeof(c.tcti), "%s", d->device.tpm_tcti);
    snprintf(c.attest_address, sizeof(c.attest_address), "%s", d->device.attest_address);
    snprintf(c.log_level, sizeof(c.log_level), "%s", d->log_level ? d->log_level : "info");
    bool embedded = strcmp(c.tcti, "embedded") == 0;
    if (embedded && ((r = own_dir(c.swtpm_state, c.uid, c.gid, err)) < 0 ||
                     (r = check_reachable(c.swtpm_state, c.uid, c.gid, err)) < 0))
        return r;
    if ((r = own_dir(c.data_dir, c.uid, c.gid, err)) < 0 || (r = own_dir(c.run_dir, c.uid, c.gid, err)) < 0 ||
        (r = check_reachable(c.data_dir, c.uid, c.gid, err)) < 0 ||
        (r = check_reachable(c.run_dir, c.uid, c.gid, err)) < 0)
        return r;
    if (tpmd_emulated(d))
        log_warn("the TPM is an emulator (%s): the device binding of encrypted containers is "
                 "emulated; its state (%s) is files, and a copy of them with the data dir opens "
                 "this device's containers given their PINs, or by brute force (docs/STORAGE.md "
                 "\"The embedded TPM\")%s",
                 c.tcti, embedded ? d->service_opts->tpmd.swtpm_state : c.tcti,
                 d->device.tpm_require_hardware ? "; tpm.require_hardware is set: encrypted "
                                                  "containers are refused"
                                                : "");
    _cleanup_close_ int self = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    uint64_t size;
    if (self < 0)
        return tm_err_sys(err, "cannot open trustmed's own binary to measure it");
    if ((r = tm_sha256_fd(self, d->tpm->trustmed_sha256, &size, NULL, NULL, err)) < 0)
        return tm_err_prefix(err, "measuring trustmed");
    if (d->device.boot_chain == BOOT_CHAIN_IMA && (r = check_ima_chain(d, err)) < 0)
        return r;
    return service_start(d, &tpmd_ops, c.binary, &c, sizeof(c), &d->tpmd, err);
}

int tpmd_init(struct daemon *d, tm_err *err)
{
    d->tpm = calloc(1, sizeof(*d->tpm));
    return d->tpm ? 0 : tm_err_set(err, ENOMEM, "out of memory");
}

void tpmd_free(struct daemon *d)
{
    if (d->tpm)
        secret_free(d->tpm->keystore_root);
    free(d->tpm);
    d->tpm = NULL;
}

void tpmd_stop(struct daemon *d)
{
    service_stop(d->tpmd);
    d->tpmd = NULL;
}

int tpmd_call(struct daemon *d, Trustme__Tpmd__Request *req, tpmd_reply_fn fn, void *userdata, tm_err *err)
{
    if (!service_running(d->tpmd))
        return tm_err_set(err, ESHUTDOWN,
                          "the TPM service (trustme-tpmd) is not running; it is "
                          "being restarted, try again");
    req->has_version = req->has_id = true;
    req->version = TM_PROTOCOL_VERSION;
    req->id = service_next_id(d->tpmd);
    /* Which requests a start makes is what the start-latency work counts (docs/BENCHMARKS.md). */
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field(&trustme__tpmd__request__descriptor, (unsigned)req->body_case);
    log_debug("trustme-tpmd request %llu: %s", (unsigned long long)req->id, f ? f->name : "?");
    return service_send(d->tpmd, &req->base, req->id, (service_fn)fn, userdata, err);
}

void tpmd_forget(struct daemon *d, void *userdata)
{
    service_forget(d->tpmd, userdata);
}

bool tpmd_emulated(const struct daemon *d)
{
    const char *t = d->device.tpm_tcti;
    return strcmp(t, "embedded") == 0 || strncmp(t, "swtpm", 5) == 0 || strncmp(t, "mssim", 5) == 0;
}

const char *tpmd_secret_problem(const struct daemon *d)
{
    if (d->tpm->scd_has_secret)
        return NULL;
    if (d->tpm->secret_problem[0])
        return d->tpm->secret_problem;
    return "the device storage secret has not arrived from the TPM service (trustme-tpmd) yet; "
           "try again in a moment";
}

/* scd's binary is measured, its end and its restart change what it holds (device secret). */
const struct service_events tpmd_scd_events = {
    .name = "tpmd",
    .scd_spawned = tpmd_measure_scd,
    .scd_ready = tpmd_secret_refresh,
    .scd_gone = tpmd_scd_gone,
};
