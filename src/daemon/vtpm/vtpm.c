/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustmed's side of the per-container vTPM (docs/VTPM.md).
 *
 * A start with "vtpm": true, once the data key is unwrapped, derives the vTPM's state key from
 * it, reads the state's anchor ("vtpm/<uuid>" in tpmd's anchor table) and refuses a state file
 * whose SHA-256 is not the anchored one (an older copy, another container's, or one the anchor
 * never saw). trustme-vtpm runs as the vTPM's own uid from the start's measurement on, waiting:
 * once the state passed that check it gets the checked state, the container's events and then the
 * key through fds, its EKs are measured meanwhile, and the start goes on once the guest's socket
 * accepts. When trustme-vtpm ends (the container stopped, or it died), the state's new
 * digest is anchored: one NV write per vTPM run. A vTPM that dies while its container runs is
 * started again with the key trustmed keeps (locked memory) for exactly that. */
#include "vtpm.h"
#include "vtpm_owner.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "child.h"
#include "child_exit.h"
#include "cleanup.h"
#include "container.h"
#include "commit_budget.h"
#include "crypto.h"
#include "deadline.h"
#include "fdutil.h"
#include "fileio.h"
#include "hex.h"
#include "log.h"
#include "measurement.h"

#define VTPM_MAX_EVENTS TPMD_MEASURE_MAX
#define VTPM_KEY_LEN 32
#define VTPM_MAX_RESTARTS 5
/* The state file as trustme-vtpm writes it (src/vtpm/vtpm_state.h, vtpm_tpm.h: the same name and
 * magic): libtpms's permanent state, encrypted. */
#define STATE_FILE "tpm2.state"
#define STATE_TMP_FILE STATE_FILE ".tmp" /* a commit's synced new state, before its rename */
#define STATE_MAGIC "TMVTPM1\n"
#define STATE_MAGIC_LEN 8
#define STATE_SOCKET "state.sock"
#define STATE_MAX (4u << 20)
#define EK_RECORD "vtpm-ek"
#define EK_PUBLIC_MAX 400 /* an RSA 2048 EK's TPMT_PUBLIC is 314 bytes */
#define READY_MAX 2048
/* trustme-vtpm has this long after SIGTERM (it saves and exits in milliseconds), then SIGKILL: a
 * vTPM that ignores SIGTERM (hung in a command, or taken over through the guest's TPM commands)
 * must not keep the container from stopping and starting again, nor trustmed from exiting. */
#define STOP_TIMEOUT_MS (15 * 1000)
#define EK_CERT_RECORD "vtpm-ek-cert-" /* + kind + ".der" */

struct vtpm {
    struct container *c;
    struct secret *key; /* the state key, while the vTPM may have to be started (again) */
    pid_t pid;
    int pidfd, ready_fd;
    tm_source *pid_src, *ready_src;
    tm_source *stop_timer; /* SIGKILL after STOP_TIMEOUT_MS */
    vtpm_done_fn done; /* a start waiting for the vTPM */
    bool stopping; /* the container stopped: do not start it again */
    unsigned anchoring; /* anchor updates under way */
    bool start_queued; /* a start came while the last run's vTPM was still stopping */
    bool manufacture; /* a new vTPM: trustme-vtpm makes its EKs */
    /* trustme-vtpm runs while the state is checked (launch), and gets its key, state and events
     * only when the check passed (deliver): until then key_fd and state_memfd are trustmed's ends. */
    int key_fd, state_memfd;
    bool delivered; /* it has its key: what it reports is the state it started on */
    bool eks_measuring; /* its EKs are being measured into the physical TPM, alongside its start */
    bool ready_seen; /* it said "R": the start finishes once its EKs are measured too */
    bool adopted; /* re-adopted after a trustmed restart: not our child, and no key to restart it */
    unsigned restarts;
    /* The state as trustme-vtpm learnt it from its TPM (docs/VTPM.md "The state"): the last
     * committed digest ("C", or the anchored one at the start), and one announced before its
     * rename ("P") that is not committed yet. Only these are ever anchored or accepted on disk. */
    int report_fd;
    tm_source *report_src;
    bool have_known, have_pending, have_anchored;
    uint8_t known[32], pending[32];
    uint8_t anchored[32]; /* the digest this run anchored last (its end then writes no NV again) */
    uint8_t asked[32]; /* "A": the digest being anchored for trustme-vtpm, which waits for it */
    bool anchor_first_c; /* re-adopted: anchor the state it says it committed, once */
    int64_t budget_audit_ms; /* the last "budget spent" audit record (one a minute) */
    char report_buf[2 * 68];
    size_t report_len;
    /* EK certificates (docs/VTPM.md "EK certificates"): fd 4 of trustme-vtpm stays open (ev_fd)
     * while tpmd issues them; then they go to it with the events. Kept until it reports them
     * stored in its NV ("NV kind"), then recorded. */
    int ev_fd;
    unsigned certs_pending;
    struct {
        char kind[4];
        uint8_t *der;
        size_t len;
    } cert[VTPM_EKS];
    size_t ncert;
    char guestos[TM_EVENT_NAME_MAX + 1]; /* "NAME-VERSION" of this start's GuestOS, or "" */
    size_t nev;
    size_t log_cap; /* bytes allocated for log */
    bool owner_logged; /* the owner event is in log and digest (once per measurement) */
    unsigned pcr[VTPM_MAX_EVENTS];
    uint8_t digest[VTPM_MAX_EVENTS][32];
    char *log; /* the event log the guest reads at /run/tpm/event.log */
    size_t log_len;
};

/* The vTPM's uid: one per container, below the daemon's --id-base, so no container's id range
 * (each maps all of its 65536 ids) and no other vTPM shares it. */
static int vtpm_uid(const struct container *c, uid_t *ret, tm_err *err)
{
    const struct daemon *d = c->d;
    if (!c->cfg->user_namespace || c->uid_base < d->id_base)
        return tm_err_set(err, EINVAL, "a vTPM needs the container's own user namespace (user_namespace)");
    uint64_t slot = (c->uid_base - d->id_base) / TM_IDS_PER_CONTAINER;
    if (slot >= d->id_base || d->id_base - 1 - slot < 1000)
        return tm_err_set(err, ERANGE, "no vTPM uid below --id-base %u is left for it", d->id_base);
    *ret = (uid_t)(d->id_base - 1 - slot);
    return 0;
}

int vtpm_check(const struct container *c, tm_err *err)
{
    uid_t uid = 0;
    int r = vtpm_uid(c, &uid, err);
    if (r < 0)
        return r;
    if (c->cfg->token.kind == TOKEN_KIND_NONE || c->cfg->data_size_mb == 0)
        return tm_err_set(err, EINVAL,
                          "a vTPM's state is encrypted with a key wrapped like the data key: the container "
                          "needs a token and a persistent data volume");
    return 0;
}

static void state_dir(const struct container *c, char *out, size_t size)
{
    char dir[PATH_MAX];
    container_data_dir(c, dir, sizeof(dir));
    snprintf(out, size, "%s/vtpm", dir);
}

static void run_dir(const struct container *c, char *out, size_t size)
{
    snprintf(out, size, "%s/vtpm/%s", c->d->run_dir, c->uuid);
}

void vtpm_public_dir(const struct container *c, char *out, size_t size)
{
    snprintf(out, size, "%s/vtpm/%s/pub", c->d->run_dir, c->uuid);
}

/* <data>/containers/<uuid>/vtpm-ek: root's record of the EKs made at manufacture, outside the
 * vTPM uid's state directory. */
static void ek_record_path(const struct container *c, char *out, size_t size)
{
    char dir[PATH_MAX];
    container_data_dir(c, dir, sizeof(dir));
    snprintf(out, size, "%s/" EK_RECORD, dir);
}

/* <data>/containers/<uuid>/vtpm-ek-cert-<kind>.der: the EK certificate stored in the vTPM's NV. */
static void ek_cert_path(const struct container *c, const char *kind, char *out, size_t size)
{
    char dir[PATH_MAX];
    container_data_dir(c, dir, sizeof(dir));
    snprintf(out, size, "%s/" EK_CERT_RECORD "%s.der", dir, kind);
}

static void remove_ek_records(const struct container *c)
{
    char path[PATH_MAX + 32];
    ek_record_path(c, path, sizeof(path));
    unlink(path);
    ek_cert_path(c, "rsa", path, sizeof(path));
    unlink(path);
    ek_cert_path(c, "ecc", path, sizeof(path));
    unlink(path);
}

/* The record's last line is "mac HEX": HKDF-SHA256 (a PRF) under the vTPM's state key over the UUID
 * and the EK lines. Root on the device can rewrite the file but has not the key (it needs the
 * container's data key): an edited record, or another container's, does not authenticate, and
 * the device never measures EKs that are not this vTPM's. */
