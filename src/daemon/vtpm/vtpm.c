/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustmed's side of the per-container vTPM (docs/VTPM.md): the start, the stop and the calls
 * other folders make.
 *
 * A start with "vtpm": true, once the data key is unwrapped, derives the vTPM's state key from
 * it, reads the state's anchor ("vtpm/<uuid>" in tpmd's anchor table) and refuses a state file
 * whose SHA-256 is not the anchored one (an older copy, another container's, or one the anchor
 * never saw: vtpm_anchor.c). trustme-vtpm runs as the vTPM's own uid from the start's measurement
 * on, waiting (vtpm_process.c): once the state passed that check it gets the checked state, the
 * container's events and then the key through fds, its EKs are measured meanwhile (vtpm_ek.c),
 * and the start goes on once the guest's socket accepts. When trustme-vtpm ends (the container
 * stopped, or it died), the state's new digest is anchored: one NV write per vTPM run. A vTPM
 * that dies while its container runs is started again with the key trustmed keeps (locked
 * memory) for exactly that. */
#include "vtpm_internal.h"
#include "vtpm_owner.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cleanup.h"
#include "crypto.h"
#include "fdutil.h"
#include "fileio.h"
#include "hex.h"
#include "log.h"
#include "measurement.h"

/* The vTPM's uid: one per container, below the daemon's --id-base, so no container's id range
 * (each maps all of its 65536 ids) and no other vTPM shares it. */
int vtpm_uid(const struct container *c, uid_t *ret, tm_err *err)
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

void vtpm_state_dir(const struct container *c, char *out, size_t size)
{
    char dir[PATH_MAX];
    container_data_dir(c, dir, sizeof(dir));
    snprintf(out, size, "%s/vtpm", dir);
}

void vtpm_run_dir(const struct container *c, char *out, size_t size)
{
    snprintf(out, size, "%s/vtpm/%s", c->d->run_dir, c->uuid);
}

void vtpm_public_dir(const struct container *c, char *out, size_t size)
{
    snprintf(out, size, "%s/vtpm/%s/pub", c->d->run_dir, c->uuid);
}

struct vtpm *vtpm_get(struct container *c)
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

void vtpm_set_events(struct container *c, const struct tm_event_item *items, size_t n)
{
    if (!c->cfg->vtpm)
        return;
    struct vtpm *v = vtpm_get(c);
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
    /* Measured: the data key is unwrapped next (the token, the PIN). The standby launched when the
     * last run ended is this start's trustme-vtpm; without one it starts now and waits for its
     * key, so that its exec and set-up overlap that too (vtpm_start delivers). Not while the last
     * run's vTPM still stops (its anchor comes first), nor when this start cannot have a vTPM
     * (vtpm_start says why). */
    tm_err err = {0};
    if (c->state == CS_STARTING)
        vtpm_standby_take(v);
    if (!v->pid && c->state == CS_STARTING && vtpm_check(c, &err) == 0 && vtpm_launch(v, &err) < 0)
        log_debug("%s: trustme-vtpm not started ahead: %s", container_label(c), err.msg);
}

/* The owner record goes into the vTPM's own PCR after the start's events (and after the owner's
 * reference values were checked against those: the record is the owner's own statement), so the
 * vTPM's quote names its owner too. Recording another owner takes effect at the next start. */