static void ek_record_mac(const struct container *c, const struct secret *key, const char *body, size_t len,
                          uint8_t out[32])
{
    char info[96 + READY_MAX];
    int n = snprintf(info, sizeof(info), "trustme vtpm-ek record v1|%s|", c->uuid);
    size_t l = len < sizeof(info) - (size_t)n ? len : sizeof(info) - (size_t)n; /* bodies are < READY_MAX */
    memcpy(info + n, body, l);
    tm_hkdf_sha256(key->data, key->len, NULL, 0, info, (size_t)n + l, out, 32);
}

/* With key: only a record whose MAC is right (-EBADMSG otherwise); without: as it is (for
 * showing it). */
static int read_eks(const struct container *c, const struct secret *key, struct vtpm_ek *ret, size_t *ret_n)
{
    char path[PATH_MAX + 16];
    ek_record_path(c, path, sizeof(path));
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    tm_err err = {0};
    *ret_n = 0;
    int r = read_file(path, 4096, &data, &len, &err);
    if (r < 0)
        return r == -ENOENT ? 0 : r;
    char *mac = strstr(data, "\nmac ");
    if (key) {
        uint8_t want[32], got[32];
        unsigned diff = 0;
        /* "\nmac " (5), 64 hex digits, "\n": the file's end */
        if (!mac || strlen(mac) != 5 + 64 + 1 || mac[5 + 64] != '\n' ||
            tm_hex_decode(mac + 5, 64, got, sizeof(got), 0, &err) < 0)
            return -EBADMSG;
        ek_record_mac(c, key, data, (size_t)(mac - data) + 1, want);
        for (size_t i = 0; i < sizeof(want); i++)
            diff |= want[i] ^ got[i];
        if (diff)
            return -EBADMSG;
    }
    if (mac)
        mac[1] = '\0';
    char *save = NULL;
    for (char *line = strtok_r(data, "\n", &save); line && *ret_n < VTPM_EKS; line = strtok_r(NULL, "\n", &save)) {
        struct vtpm_ek *ek = &ret[*ret_n];
        char kind[8], hex[2 * EK_PUBLIC_MAX + 1];
        if (sscanf(line, "%7s %800s", kind, hex) != 2 || (strcmp(kind, "rsa") != 0 && strcmp(kind, "ecc") != 0))
            return -EBADMSG;
        size_t n = strlen(hex) / 2;
        if (n == 0 || n > EK_PUBLIC_MAX || tm_hex_decode_str(hex, ek->public, n, 0, &err) < 0)
            return -EBADMSG;
        snprintf(ek->kind, sizeof(ek->kind), "%s", kind);
        ek->public_len = n;
        char cpath[PATH_MAX + 32];
        _cleanup_free_ char *cert = NULL;
        size_t cert_len = 0;
        ek_cert_path(c, kind, cpath, sizeof(cpath));
        ek->cert_len = 0;
        if (read_file(cpath, VTPM_EK_CERT_MAX, &cert, &cert_len, &err) == 0 && cert_len > 0) {
            memcpy(ek->cert, cert, cert_len);
            ek->cert_len = cert_len;
        }
        /* Its TPM name: nameAlg SHA-256 || SHA-256(TPMT_PUBLIC). */
        ek->name[0] = 0x00;
        ek->name[1] = 0x0b;
        tm_sha256(ek->public, n, ek->name + 2);
        (*ret_n)++;
    }
    return 0;
}

int vtpm_eks(const struct container *c, struct vtpm_ek *ret, size_t *ret_n)
{
    return read_eks(c, NULL, ret, ret_n);
}

static void anchor_name(const struct container *c, char *out, size_t size)
{
    snprintf(out, size, VTPM_ANCHOR_PREFIX "%s", c->uuid);
}

/* The state file's digest; false when there is none. */
static int read_state(const struct container *c, const char *name, uint8_t **ret, size_t *ret_len);

static bool state_digest(const struct container *c, uint8_t out[32])
{
    /* read_state: a FIFO the vTPM's uid put there must not block trustmed */
    _cleanup_free_ uint8_t *data = NULL;
    size_t len = 0;
    if (read_state(c, STATE_FILE, &data, &len) < 0)
        return false;
    tm_sha256(data, len, out);
    return true;
}

/* A state file's bytes as found (-ENOENT: none). Not through a link: the directory is the vTPM
 * uid's, and whatever it names would go to that uid. */
static int read_state(const struct container *c, const char *name, uint8_t **ret, size_t *ret_len)
{
    char path[PATH_MAX + 32];
    state_dir(c, path, sizeof(path));
    size_t n = strlen(path);
    snprintf(path + n, sizeof(path) - n, "/%s", name);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    struct stat st;
    if (fd < 0)
        return errno == ELOOP ? -EBADMSG : -errno;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode) || st.st_size > STATE_MAX)
        return -EBADMSG;
    uint8_t *buf = malloc((size_t)st.st_size + 1);
    if (!buf)
        return -ENOMEM;
    ssize_t got = read_all(fd, buf, (size_t)st.st_size);
    if (got != st.st_size) {
        free(buf);
        return got < 0 ? (int)got : -EIO;
    }
    *ret = buf;
    *ret_len = (size_t)got;
    return 0;
}

/* Why the state found on disk is not the vTPM's (NULL: it is): it must be the last state
 * trustme-vtpm committed (the anchored one at a start), or the one it announced before a rename
 * it may not have made. */
static const char *state_refused(const struct vtpm *v, bool have, const uint8_t digest[32])
{
    if (have && ((v->have_known && memcmp(digest, v->known, 32) == 0) ||
                 (v->have_pending && memcmp(digest, v->pending, 32) == 0)))
        return NULL;
    if (!have)
        return v->have_known ? "its state file is missing, but the TPM anchors one" : NULL;
    if (!v->have_known && !v->have_pending)
        return "a state file is there that this device's TPM never anchored (copied in?)";
    return "its state file is not the one anchored in the TPM (an older copy, or another container's state)";
}

static void close_report(struct vtpm *v)
{
    tm_source_free(v->report_src);
    v->report_src = NULL;
    close_and_reset(v->report_fd);
    v->report_len = 0;
}

static void on_anchored(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata);

/* "K HEX" (anchored) or "L HEX" (not) to trustme-vtpm, which waits for it before its rename. */
static void answer_anchor(struct vtpm *v, char kind, const uint8_t digest[32])
{
    char line[67];
    line[0] = kind;
    line[1] = ' ';
    tm_hex(digest, 32, line + 2);
    line[66] = '\n';
    /* 67 bytes on a socket it drains while it waits: a full buffer means it is not waiting, and it
     * then goes on unanchored when its wait ends. */
    if (v->report_fd >= 0 && send(v->report_fd, line, sizeof(line), MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
        log_warn("%s: cannot answer the vTPM's anchor request: %s", container_label(v->c), strerror(errno));
}

static void on_step_anchored(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
{
    struct vtpm *v = userdata;
    v->anchoring--;
    if (err) {
        log_error("%s: the vTPM state cannot be anchored: %s", container_label(v->c), err->msg);
        daemon_audit(d, "vtpm.anchor", "fail", v->c, NULL, "%s", err->msg);
    } else {
        memcpy(v->anchored, v->asked, 32);
        v->have_anchored = true;
        log_debug("%s: the vTPM's commit is anchored", container_label(v->c));
    }
    answer_anchor(v, err ? 'L' : 'K', v->asked);
    daemon_maybe_exit(d);
}

/* A commit's digest into the TPM before trustme-vtpm renames it into place (docs/VTPM.md "The
 * anchor"): one NV write, taken from the container's TPM write budget, which the keystore's
 * commits share. A spent budget makes it a commit the TPM does not vouch for until the vTPM's end
 * (a power loss before then fails closed); the guest, who chose to write that often, is told in
 * the audit log. */
static void anchor_step(struct vtpm *v, const uint8_t digest[32], bool answer)
{
    char name[96];
    uint64_t wait_s = 0;
    anchor_name(v->c, name, sizeof(name));
    if (!commit_budget_take(v->c->uuid, (uint64_t)tm_now_ms(), &wait_s)) {
        int64_t now = tm_now_ms();
        if (!v->budget_audit_ms || now - v->budget_audit_ms >= 60000) {
            v->budget_audit_ms = now;
            daemon_audit(v->c->d, "vtpm.anchor", "fail", v->c, NULL,
                         "TPM write budget spent (%d anchored commits, then one every %d s): the vTPM's state "
                         "is anchored at its end only",
                         COMMIT_BUDGET_BURST, COMMIT_BUDGET_REFILL_S);
        }
        if (answer)
            answer_anchor(v, 'L', digest);
        return;
    }
    uint8_t value[32]; /* (sent at once: tpmd_anchor_update packs the request) */
    memcpy(value, digest, 32);
    if (answer)
        memcpy(v->asked, digest, 32);
    struct tpmd_anchor_entry e = {.name = name, .value = value, .len = 32};
    tm_err err = {0};
    if (tpmd_anchor_update(v->c->d, &e, 1, NULL, 0, answer ? on_step_anchored : on_anchored, v, &err) < 0) {
        log_error("%s: the vTPM state cannot be anchored: %s", container_label(v->c), err.msg);
        if (answer)
            answer_anchor(v, 'L', digest);
        return;
    }
    v->anchoring++;
    if (!answer) { /* (on_anchored learns nothing of the digest) */
        memcpy(v->anchored, digest, 32);
        v->have_anchored = true;
    }
}

/* "A HEX": the TPM wrote this state, synced, to be anchored before its rename; "P HEX": the same,
 * not to be anchored now; "C HEX": it is the file now. */
static void report_line(struct vtpm *v, const char *line, size_t n)
{
    uint8_t d[32];
    tm_err err = {0};
    if (n != 66 || line[1] != ' ' || (line[0] != 'P' && line[0] != 'C' && line[0] != 'A') ||
        tm_hex_decode(line + 2, 64, d, sizeof(d), 0, &err) < 0) {
        log_warn("%s: trustme-vtpm reported a malformed state digest", container_label(v->c));
        return;
    }
    if (line[0] == 'P' || line[0] == 'A') {
        memcpy(v->pending, d, 32);
        v->have_pending = true;
        if (line[0] == 'A')
            anchor_step(v, d, true);
        return;
    }
    memcpy(v->known, d, 32);
    v->have_known = true;
    v->have_pending = false;
    if (v->anchor_first_c) {
        /* Re-adopted: what it committed while no trustmed ran is anchored now, so that a power
         * loss from here on does not find the file newer than its anchor. */
        v->anchor_first_c = false;
        if (!v->have_anchored || memcmp(v->anchored, d, 32) != 0)
            anchor_step(v, d, false);
    }
}

/* Everything trustme-vtpm reported so far; after it died its last lines are still readable. */
static void drain_reports(struct vtpm *v)
{
    while (v->report_fd >= 0) {
        ssize_t n = read(v->report_fd, v->report_buf + v->report_len, sizeof(v->report_buf) - v->report_len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            close_report(v);
            return;
        }
        v->report_len += (size_t)n;
        char *nl;
        while ((nl = memchr(v->report_buf, '\n', v->report_len))) {
            size_t l = (size_t)(nl - v->report_buf);
            report_line(v, v->report_buf, l);
            memmove(v->report_buf, nl + 1, v->report_len - l - 1);
            v->report_len -= l + 1;
        }
        if (v->report_len == sizeof(v->report_buf))
            v->report_len = 0; /* no line that long is ours */
    }
}

static void on_report(tm_source *src, uint32_t events, void *userdata)
{
    drain_reports(userdata);
}

static struct vtpm *vtpm_of(struct container *c)
{
    if (!c->vtpm) {
        c->vtpm = calloc(1, sizeof(*c->vtpm));
        if (!c->vtpm)
            return NULL;
        c->vtpm->c = c;
        c->vtpm->pidfd = c->vtpm->ready_fd = c->vtpm->ev_fd = c->vtpm->report_fd = -1;
        c->vtpm->key_fd = c->vtpm->state_memfd = -1;
    }
    return c->vtpm;
}

static int launch(struct vtpm *v, tm_err *err);

void vtpm_set_events(struct container *c, const struct tm_event_item *items, size_t n)
{
    if (!c->cfg->vtpm)
        return;
    struct vtpm *v = vtpm_of(c);
    if (!v)
        return;
    free(v->log);
    v->log = NULL;
    v->log_len = 0;
    v->nev = 0;
    size_t cap = (n + 1) * (TM_EVENT_NAME_MAX + TM_EVENT_TYPE_MAX + 100) + 1; /* + the owner's */
    v->log = malloc(cap);
    if (!v->log)
        return;
    v->log[0] = '\0';
    v->guestos[0] = '\0';
    v->log_cap = cap;
    v->owner_logged = false;
    for (size_t i = 0; i < n && i < VTPM_MAX_EVENTS; i++) {
        if (strcmp(items[i].type, TM_EVENT_GUESTOS_CONFIG) == 0) {
            const char *slash = strchr(items[i].name, '/');
            snprintf(v->guestos, sizeof(v->guestos), "%.*s",
                     (int)(slash ? (size_t)(slash - items[i].name) : strlen(items[i].name)), items[i].name);
        }
        v->pcr[i] = items[i].pcr;
        tm_event_digest(items[i].pcr, items[i].type, items[i].name, items[i].sha256, v->digest[i]);
        char hex[65];
        tm_hex(items[i].sha256, 32, hex);
        v->log_len += (size_t)snprintf(v->log + v->log_len, cap - v->log_len, "%u %s %s %s\n", items[i].pcr,
                                       items[i].type, hex, items[i].name);
        v->nev++;
    }
    /* Measured: the data key is unwrapped next (the token, the PIN). trustme-vtpm starts now and
     * waits for its key, so that its exec and set-up overlap that too (vtpm_start delivers). Not
     * while the last run's vTPM still stops (its anchor comes first), nor when this start cannot
     * have a vTPM (vtpm_start says why). */
    tm_err err = {0};
    if (!v->pid && c->state == CS_STARTING && vtpm_check(c, &err) == 0 && launch(v, &err) < 0)
        log_debug("%s: trustme-vtpm not started ahead: %s", container_label(c), err.msg);
}

static bool owner_event(const struct container *c, struct tm_event_item *item, char name[TM_EVENT_NAME_MAX + 1]);

/* The owner record goes into the vTPM's own PCR after the start's events (and after the owner's
 * reference values were checked against those: the record is the owner's own statement), so the
 * vTPM's quote names its owner too. Recording another owner takes effect at the next start. */
static void log_owner(struct vtpm *v)
{
    struct tm_event_item item;
    char name[TM_EVENT_NAME_MAX + 1];
    if (v->owner_logged || !v->log || v->nev >= VTPM_MAX_EVENTS || !owner_event(v->c, &item, name))
        return;
    v->pcr[v->nev] = item.pcr;
    tm_event_digest(item.pcr, item.type, item.name, item.sha256, v->digest[v->nev]);
    char hex[65];
    tm_hex(item.sha256, 32, hex);
    v->log_len += (size_t)snprintf(v->log + v->log_len, v->log_cap - v->log_len, "%u %s %s %s\n", item.pcr, item.type,
                                   hex, item.name);
    v->nev++;
    v->owner_logged = true;
}

static void derive_key(const struct container *c, const struct secret *data_key, uint8_t out[VTPM_KEY_LEN])
{
    /* Bound to this container: another container's state does not even decrypt here. */
    static const char label[] = "trustme-vtpm-state-key-v1";
    struct tm_sha256_ctx h;
    tm_sha256_init(&h);
    tm_sha256_update(&h, label, sizeof(label));
    tm_sha256_update(&h, c->uuid, strlen(c->uuid));
    tm_sha256_update(&h, data_key->data, data_key->len);
    tm_sha256_final(&h, out);
}

static int mkdir_owned(const char *path, mode_t mode, uid_t uid, tm_err *err)
{
    if (mkdir(path, mode) < 0 && errno != EEXIST)
        return tm_err_sys(err, "cannot create %s", path);
    struct stat st;
    if (lstat(path, &st) < 0 || !S_ISDIR(st.st_mode))
        return tm_err_set(err, ENOTDIR, "%s is not a directory", path);
    if (chown(path, uid, uid) < 0 || chmod(path, mode) < 0)
        return tm_err_sys(err, "cannot set the owner of %s", path);
    return 0;
}

static void withdraw(struct vtpm *v);

static void finish_start(struct vtpm *v, const tm_err *err)
{
    if (err)
        withdraw(v); /* a trustme-vtpm still waiting for its key ends without it */
    vtpm_done_fn done = v->done;
    v->done = NULL;
    if (done)
        done(v->c, err);
}

static void anchor_state(struct vtpm *v);

static void on_vtpm_exit(tm_source *src, uint32_t events, void *userdata);

static void on_ek_measured(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
{
    struct vtpm *v = userdata;
    v->eks_measuring = false;
    if (err) {
        tm_err e = {0};
        tm_err_set(&e, err->code, "the vTPM's endorsement keys cannot be measured: %s", err->msg);
        finish_start(v, &e);
        return;
    }
    if (v->ready_seen) {
        log_info("%s: vTPM ready (pid %d)", container_label(v->c), v->pid);
        finish_start(v, NULL);
    }
}

/* A manufacture's "EK rsa|ecc HEX" lines: root's record of the EKs, kept until a reset. */
static int record_eks(struct vtpm *v, const char *msg, size_t len, tm_err *err)
{
    char out[READY_MAX];
    size_t used = 0;
    const char *p = msg, *end = msg + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            break;
        size_t n = (size_t)(nl - p);
        if (n < 8 || memcmp(p, "EK ", 3) != 0 || used + n + 1 > sizeof(out))
            return tm_err_set(err, EBADMSG, "trustme-vtpm reported a malformed endorsement key");
        memcpy(out + used, p + 3, n - 3);
        used += n - 3;
        out[used++] = '\n';
        p = nl + 1;
    }
    uint8_t mac[32];
    if (!v->key || used + 4 + 64 + 1 > sizeof(out))
        return tm_err_set(err, EBADMSG, "trustme-vtpm reported a malformed endorsement key");
    ek_record_mac(v->c, v->key, out, used, mac);
    memcpy(out + used, "mac ", 4);
    tm_hex(mac, sizeof(mac), out + used + 4);
    used += 4 + 64;
    out[used++] = '\n';
    char path[PATH_MAX + 16];
    ek_record_path(v->c, path, sizeof(path));
    int r = write_file_replace(path, out, used, 0600, err);
    if (r < 0)
        return r;
    struct vtpm_ek eks[VTPM_EKS];
    size_t n = 0;
    if (read_eks(v->c, v->key, eks, &n) < 0 || n != VTPM_EKS) {
        unlink(path);
        return tm_err_set(err, EBADMSG, "trustme-vtpm reported malformed endorsement keys");
    }
    return 0;
}

/* The vtpm-owner event of c's recorded owner statement, if there is one. */
static bool owner_event(const struct container *c, struct tm_event_item *item, char name[TM_EVENT_NAME_MAX + 1])
{
    uint8_t digest[32];
    int r = vtpm_owner_digest(c, digest);
    if (r < 0)
        log_error("%s: its vTPM owner record cannot be read (%s): not measured", container_label(c), strerror(-r));
    if (r <= 0)
        return false;
    snprintf(name, TM_EVENT_NAME_MAX + 1, "%s/owner", c->uuid);
    *item = (struct tm_event_item){c->d->device.runtime_pcr, TM_EVENT_VTPM_OWNER, name, {0}};
    memcpy(item->sha256, digest, 32);
    return true;
}

size_t vtpm_ek_events(const struct container *c, struct tm_event_item *items, char (*names)[TM_EVENT_NAME_MAX + 1],
                      size_t max)
{
    struct vtpm_ek eks[VTPM_EKS];
    size_t n = 0;
    if (!c->cfg->vtpm || !c->vtpm || !c->vtpm->key)
        return 0;
    int r = read_eks(c, c->vtpm->key, eks, &n);
    if (r < 0) {
        log_error("%s: the record of its vTPM's endorsement keys %s: they are not measured", container_label(c),
                  r == -EBADMSG ? "does not authenticate (edited, or another container's)" : "cannot be read");
        return 0;
    }
    size_t k = 0;
    for (; k < n && k < max; k++) {
        snprintf(names[k], TM_EVENT_NAME_MAX + 1, "%s/ek-%s", c->uuid, eks[k].kind);
        items[k] = (struct tm_event_item){c->d->device.runtime_pcr, TM_EVENT_VTPM_EK, names[k], {0}};
        memcpy(items[k].sha256, eks[k].name + 2, 32);
    }
    /* Who owns it: the quote, not only `trustme vtpm info`, tells a verifier. */
    if (k < max && owner_event(c, &items[k], names[k]))
        k++;
    return k;
}

/* Deep attestation: the vTPM's EKs go into the physical runtime PCR before the guest runs, so the
 * device's quote names the vTPMs it hosts (tpmd skips events already in its log). */
static int measure_eks(struct vtpm *v, tm_err *err)
{
    char path[PATH_MAX + 16];
    ek_record_path(v->c, path, sizeof(path));
    if (access(path, F_OK) < 0)
        return 0;
    char names[VTPM_EKS + 1][TM_EVENT_NAME_MAX + 1];
    struct tm_event_item items[VTPM_EKS + 1];
    size_t n = vtpm_ek_events(v->c, items, names, VTPM_EKS + 1);
    if (n == 0)
        return tm_err_set(err, EBADMSG,
                          "the record of the vTPM's endorsement keys is unreadable or not this vTPM's (edited, or "
                          "another container's?); `trustme vtpm reset` makes a new vTPM");
    int r = tpmd_measure(v->c->d, items, n, on_ek_measured, v, err);
    if (r < 0)
        return r;
    v->eks_measuring = true;
    return 1;
}

static void certs_clear(struct vtpm *v)
{
    for (size_t i = 0; i < v->ncert; i++)
        free(v->cert[i].der);
    memset(v->cert, 0, sizeof(v->cert));
    v->ncert = 0;
}

/* Every certificate tpmd issued goes to trustme-vtpm with the events; EOF lets it go on. */
static void send_certs(struct vtpm *v)
{
    for (size_t i = 0; i < v->ncert && v->ev_fd >= 0; i++) {
        if (!v->cert[i].der)
            continue;
        size_t n = 5 + 4 + 2 * v->cert[i].len + 1;
        _cleanup_free_ char *line = malloc(n + 1);
        if (!line)
            break;
        snprintf(line, n + 1, "CERT %s ", v->cert[i].kind);
        tm_hex(v->cert[i].der, v->cert[i].len, line + 9);
        line[n - 1] = '\n';
        if (write_all(v->ev_fd, line, n) < 0) {
            log_warn("%s: cannot pass the EK certificates to the vTPM: %s", container_label(v->c), strerror(errno));
            break;
        }
    }
    close_and_reset(v->ev_fd);
}

static void on_ek_cert(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
{
    struct vtpm *v = userdata;
    size_t i = v->ncert - v->certs_pending;
    v->certs_pending--;
    if (err) {
        /* No issuer certificate yet is normal before the device is provisioned; the next start
         * asks again. */
        if (err->code == ENOENT)
            log_info("%s: no EK certificate: %s", container_label(v->c), err->msg);
        else
            log_warn("%s: no %s EK certificate: %s", container_label(v->c), v->cert[i].kind, err->msg);
    } else if (resp->vtpm_ek_cert && resp->vtpm_ek_cert->has_cert_der && resp->vtpm_ek_cert->cert_der.len > 0 &&
               resp->vtpm_ek_cert->cert_der.len <= VTPM_EK_CERT_MAX) {
        const ProtobufCBinaryData *der = &resp->vtpm_ek_cert->cert_der;
        if ((v->cert[i].der = malloc(der->len))) {
            memcpy(v->cert[i].der, der->data, der->len);
            v->cert[i].len = der->len;
        }
    }
    if (v->certs_pending == 0)
        send_certs(v);
}

/* Ask tpmd for a certificate of each recorded EK that has none yet (all at manufacture); the
 * answers come in order. Without any to ask for, fd 4 is closed at once. */
static void request_certs(struct vtpm *v)
{
    struct vtpm_ek eks[VTPM_EKS];
    size_t n = 0;
    certs_clear(v);
    v->certs_pending = 0;
    if (vtpm_eks(v->c, eks, &n) < 0)
        n = 0;
    for (size_t i = 0; i < n; i++) {
        if (eks[i].cert_len > 0)
            continue;
        Trustme__Tpmd__VtpmEkCert ec = TRUSTME__TPMD__VTPM_EK_CERT__INIT;
        ec.has_ek_public = true;
        ec.ek_public = (ProtobufCBinaryData){.len = eks[i].public_len, .data = eks[i].public};
        ec.uuid = (char *)v->c->uuid;
        ec.guestos = v->guestos;
        Trustme__Tpmd__Request rq = TRUSTME__TPMD__REQUEST__INIT;
        rq.body_case = TRUSTME__TPMD__REQUEST__BODY_VTPM_EK_CERT;
        rq.vtpm_ek_cert = &ec;
        tm_err err = {0};
        snprintf(v->cert[v->ncert].kind, sizeof(v->cert[v->ncert].kind), "%s", eks[i].kind);
        v->ncert++;
        v->certs_pending++;
        if (tpmd_call(v->c->d, &rq, on_ek_cert, v, &err) < 0) {
            log_warn("%s: no EK certificate: %s", container_label(v->c), err.msg);
            v->ncert--;
            v->certs_pending--;
            break;
        }
    }
    if (v->certs_pending == 0)
        send_certs(v);
}

/* trustme-vtpm's "NV kind" lines: the certificates it stored, recorded for `trustme vtpm info`. */
static void record_certs(struct vtpm *v, const char *msg, size_t len)
{
    for (size_t i = 0; i < v->ncert; i++) {
        char want[8], path[PATH_MAX + 32];
        snprintf(want, sizeof(want), "NV %s\n", v->cert[i].kind);
        if (!v->cert[i].der || !memmem(msg, len, want, strlen(want)))
            continue;
        tm_err err = {0};
        ek_cert_path(v->c, v->cert[i].kind, path, sizeof(path));
        if (write_file_replace(path, v->cert[i].der, v->cert[i].len, 0600, &err) < 0)
            log_warn("%s: %s", container_label(v->c), err.msg);
        else
            log_info("%s: the vTPM's %s EK certificate is stored", container_label(v->c), v->cert[i].kind);
    }
    certs_clear(v);
}

static void on_ready(tm_source *src, uint32_t events, void *userdata)
{
    struct vtpm *v = userdata;
    char msg[READY_MAX];
    ssize_t n = read(v->ready_fd, msg, sizeof(msg));
    tm_err err = {0};
    if (n >= 1 && msg[n - 1] == 'E' && v->manufacture && v->ev_fd >= 0) {
        /* The EKs are made: record them, have them certified, then let trustme-vtpm go on. */
        if (record_eks(v, msg, (size_t)n - 1, &err) < 0) {
            close_and_reset(v->ev_fd); /* trustme-vtpm goes on without certificates */
            tm_source_free(v->ready_src);
            v->ready_src = NULL;
            close_and_reset(v->ready_fd);
            finish_start(v, &err);
            return;
        }
        v->manufacture = false;
        request_certs(v);
        /* Measured while it stores the certificates and extends its events. */
        if (measure_eks(v, &err) < 0)
            finish_start(v, &err);
        return;
    }
    tm_source_free(v->ready_src);
    v->ready_src = NULL;
    close_and_reset(v->ready_fd);
    close_and_reset(v->ev_fd);
    if (n < 1 || msg[n - 1] != 'R') {
        tm_err_set(&err, EIO, "the vTPM did not start (trustmed's log has trustme-vtpm's reason)");
        finish_start(v, &err);
        return;
    }
    if (v->manufacture) {
        tm_err_set(&err, EPROTO, "trustme-vtpm did not report the endorsement keys it made");
        finish_start(v, &err);
        return;
    }
    record_certs(v, msg, (size_t)n - 1);
    /* Its EKs were sent to be measured when it got its key (or made them): released once that
     * is done too (on_ek_measured). */
    v->ready_seen = true;
    if (!v->eks_measuring) {
        log_info("%s: vTPM ready (pid %d)", container_label(v->c), v->pid);
        finish_start(v, NULL);
    }
}

struct child_args {
    const char *binary, *dir;
    uid_t uid;
    int fds[6]; /* key, events, ready, state dir, state memfd, state reports: fds 3..8 */
};

static _Noreturn void exec_vtpm(const struct child_args *a, pid_t daemon_pid)
{
    tm_err err = {0};
    child_reset(daemon_pid);
    int fds[6];
    memcpy(fds, a->fds, sizeof(fds));
    if (fd_keep_only(fds, 6) < 0)
        _exit(127);
    for (int i = 0; i < 6; i++)
        if (fcntl(fds[i], F_SETFD, 0) < 0)
            _exit(127);
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null >= 0)
        dup2(null, STDIN_FILENO);
    if (child_drop_privileges(a->uid, a->uid, NULL, 0, &err) < 0) {
        fprintf(stderr, "trustmed: cannot start trustme-vtpm: %s\n", err.msg);
        _exit(127);
    }
    /* It outlives a trustmed that dies (as the container does), so that no TPM command of the
     * guest is cut off; the next trustmed re-adopts it (vtpm_recover). The change of uid above
     * cleared child_reset's parent-death signal already: said here so that nothing re-arms it. */
    prctl(PR_SET_PDEATHSIG, 0);
    /* (A manufacture is said with the key, which comes after the anchor check: deliver.) */
    char *argv[] = {"trustme-vtpm", "--run-dir", (char *)a->dir, "--state-dir", "/proc/self/fd/6", NULL};
    char *envp[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", NULL};
    execve(a->binary, argv, envp);
    fprintf(stderr, "trustmed: cannot execute %s: %s\n", a->binary, strerror(errno));
    _exit(127);
}

/* <run>/vtpm/<uuid>/helper.pid (root's directory): the next trustmed re-adopts a vTPM that
 * outlived this one (vtpm_recover). */
static void pidfile_path(const struct container *c, char *out, size_t size)
{
    char dir[PATH_MAX];
    run_dir(c, dir, sizeof(dir));
    snprintf(out, size, "%s/helper.pid", dir);
}

static void write_pidfile(struct vtpm *v)
{
    char path[PATH_MAX + 16], text[32];
    pidfile_path(v->c, path, sizeof(path));
    int n = snprintf(text, sizeof(text), "%d\n", (int)v->pid);
    tm_err err = {0};
    if (write_file_replace(path, text, (size_t)n, 0600, &err) < 0)
        log_warn("%s: %s (the vTPM is not re-adopted after a restart)", container_label(v->c), err.msg);
}

/* The vTPM's directories: made before the setup process, which binds pub/ into the container
 * while the vTPM is still starting. */
static int make_dirs(const struct container *c, uid_t uid, tm_err *err)
{
    char rdir[PATH_MAX], priv[PATH_MAX + 8], pub[PATH_MAX + 8], sdir[PATH_MAX + 8];
    int r;
    snprintf(rdir, sizeof(rdir), "%s/vtpm", c->d->run_dir);
    /* Search-only: the vTPM's uid reaches its own directories by name. */
    if ((r = mkdir_owned(rdir, 0711, 0, err)) < 0)
        return r;
    run_dir(c, rdir, sizeof(rdir));
    snprintf(priv, sizeof(priv), "%s/priv", rdir);
    snprintf(pub, sizeof(pub), "%s/pub", rdir);
    state_dir(c, sdir, sizeof(sdir));
    if ((r = mkdir_owned(rdir, 0711, 0, err)) < 0 || (r = mkdir_owned(priv, 0700, uid, err)) < 0 ||
        (r = mkdir_owned(pub, 0755, uid, err)) < 0 || (r = mkdir_owned(sdir, 0700, uid, err)) < 0)
        return r;
    /* A state file a migration carried here is root's, and this device's slot (so the vTPM's
     * uid) differs from the source's: it becomes this vTPM's (the file itself, no link followed). */
    {
        _cleanup_close_ int sfd = open(sdir, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        struct stat st;
        if (sfd >= 0 && fstatat(sfd, STATE_FILE, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
            st.st_uid != uid && fchownat(sfd, STATE_FILE, uid, uid, AT_SYMLINK_NOFOLLOW) < 0)
            return tm_err_sys(err, "cannot give the vTPM state %s/%s to its uid", sdir, STATE_FILE);
    }
    return 0;
}

/* A power loss (or a kill) between a commit's anchor and its rename leaves the anchored state in
 * the synced temporary file: when it is the anchored one, it becomes the state file. (The
 * command's response never left: the TPM's own behaviour at a power loss mid-command.) */
static int take_anchored_tmp(struct vtpm *v, const char *sdir, uint8_t **state, size_t *state_len)
{
    _cleanup_free_ uint8_t *tmp = NULL;
    size_t len = 0;
    uint8_t digest[32];
    if (read_state(v->c, STATE_TMP_FILE, &tmp, &len) < 0)
        return -ENOENT;
    tm_sha256(tmp, len, digest);
    if (memcmp(digest, v->anchored, 32) != 0)
        return -ESTALE;
    _cleanup_close_ int dfd = open(sdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (dfd < 0 || renameat(dfd, STATE_TMP_FILE, dfd, STATE_FILE) < 0 || fsync(dfd) < 0)
        return -errno;
    log_info("%s: the vTPM's last commit was anchored before its rename: taken from %s", container_label(v->c),
             STATE_TMP_FILE);
    free(*state);
    *state = steal_ptr(tmp);
    *state_len = len;
    return 0;
}

/* Stop waiting for a trustme-vtpm that has no key yet: its key pipe's EOF ends it before it read
 * any state (it blocks SIGTERM, so a signal would wait for STOP_TIMEOUT_MS). */
static void withdraw(struct vtpm *v)
{
    close_and_reset(v->key_fd);
    close_and_reset(v->state_memfd);
}

/* trustme-vtpm started as the vTPM's uid, before the state is checked: its exec, dynamic linking
 * and library set-up overlap the anchor read. It gets nothing yet but its directories and empty
 * pipes; it blocks on fd 3 until deliver() writes its key, after the check passed. */
static int launch(struct vtpm *v, tm_err *err)
{
    struct container *c = v->c;
    char binary[PATH_MAX], rdir[PATH_MAX], sdir[PATH_MAX + 8];
    uid_t uid = 0;
    int r;
    if ((r = vtpm_uid(c, &uid, err)) < 0)
        return r;
    if ((r = daemon_find_helper("", "trustme-vtpm", "/../vtpm", binary, sizeof(binary), err)) < 0)
        return r;
    if ((r = make_dirs(c, uid, err)) < 0)
        return r;
    run_dir(c, rdir, sizeof(rdir));
    state_dir(c, sdir, sizeof(sdir));
    _cleanup_close_ int memfd = memfd_create("vtpm-state", MFD_CLOEXEC);
    if (memfd < 0)
        return tm_err_sys(err, "memfd_create");
    _cleanup_close_ int state_fd = open(sdir, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    int key[2] = {-1, -1}, ev[2] = {-1, -1}, ready[2] = {-1, -1}, rep[2] = {-1, -1};
    if (state_fd < 0)
        return tm_err_sys(err, "cannot open %s", sdir);
    if (pipe2(key, O_CLOEXEC) < 0 || pipe2(ev, O_CLOEXEC) < 0 || pipe2(ready, O_CLOEXEC) < 0 ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, rep) < 0 || fd_set_nonblock(rep[0], true) < 0) {
        tm_err_sys(err, "pipe");
        goto fail;
    }
    struct child_args a = {
        .binary = binary, .dir = rdir, .uid = uid, .fds = {key[0], ev[0], ready[1], state_fd, memfd, rep[1]}};
    pid_t self = getpid();
    int pidfd = -1;
    struct clone_args ca = {.flags = CLONE_PIDFD, .pidfd = (uint64_t)(uintptr_t)&pidfd, .exit_signal = SIGCHLD};
    pid_t pid = (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
    if (pid == 0)
        exec_vtpm(&a, self);
    if (pid < 0) {
        tm_err_sys(err, "cannot start trustme-vtpm");
        goto fail;
    }
    close_and_reset(key[0]);
    close_and_reset(ev[0]);
    close_and_reset(ready[1]);
    close_and_reset(rep[1]);
    close_report(v);
    v->report_fd = rep[0];
    rep[0] = -1;
    v->report_src = tm_loop_io(c->d->loop, v->report_fd, EPOLLIN, on_report, v);
    withdraw(v);
    v->key_fd = key[1];
    key[1] = -1;
    v->state_memfd = steal_fd(memfd);
    /* fd 4's EOF: after the events and the EK certificates (docs/VTPM.md "EK certificates"). */
    close_and_reset(v->ev_fd);
    v->ev_fd = ev[1];
    ev[1] = -1;
    v->pid = pid;
    v->pidfd = pidfd;
    v->ready_fd = ready[0];
    v->adopted = v->delivered = v->ready_seen = v->eks_measuring = false;
    v->pid_src = tm_loop_io(c->d->loop, pidfd, EPOLLIN, on_vtpm_exit, v);
    v->ready_src = tm_loop_io(c->d->loop, v->ready_fd, EPOLLIN, on_ready, v);
    if (!v->pid_src || !v->ready_src || !v->report_src) {
        syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
        return tm_err_sys(err, "epoll");
    }
    return 0;
fail:
    for (int i = 0; i < 2; i++) {
        close_and_reset(key[i]);
        close_and_reset(ev[i]);
        close_and_reset(ready[i]);
        close_and_reset(rep[i]);
    }
    return -(err->code ? err->code : EIO);
}

/* The launched trustme-vtpm gets what it runs on, once the state passed its check: the bytes
 * checked here (through its memfd), its events, then its key (which lets it go on; with "M" for
 * a manufacture). Its EKs are measured into the physical TPM meanwhile (docs/VTPM.md "Deep
 * attestation"): init is released only when both are done. */
static int deliver(struct vtpm *v, tm_err *err)
{
    struct container *c = v->c;
    char rdir[PATH_MAX], pub[PATH_MAX + 8], sdir[PATH_MAX + 8];
    int r;
    if (v->key_fd < 0 || v->state_memfd < 0)
        return tm_err_set(err, EIO, "the vTPM did not start (trustmed's log has trustme-vtpm's reason)");
    run_dir(c, rdir, sizeof(rdir));
    snprintf(pub, sizeof(pub), "%s/pub", rdir);
    state_dir(c, sdir, sizeof(sdir));
    /* The event log: root's, readable by the guest. */
    char logpath[PATH_MAX + 16];
    snprintf(logpath, sizeof(logpath), "%s/event.log", pub);
    if ((r = write_file_replace(logpath, v->log ? v->log : "", v->log_len, 0644, err)) < 0)
        return r;

    /* The state it gets is the bytes checked here, not the file as trustme-vtpm might find it
     * later: the last state it committed (the anchored one at a start), nothing root put there. */
    _cleanup_free_ uint8_t *state = NULL;
    size_t state_len = 0;
    uint8_t digest[32];
    r = read_state(c, STATE_FILE, &state, &state_len);
    if (r < 0 && r != -ENOENT)
        return tm_err_set(err, -r, "cannot read the vTPM state in %s: %s", sdir, strerror(-r));
    if (r == 0)
        tm_sha256(state, state_len, digest);
    const char *why = state_refused(v, r == 0, digest);
    if (v->have_anchored && (r != 0 || memcmp(digest, v->anchored, 32) != 0) &&
        take_anchored_tmp(v, sdir, &state, &state_len) == 0) {
        r = 0;
        memcpy(digest, v->anchored, 32);
        why = NULL;
    }
    if (why) {
        daemon_audit(c->d, "vtpm.rollback", "fail", c, NULL, "%s", why);
        return tm_err_set(err, ESTALE, "the vTPM refuses to start: %s; `trustme vtpm reset` makes a new one", why);
    }
    /* The anchored state of a vTPM from before trustme-vtpm hosted libtpms (swtpm's NVRAM store):
     * its keys cannot be carried over (swtpm's encryption is its own), so say so here rather than
     * let trustme-vtpm fail on it. */
    if (r == 0 && state_len > 0 && (state_len < STATE_MAGIC_LEN || memcmp(state, STATE_MAGIC, STATE_MAGIC_LEN) != 0)) {
        why = "its state file is in swtpm's format, from before trustme-vtpm hosted libtpms itself";
        daemon_audit(c->d, "vtpm.rollback", "fail", c, NULL, "%s", why);
        return tm_err_set(err, EPROTO, "the vTPM refuses to start: %s; `trustme vtpm reset` makes a new one", why);
    }
    if (r == 0) {
        memcpy(v->known, digest, 32);
        v->have_known = true;
        /* A restart on a state the TPM does not hold (the last commit's anchor came, its rename
         * did not; or a commit went unanchored): anchored now, before a power loss can find it. */
        if (!v->have_anchored || memcmp(v->anchored, digest, 32) != 0)
            anchor_step(v, digest, false);
    }
    v->have_pending = false;
    if (state_len > 0 && write_all(v->state_memfd, state, state_len) < 0)
        return tm_err_sys(err, "cannot pass the vTPM state");
    close_and_reset(v->state_memfd);
    for (size_t i = 0; i < v->nev && v->ev_fd >= 0; i++) {
        char line[96], hex[65];
        tm_hex(v->digest[i], 32, hex);
        int n = snprintf(line, sizeof(line), "%u %s\n", v->pcr[i], hex);
        /* Fits the pipe's buffer (at most VTPM_MAX_EVENTS short lines): written now, read by it. */
        if (write(v->ev_fd, line, (size_t)n) != n)
            return tm_err_sys(err, "cannot pass the vTPM's events");
    }
    uint8_t key[VTPM_KEY_LEN + 1];
    memcpy(key, v->key->data, VTPM_KEY_LEN);
    key[VTPM_KEY_LEN] = 'M';
    size_t key_len = v->manufacture ? VTPM_KEY_LEN + 1 : VTPM_KEY_LEN;
    ssize_t n = write(v->key_fd, key, key_len);
    explicit_bzero(key, sizeof(key));
    if (n != (ssize_t)key_len)
        return tm_err_sys(err, "cannot pass the vTPM key");
    close_and_reset(v->key_fd);
    v->delivered = true;
    /* Only now one the next trustmed must re-adopt: without its key it ends with this trustmed. */
    write_pidfile(v);
    /* A manufacture's EKs are certified and measured once it has made them (on_ready, "E"). */
    if (!v->manufacture) {
        request_certs(v);
        if ((r = measure_eks(v, err)) < 0)
            return r;
    }
    return 0;
}

/* A restart: launched and given its key and state at once. */
static int spawn(struct vtpm *v, tm_err *err)
{
    int r = launch(v, err);
    if (r < 0)
        return r;
    if ((r = deliver(v, err)) < 0)
        withdraw(v);
    return r;
}

static void on_anchored(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
{
    struct vtpm *v = userdata;
    v->anchoring--;
    if (err) {
        log_error("%s: the vTPM state cannot be anchored: %s", container_label(v->c), err->msg);
        daemon_audit(d, "vtpm.anchor", "fail", v->c, NULL, "%s", err->msg);
    }
    daemon_maybe_exit(d);
}

/* trustme-vtpm ended: anchor the last state it reported (the TPM's last write), never the file as
 * found — a copy root put there while it ran, or just before killing it, is not anchored. */
static void anchor_state(struct vtpm *v)
{
    char name[96];
    uint8_t digest[32];
    anchor_name(v->c, name, sizeof(name));
    drain_reports(v);
    close_report(v);
    bool have = state_digest(v->c, digest);
    /* It died between a commit's anchor and its rename: the synced temporary file is the state
     * the TPM holds, and the next spawn takes it. */
    bool in_tmp = v->have_pending && v->have_anchored && memcmp(v->anchored, v->pending, 32) == 0 &&
                  (!have || memcmp(digest, v->pending, 32) != 0);
    if (v->have_pending && ((have && memcmp(digest, v->pending, 32) == 0) || in_tmp)) {
        memcpy(v->known, v->pending, 32); /* it died after the rename, before saying so */
        v->have_known = true;
    }
    v->have_pending = false;
    if (in_tmp)
        return;
    if (!v->have_known) {
        /* No state was ever committed (it died before its TPM wrote one), or a re-adopted vTPM
         * ended before it told us its state: nothing learnt, nothing anchored. */
        if (have)
            log_warn("%s: the vTPM ended before it reported its state: not anchored", container_label(v->c));
        return;
    }
    if (!have || memcmp(digest, v->known, 32) != 0) {
        log_error("%s: the vTPM's state file is not the state it wrote last (replaced while it ran?): the "
                  "state it wrote is anchored, the file is refused",
                  container_label(v->c));
        daemon_audit(v->c->d, "vtpm.rollback", "fail", v->c, NULL,
                     "the state file was replaced under the running vTPM; its last state is anchored");
    }
    /* Its last commit was anchored before its rename: no NV write again. */
    if (v->have_anchored && memcmp(v->anchored, v->known, 32) == 0)
        return;
    memcpy(digest, v->known, 32);
    struct tpmd_anchor_entry e = {.name = name, .value = digest, .len = 32};
    tm_err err = {0};
    if (tpmd_anchor_update(v->c->d, &e, 1, NULL, 0, on_anchored, v, &err) < 0) {
        log_error("%s: the vTPM state cannot be anchored: %s", container_label(v->c), err.msg);
        daemon_audit(v->c->d, "vtpm.anchor", "fail", v->c, NULL, "%s", err.msg);
        return;
    }
    v->anchoring++;
    memcpy(v->anchored, digest, 32);
    v->have_anchored = true;
}

static void check_and_spawn(struct vtpm *v);

static void on_vtpm_exit(tm_source *src, uint32_t events, void *userdata)
{
    struct vtpm *v = userdata;
    struct container *c = v->c;
    int status = -1;
    /* An adopted vTPM is not our child: its pidfd turning readable is all we learn. */
    if (!v->adopted && child_exit_status(v->pidfd, &status) <= 0)
        return;
    v->adopted = false;
    tm_source_free(v->stop_timer);
    v->stop_timer = NULL;
    tm_source_free(v->pid_src);
    v->pid_src = NULL;
    close_and_reset(v->pidfd);
    v->pid = 0;
    char pidfile[PATH_MAX + 16];
    pidfile_path(c, pidfile, sizeof(pidfile));
    unlink(pidfile);
    close_and_reset(v->ev_fd);
    withdraw(v);
    if (v->ready_src) { /* it ended before it was ready */
        v->manufacture = false; /* (what it may have said first is not the answer now) */
        on_ready(NULL, EPOLLIN, v);
    }
    /* One that never had its key read no state and wrote none: nothing to anchor. */
    if (v->delivered)
        anchor_state(v);
    else
        close_report(v);
    if (v->start_queued) {
        v->start_queued = false;
        check_and_spawn(v);
        return;
    }
    bool wanted = !v->stopping && (c->state == CS_RUNNING || c->state == CS_FROZEN || c->state == CS_FREEZING);
    if (!wanted) {
        secret_free(v->key);
        v->key = NULL;
        /* trustmed may be waiting for this vTPM to exit; when its last commit was anchored
         * already, no anchor callback comes to tell it. */
        daemon_maybe_exit(c->d);
        return;
    }
    /* The container still runs: its vTPM comes back with the state of its last command. */
    tm_err err = {0};
    if (++v->restarts > VTPM_MAX_RESTARTS || !v->key || spawn(v, &err) < 0) {
        log_error("%s: the vTPM ended and is not started again%s%s", container_label(c), err.code ? ": " : "", err.msg);
        daemon_audit(c->d, "vtpm.restart", "fail", c, NULL, "%s", err.code ? err.msg : "too many restarts");
        return;
    }
    /* Its exit code or signal number; 0 when unknown (adopted, or reaped elsewhere). */
    int code = status < 0 ? 0 : WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status);
    log_warn("%s: the vTPM ended (status %d); started again", container_label(c), code);
    daemon_audit(c->d, "vtpm.restart", "ok", c, NULL, "status %d", code);
}

static void on_anchor(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *aerr, void *userdata)
{
    struct vtpm *v = userdata;
    struct container *c = v->c;
    tm_err err = {0};
    if (c->state != CS_STARTING) {
        tm_err_set(&err, ECANCELED, "the start was cancelled");
        finish_start(v, &err);
        return;
    }
    if (aerr) {
        tm_err_set(&err, aerr->code, "the vTPM's TPM anchor is unavailable: %s", aerr->msg);
        finish_start(v, &err);
        return;
    }
    char name[96];
    anchor_name(c, name, sizeof(name));
    const ProtobufCBinaryData *anchored = tpmd_anchor_value(resp, name);
    if (anchored && anchored->len != 32) {
        tm_err_set(&err, ESTALE, "the vTPM refuses to start: its TPM anchor is malformed");
        daemon_audit(d, "vtpm.rollback", "fail", c, NULL, "its TPM anchor is malformed");
        finish_start(v, &err);
        return;
    }
    /* The anchored digest is the one state spawn accepts (it checks the bytes it passes on). */
    v->have_known = v->have_anchored = anchored != NULL;
    v->have_pending = false;
    if (anchored) {
        memcpy(v->known, anchored->data, 32);
        memcpy(v->anchored, anchored->data, 32);
    }
    char path[PATH_MAX + 32];
    state_dir(c, path, sizeof(path));
    size_t plen = strlen(path);
    snprintf(path + plen, sizeof(path) - plen, "/" STATE_FILE);
    struct stat st;
    v->stopping = false;
    v->restarts = 0;
    v->manufacture = !anchored && lstat(path, &st) < 0 && errno == ENOENT;
    if (v->manufacture)
        remove_ek_records(c); /* a new vTPM's EKs replace any record of an old one's */
    if (deliver(v, &err) < 0)
        finish_start(v, &err);
}

/* Read the anchor (behind any update a previous run queued: tpmd answers in order). */
static void check_and_spawn(struct vtpm *v)
{
    char name[96];
    anchor_name(v->c, name, sizeof(name));
    const char *names[] = {name};
    tm_err err = {0};
    /* trustme-vtpm runs already (vtpm_set_events) or starts now, and waits for its key: its exec
     * and set-up overlap the anchor read, and it gets the state only when that check passed
     * (deliver). */
    if ((v->key_fd < 0 && launch(v, &err) < 0) || tpmd_anchor_get(v->c->d, names, 1, on_anchor, v, &err) < 0)
        finish_start(v, &err);
}

int vtpm_start(struct container *c, const struct secret *data_key, vtpm_done_fn done, tm_err *err)
{
    int r = vtpm_check(c, err);
    if (r < 0)
        return r;
    if (!data_key)
        return tm_err_set(err, EINVAL, "a vTPM needs the container's data key");
    struct vtpm *v = vtpm_of(c);
    if (!v)
        return tm_err_set(err, ENOMEM, "out of memory");
    /* Measured already; verified against the owner's values before anything is extended. */
    if ((r = vtpm_owner_check_events(c, v->log, err)) < 0) {
        daemon_audit(c->d, "vtpm.refs", "fail", c, NULL, "%s", err->msg);
        return r;
    }
    log_owner(v);
    secret_free(v->key);
    v->key = NULL;
    if ((r = secret_new(VTPM_KEY_LEN, &v->key, err)) < 0)
        return r;
    derive_key(c, data_key, v->key->data);
    uid_t uid = 0;
    if ((r = vtpm_uid(c, &uid, err)) < 0 || (r = make_dirs(c, uid, err)) < 0)
        return r;
    v->done = done;
    v->stopping = false;
    if (v->pid && v->key_fd < 0) { /* the last run's vTPM is still saving: its anchor comes first */
        v->start_queued = true;
        return 0;
    }
    check_and_spawn(v);
    return 0;
}

void vtpm_status(const struct container *c, struct vtpm_status *ret)
{
    *ret = (struct vtpm_status){0};
    if (c->vtpm) {
        ret->running = c->vtpm->pid > 0;
        ret->pid = c->vtpm->pid;
        ret->restarts = c->vtpm->restarts;
    }
    ret->state_exists = state_digest(c, ret->state_sha256);
}

int vtpm_reset(struct container *c, tpmd_reply_fn fn, void *userdata, tm_err *err)
{
    if (c->state != CS_STOPPED || (c->vtpm && c->vtpm->pid))
        return tm_err_set(err, EBUSY, "stop the container first");
    char dir[PATH_MAX + 8], name[96];
    state_dir(c, dir, sizeof(dir));
    int r = rm_rf(dir);
    if (r < 0 && r != -ENOENT) {
        errno = -r;
        return tm_err_sys(err, "cannot remove %s", dir);
    }
    ek_record_path(c, dir, sizeof(dir));
    if (unlink(dir) < 0 && errno != ENOENT)
        return tm_err_sys(err, "cannot remove %s", dir);
    remove_ek_records(c);
    vtpm_owner_forget(c); /* the owner's keys went with the state */
    anchor_name(c, name, sizeof(name));
    struct tpmd_anchor_entry e = {.name = name, .remove = true};
    return tpmd_anchor_update(c->d, &e, 1, NULL, 0, fn, userdata, err);
}

bool vtpm_busy(const struct container *c)
{
    return c->vtpm && (c->vtpm->pid || c->vtpm->anchoring);
}

void vtpm_wiped(struct container *c)
{
    if (!c->cfg->vtpm)
        return;
    tm_err err = {0};
    if (vtpm_reset(c, NULL, NULL, &err) < 0) {
        log_error("%s: its vTPM stays after the wipe: %s", container_label(c), err.msg);
        daemon_audit(c->d, "vtpm.reset", "fail", c, NULL, "at the wipe: %s", err.msg);
        return;
    }
    daemon_audit(c->d, "vtpm.reset", "ok", c, NULL, "the container was wiped");
}

static void on_stop_timeout(tm_source *src, void *userdata)
{
    struct vtpm *v = userdata;
    v->stop_timer = NULL;
    log_warn("%s: the vTPM did not stop within %d s of SIGTERM: killed (the state of its last command is "
             "anchored)",
             container_label(v->c), STOP_TIMEOUT_MS / 1000);
    if (v->pidfd >= 0)
        syscall(SYS_pidfd_send_signal, v->pidfd, SIGKILL, NULL, 0);
}

static void stop_vtpm(struct vtpm *v)
{
    v->stopping = true;
    withdraw(v); /* one still waiting for its key ends at once */
    if (v->pidfd >= 0) {
        syscall(SYS_pidfd_send_signal, v->pidfd, SIGTERM, NULL, 0);
        if (!v->stop_timer)
            v->stop_timer = tm_loop_timer(v->c->d->loop, STOP_TIMEOUT_MS, on_stop_timeout, v);
    } else {
        secret_free(v->key);
        v->key = NULL;
    }
}

static void on_transition(struct container *c, enum cstate old, enum cevent ev)
{
    /* After the container's last process: its vTPM goes, and its state is anchored. */
    if (c->vtpm && c->state == CS_STOPPED)
        stop_vtpm(c->vtpm);
}

static void on_removed(struct container *c)
{
    if (!c->cfg->vtpm)
        return;
    char name[96];
    anchor_name(c, name, sizeof(name));
    struct tpmd_anchor_entry e = {.name = name, .remove = true};
    tm_err err = {0};
    if (tpmd_anchor_update(c->d, &e, 1, NULL, 0, NULL, NULL, &err) < 0)
        log_warn("%s: its vTPM's anchor stays: %s", container_label(c), err.msg);
    char dir[PATH_MAX];
    run_dir(c, dir, sizeof(dir)); /* the state went with the container's data dir */
    rm_rf(dir);
}

static void on_freed(struct container *c)
{
    struct vtpm *v = c->vtpm;
    if (!v)
        return;
    if (v->pidfd >= 0)
        syscall(SYS_pidfd_send_signal, v->pidfd, SIGKILL, NULL, 0);
    tm_source_free(v->pid_src);
    tm_source_free(v->ready_src);
    tm_source_free(v->stop_timer);
    close_and_reset(v->pidfd);
    close_and_reset(v->ready_fd);
    close_and_reset(v->ev_fd);
    withdraw(v);
    close_report(v);
    certs_clear(v);
    tpmd_forget(c->d, v);
    secret_free(v->key);
    free(v->log);
    free(v);
    c->vtpm = NULL;
}

bool vtpm_exit_ready(struct daemon *d)
{
    for (struct container *c = d->containers; c; c = c->next)
        if (c->vtpm && (c->vtpm->pid || c->vtpm->anchoring))
            return false;
    return true;
}

/* The vTPM the last trustmed ran for c, if it still runs: its pid from the pidfile, checked to be
 * trustme-vtpm of this container running as its uid. */
static pid_t find_orphan(const struct container *c, uid_t uid, bool *ret_had_pidfile)
{
    char path[PATH_MAX + 16];
    pidfile_path(c, path, sizeof(path));
    _cleanup_free_ char *text = NULL;
    size_t len = 0;
    tm_err err = {0};
    *ret_had_pidfile = false;
    if (read_file(path, 32, &text, &len, &err) < 0)
        return 0;
    *ret_had_pidfile = true;
    int pid = atoi(text);
    if (pid <= 1)
        return 0;
    char proc[64], cmd[4096];
    snprintf(proc, sizeof(proc), "/proc/%d/cmdline", pid);
    _cleanup_close_ int fd = open(proc, O_RDONLY | O_CLOEXEC);
    ssize_t cmd_len = fd >= 0 ? read(fd, cmd, sizeof(cmd)) : -1; /* (proc files have no size) */
    struct stat st;
    if (cmd_len < 13 || memcmp(cmd, "trustme-vtpm", 13) != 0 || !memmem(cmd, (size_t)cmd_len, c->uuid, strlen(c->uuid)))
        return 0;
    snprintf(proc, sizeof(proc), "/proc/%d", pid);
    if (stat(proc, &st) < 0 || st.st_uid != uid)
        return 0;
    return pid;
}

/* A re-adopted trustme-vtpm's state socket (<run>/vtpm/<uuid>/priv/state.sock): it answers with
 * the state it committed last and reports to us from then on. */
static int connect_reports(struct vtpm *v)
{
    char dir[PATH_MAX + 8];
    run_dir(v->c, dir, sizeof(dir));
    size_t n = strlen(dir);
    snprintf(dir + n, sizeof(dir) - n, "/priv");
    _cleanup_close_ int dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (dfd < 0)
        return -errno;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/" STATE_SOCKET, dfd);
    /* Non-blocking from the start: a blocking connect waits while the listener's backlog (2) is
     * full, and whoever runs as the vTPM's uid (libtpms parsing the guest's commands) can fill it while
     * trustme-vtpm does not accept: trustmed's whole loop would wait. A unix socket connects at
     * once or fails (EAGAIN): then the reports are not reached, as for any other failure here. */
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return -errno;
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || cred.pid != v->pid)
        return -EPERM; /* not the process we adopted */
    close_report(v);
    v->report_fd = fd;
    fd = -1;
    v->report_src = tm_loop_io(v->c->d->loop, v->report_fd, EPOLLIN, on_report, v);
    return v->report_src ? 0 : -ENOMEM;
}

void vtpm_recover(struct container *c)
{
    if (!c->cfg->vtpm)
        return;
    uid_t uid = 0;
    tm_err err = {0};
    if (vtpm_uid(c, &uid, &err) < 0)
        return;
    bool had_pidfile = false;
    pid_t pid = find_orphan(c, uid, &had_pidfile);
    if (!had_pidfile)
        return; /* the last trustmed saw its vTPM end (or it never ran) */
    int pidfd = pid > 0 ? (int)syscall(SYS_pidfd_open, pid, 0) : -1;
    struct vtpm *v = vtpm_of(c);
    if (!v) {
        if (pidfd >= 0)
            close(pidfd);
        return;
    }
    if (pidfd < 0) {
        if (c->state == CS_RUNNING || c->state == CS_FROZEN) {
            /* It ended while no trustmed ran: its state is anchored as its TPM left it, as after a
             * crash; without the PIN there is no key to start it again. */
            log_warn("%s: its vTPM ended while trustmed was not running: the container runs without it until "
                     "its next start",
                     container_label(c));
            daemon_audit(c->d, "vtpm.restart", "fail", c, NULL, "ended while trustmed was not running");
        }
        /* It ended unwatched: what it wrote last died with it, and the file as found is not
         * anchored (it may be root's copy). The next start takes the file only if it is the
         * anchored state (docs/VTPM.md "Known limits of the anchor"). */
        log_warn("%s: its vTPM ended while trustmed was not running: its last state is not anchored",
                 container_label(c));
        daemon_audit(c->d, "vtpm.anchor", "fail", c, NULL,
                     "the vTPM ended while trustmed was not running; its state file is not anchored");
        char path[PATH_MAX + 16];
        pidfile_path(c, path, sizeof(path));
        unlink(path);
        return;
    }
    v->pid = pid;
    v->pidfd = pidfd;
    v->adopted = v->delivered = true;
    /* What it committed comes from it ("C" at once), not from the file, and is anchored then. */
    v->have_known = v->have_pending = v->have_anchored = false;
    v->anchor_first_c = true;
    if (connect_reports(v) < 0)
        log_warn("%s: cannot reach the re-adopted vTPM's state reports: its state is not anchored when it ends",
                 container_label(c));
    v->pid_src = tm_loop_io(c->d->loop, pidfd, EPOLLIN, on_vtpm_exit, v);
    if (!v->pid_src) {
        log_error("%s: cannot watch the vTPM (pid %d)", container_label(c), (int)pid);
        return;
    }
    if (c->state == CS_RUNNING || c->state == CS_FROZEN) {
        log_info("%s: re-adopted its vTPM (pid %d)", container_label(c), (int)pid);
        daemon_audit(c->d, "vtpm.adopt", "ok", c, NULL, "pid %d", (int)pid);
    } else {
        /* Its container is gone: it stops, and its state is anchored when it has. */
        stop_vtpm(v);
    }
}

const struct container_observer vtpm_container_observer = {
    .name = "vtpm",
    .removed = on_removed,
    .freed = on_freed,
    .transition = on_transition,
};