static void log_owner(struct vtpm *v)
{
    struct tm_event_item item;
    char name[TM_EVENT_NAME_MAX + 1];
    if (v->owner_logged || !v->log || v->nev >= VTPM_MAX_EVENTS || !vtpm_owner_event(v->c, &item, name))
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

void vtpm_finish_start(struct vtpm *v, const tm_err *err)
{
    if (err)
        vtpm_withdraw(v); /* a trustme-vtpm still waiting for its key ends without it */
    vtpm_done_fn done = v->done;
    v->done = NULL;
    if (done)
        done(v->c, err);
}

static void on_anchor(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *aerr, void *userdata)
{
    struct vtpm *v = userdata;
    struct container *c = v->c;
    tm_err err = {0};
    if (c->state != CS_STARTING) {
        tm_err_set(&err, ECANCELED, "the start was cancelled");
        vtpm_finish_start(v, &err);
        return;
    }
    if (aerr) {
        tm_err_set(&err, aerr->code, "the vTPM's TPM anchor is unavailable: %s", aerr->msg);
        vtpm_finish_start(v, &err);
        return;
    }
    char name[96];
    vtpm_anchor_name(c, name, sizeof(name));
    const ProtobufCBinaryData *anchored = tpmd_anchor_value(resp, name);
    if (anchored && anchored->len != 32) {
        tm_err_set(&err, ESTALE, "the vTPM refuses to start: its TPM anchor is malformed");
        daemon_audit(d, "vtpm.rollback", "fail", c, NULL, "its TPM anchor is malformed");
        vtpm_finish_start(v, &err);
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
    vtpm_state_dir(c, path, sizeof(path));
    size_t plen = strlen(path);
    snprintf(path + plen, sizeof(path) - plen, "/" STATE_FILE);
    struct stat st;
    v->stopping = false;
    v->restarts = 0;
    v->manufacture = !anchored && lstat(path, &st) < 0 && errno == ENOENT;
    if (v->manufacture)
        vtpm_remove_ek_records(c); /* a new vTPM's EKs replace any record of an old one's */
    if (vtpm_deliver(v, &err) < 0)
        vtpm_finish_start(v, &err);
}

/* Read the anchor (behind any update a previous run queued: tpmd answers in order). */
void vtpm_check_and_spawn(struct vtpm *v)
{
    char name[96];
    vtpm_anchor_name(v->c, name, sizeof(name));
    const char *names[] = {name};
    tm_err err = {0};
    /* trustme-vtpm runs already (the standby, or vtpm_set_events) or starts now, and waits for its
     * key: its exec and set-up overlap the anchor read, and it gets the state only when that
     * check passed (deliver). */
    vtpm_standby_take(v);
    if ((v->key_fd < 0 && vtpm_launch(v, &err) < 0) || tpmd_anchor_get(v->c->d, names, 1, on_anchor, v, &err) < 0)
        vtpm_finish_start(v, &err);
}

int vtpm_start(struct container *c, const struct secret *data_key, vtpm_done_fn done, tm_err *err)
{
    int r = vtpm_check(c, err);
    if (r < 0)
        return r;
    if (!data_key)
        return tm_err_set(err, EINVAL, "a vTPM needs the container's data key");
    struct vtpm *v = vtpm_get(c);
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
    if ((r = vtpm_uid(c, &uid, err)) < 0 || (r = vtpm_make_dirs(c, uid, err)) < 0)
        return r;
    v->done = done;
    v->stopping = false;
    if (v->pid && v->key_fd < 0) { /* the last run's vTPM is still saving: its anchor comes first */
        v->start_queued = true;
        return 0;
    }
    vtpm_check_and_spawn(v);
    return 0;
}

void vtpm_status(const struct container *c, struct vtpm_status *ret)
{
    *ret = (struct vtpm_status){0};
    if (c->vtpm) {
        ret->running = c->vtpm->pid > 0 && !c->vtpm->standby;
        ret->pid = ret->running ? c->vtpm->pid : 0;
        ret->restarts = c->vtpm->restarts;
        ret->standby_pid = c->vtpm->standby ? c->vtpm->pid : 0;
        ret->standby_waiting = c->vtpm->standby && c->vtpm->waiting;
    }
    ret->state_exists = vtpm_state_digest(c, ret->state_sha256);
}

int vtpm_reset(struct container *c, tpmd_reply_fn fn, void *userdata, tm_err *err)
{
    if (c->state != CS_STOPPED || (c->vtpm && c->vtpm->pid && !c->vtpm->standby))
        return tm_err_set(err, EBUSY, "stop the container first");
    /* Its standby holds the state directory that goes now: the next one is launched for the new. */
    if (c->vtpm)
        vtpm_standby_drop(c->vtpm);
    char dir[PATH_MAX + 8], name[96];
    vtpm_state_dir(c, dir, sizeof(dir));
    int r = rm_rf(dir);
    if (r < 0 && r != -ENOENT) {
        errno = -r;
        return tm_err_sys(err, "cannot remove %s", dir);
    }
    vtpm_ek_record_path(c, dir, sizeof(dir));
    if (unlink(dir) < 0 && errno != ENOENT)
        return tm_err_sys(err, "cannot remove %s", dir);
    vtpm_remove_ek_records(c);
    vtpm_owner_forget(c); /* the owner's keys went with the state */
    vtpm_anchor_name(c, name, sizeof(name));
    struct tpmd_anchor_entry e = {.name = name, .remove = true};
    if ((r = tpmd_anchor_update(c->d, &e, 1, NULL, 0, fn, userdata, err)) < 0)
        return r;
    if (c->cfg->vtpm) {
        struct vtpm *v = vtpm_get(c);
        if (v)
            vtpm_standby_want(v);
    }
    return 0;
}

/* A standby is not busy: it has nothing to save, and whoever asks drops it. */
bool vtpm_busy(const struct container *c)
{
    return c->vtpm && ((c->vtpm->pid && !c->vtpm->standby) || c->vtpm->anchoring);
}

void vtpm_config_changed(struct container *c)
{
    /* Launched for the old config (whether it has a vTPM at all): a new one for the new config,
     * if it has a vTPM. */
    vtpm_drop_standby(c);
    if (c->cfg->vtpm && c->state == CS_STOPPED) {
        struct vtpm *v = vtpm_get(c);
        if (v)
            vtpm_standby_want(v);
    }
}

void vtpm_drop_standby(struct container *c)
{
    if (c->vtpm && c->vtpm->standby)
        vtpm_standby_drop(c->vtpm);
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

static void on_transition(struct container *c, enum cstate old, enum cevent ev)
{
    /* After the container's last process: its vTPM goes, and its state is anchored. A standby
     * stays: it waits for the next start (a start given up before it took it changes nothing). */
    if (!c->vtpm || c->state != CS_STOPPED || c->vtpm->standby)
        return;
    vtpm_stop(c->vtpm);
    /* A start that failed may have seen its trustme-vtpm end before the container was stopped
     * (too early for a standby then): the next run's is launched now. */
    if (!c->vtpm->pid)
        vtpm_standby_want(c->vtpm);
}

static void on_removed(struct container *c)
{
    vtpm_drop_standby(c);
    if (!c->cfg->vtpm)
        return;
    char name[96];
    vtpm_anchor_name(c, name, sizeof(name));
    struct tpmd_anchor_entry e = {.name = name, .remove = true};
    tm_err err = {0};
    if (tpmd_anchor_update(c->d, &e, 1, NULL, 0, NULL, NULL, &err) < 0)
        log_warn("%s: its vTPM's anchor stays: %s", container_label(c), err.msg);
    char dir[PATH_MAX];
    vtpm_run_dir(c, dir, sizeof(dir)); /* the state went with the container's data dir */
    rm_rf(dir);
}

static void on_freed(struct container *c)
{
    struct vtpm *v = c->vtpm;
    if (!v)
        return;
    vtpm_standby_drop(v); /* (reaped, not left a zombie) */
    vtpm_standby_settled(v);
    if (v->pidfd >= 0)
        syscall(SYS_pidfd_send_signal, v->pidfd, SIGKILL, NULL, 0);
    tm_source_free(v->pid_src);
    tm_source_free(v->ready_src);
    tm_source_free(v->stop_timer);
    close_and_reset(v->pidfd);
    close_and_reset(v->ready_fd);
    close_and_reset(v->ev_fd);
    vtpm_withdraw(v);
    vtpm_close_report(v);
    vtpm_certs_clear(v);
    tpmd_forget(c->d, v);
    secret_free(v->key);
    free(v->log);
    free(v);
    c->vtpm = NULL;
}

bool vtpm_exit_ready(struct daemon *d)
{
    bool ready = true;
    for (struct container *c = d->containers; c; c = c->next) {
        vtpm_drop_standby(c); /* nothing to save: killed, not waited for */
        if (vtpm_busy(c))
            ready = false;
    }
    return ready;
}

const struct container_observer vtpm_container_observer = {
    .name = "vtpm",
    .removed = on_removed,
    .freed = on_freed,
    .transition = on_transition,
};
