/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "lifecycle.h"
#include "migrate.h"
#include "caps.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/nsfs.h>
#include <linux/sched.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "child_exit.h"
#include "cleanup.h"
#include "lc_state.h"
#include "fscrypt.h"
#include "container.h"
#include "console.h"
#include "log.h"
#include "measure.h"
#include "cgroups.h"
#include "ctlsock.h"
#include "module.h"
#include "net.h"
#include "reaper.h"
#include "reply.h"
#include "core_container.h"
#include "runtime.h"
#include "session.h"
#include "spawn.h"
#include "syncmsg.h"
#include "guestos.h"
#include "test_hooks.h"
#include "tokens.h"
#include "keystore_svc.h"
#include "vtpm.h"

#define FREEZE_POLL_MS 10
#define FREEZE_MAX_POLLS 500

/* Everything a start holds between the request and init's exec. */
struct start_op {
    struct start_ctx ctx;
    struct start_args args;
    int child_stdio[3]; /* init's stdio until the setup process has it */
    struct secret *key; /* the data key, from the token until the kernel has it */
    struct secret *pin; /* the token's PIN while the start waits for the TPM, or NULL */
    size_t prepared; /* modules whose prepare hook succeeded */
    int sync_fd;
    tm_source *sync_src;
    int setup_pidfd;
    tm_source *setup_src;
    bool got_pid;
    bool vtpm_pending; /* its vTPM is starting: init waits before its exec */
    bool vtpm_released; /* init was told its vTPM is ready */
    tm_source *timeout;
};

static void fail_start(struct container *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void signal_init(struct container *c, int sig);

unsigned long long proc_starttime(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    /* The command name may contain spaces and parentheses: count fields after the last ')'. */
    char *p = strrchr(buf, ')');
    if (!p)
        return 0;
    unsigned long long start = 0;
    /* fields 3..21 skipped, 22 = starttime */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu", &start) != 1)
        return 0;
    return start;
}

/* ---- waiting clients ------------------------------------------------------------------------ */

void container_add_waiter(struct container *c, uint64_t conn_id, uint64_t req_id, enum wait_kind kind)
{
    struct waiter *w = calloc(1, sizeof(*w));
    if (!w)
        return;
    *w = (struct waiter){.next = c->lc->waiters, .conn_id = conn_id, .req_id = req_id, .kind = kind};
    c->lc->waiters = w;
}

void container_remove_waiter(struct container *c, uint64_t conn_id, uint64_t req_id)
{
    for (struct waiter **pp = &c->lc->waiters; *pp; pp = &(*pp)->next)
        if ((*pp)->conn_id == conn_id && (*pp)->req_id == req_id) {
            struct waiter *w = *pp;
            *pp = w->next;
            free(w);
            return;
        }
}

bool container_serves(const struct container *c, uint64_t conn_id)
{
    if (!c->lc)
        return false;
    for (const struct session *s = c->lc->sessions; s; s = s->next)
        if (s->conn_id == conn_id)
            return true;
    for (const struct waiter *w = c->lc->waiters; w; w = w->next)
        if (w->conn_id == conn_id)
            return true;
    return false;
}

bool container_adopted(const struct container *c)
{
    return c->lc && c->lc->adopted;
}

/* Answer (and forget) every waiter of the given kind: with the container's info, or an error. */
static void notify(struct container *c, enum wait_kind kind, int code, const char *msg)
{
    for (struct waiter **pp = &c->lc->waiters; *pp;) {
        struct waiter *w = *pp;
        if (w->kind != kind) {
            pp = &w->next;
            continue;
        }
        *pp = w->next;
        if (code)
            reply_error(c->d, w->conn_id, w->req_id, code, "%s", msg);
        else
            reply_container_info(c->d, w->conn_id, w->req_id, c);
        free(w);
    }
}

static void progress(struct container *c, const char *msg)
{
    log_debug("%s: %s", c->cfg->name, msg); /* also the start's phases in the debug log */
    Trustme__Progress p = TRUSTME__PROGRESS__INIT;
    p.message = (char *)msg;
    Trustme__Response resp = TRUSTME__RESPONSE__INIT;
    resp.body_case = TRUSTME__RESPONSE__BODY_PROGRESS;
    resp.progress = &p;
    for (struct waiter *w = c->lc->waiters; w; w = w->next)
        if (w->kind == WAIT_START)
            reply_send(c->d, w->conn_id, w->req_id, &resp);
    struct session *s = session_attached(c);
    if (s)
        reply_send(c->d, s->conn_id, s->req_id, &resp);
}

/* ---- the start operation -------------------------------------------------------------------- */

static void start_op_free(struct container *c)
{
    struct start_op *op = c->lc->start;
    if (!op)
        return;
    tm_source_free(op->sync_src);
    tm_source_free(op->setup_src);
    tm_source_free(op->timeout);
    close_and_reset(op->sync_fd);
    close_and_reset(op->setup_pidfd);
    for (int i = 0; i < 3; i++)
        close_and_reset(op->child_stdio[i]);
    tokens_cancel_key(c);
    measure_forget(c);
    secret_free(op->key);
    secret_free(op->pin);
    free(op->ctx.devices);
    free(op);
    c->lc->start = NULL;
}

/* Drop the start operation once its process and socket are done (init may run on). */
static void start_op_maybe_free(struct container *c)
{
    struct start_op *op = c->lc->start;
    if (op && op->sync_fd < 0 && op->setup_pidfd < 0 && c->state != CS_STARTING)
        start_op_free(c);
}

/* Fire EXITED once no process of the container is left. */
static void maybe_exited(struct container *c)
{
    if (c->pid || (c->lc->start && c->lc->start->setup_pidfd >= 0) || c->state == CS_STOPPED)
        return;
    if (c->state == CS_STARTING && !c->lc->starting_failed)
        fail_start(c, "the setup process ended before init was started");
    else
        container_fire(c, EV_EXITED, NULL, NULL);
}

static void fail_start(struct container *c, const char *fmt, ...)
{
    if (!c->lc->starting_failed) { /* the first reason is the real one */
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->last_error, sizeof(c->last_error), fmt, ap);
        va_end(ap);
        c->lc->starting_failed = true;
    }
    container_fire(c, EV_START_FAILED, NULL, NULL);
}

/* The setup process has mounted the data volume (rootfd): add the key, which is wiped right
 * after, and let the setup go on. */
static void unlock_volume(struct container *c, int rootfd)
{
    struct start_op *op = c->lc->start;
    tm_err err;
    if (rootfd < 0 || !op->key || op->ctx.crypt != DATA_FSCRYPT) {
        fail_start(c, "unexpected data volume from the setup process");
        return;
    }
    int r = fscrypt_unlock(rootfd, op->key, &err);
    secret_free(op->key);
    op->key = NULL;
    if (r < 0)
        fail_start(c, "cannot unlock the data volume: %s", err.msg);
    else if (tm_sync_send(op->sync_fd, TM_SYNC_CONTINUE, NULL, 0, -1) < 0)
        fail_start(c, "cannot talk to the setup process");
}

/* dm-crypt: the setup process installs the key itself (storage_dmcrypt.c); it is sent from
 * locked memory into locked memory and wiped here at once. */
static void send_key(struct container *c)
{
    struct start_op *op = c->lc->start;
    if (!op->key || op->ctx.crypt != DATA_DMCRYPT) {
        fail_start(c, "unexpected key request from the setup process");
        return;
    }
    int r = tm_sync_send(op->sync_fd, TM_SYNC_KEY, op->key->data, (uint32_t)op->key->len, -1);
    secret_free(op->key);
    op->key = NULL;
    if (r < 0)
        fail_start(c, "cannot talk to the setup process");
}

static enum data_crypt data_crypt_of(const struct container *c)
{
    if (!container_encrypted(c) || c->cfg->data_size_mb == 0)
        return DATA_PLAIN;
    return c->d->device.storage_backend == STORAGE_DMCRYPT ? DATA_DMCRYPT : DATA_FSCRYPT;
}

/* init exists and its vTPM is measured and serving: init may exec (spawn.c init_main waits for
 * this before anything of the container runs). The setup process has sent the pid last, after
 * every exchange of its own, so init is the only reader of the socket by now. */
static void release_init(struct container *c)
{
    struct start_op *op = c->lc->start;
    if (!op || !c->cfg->vtpm || !op->got_pid || op->vtpm_pending || op->vtpm_released || op->sync_fd < 0 ||
        c->state != CS_STARTING || c->lc->starting_failed)
        return;
    op->vtpm_released = true;
    if (tm_sync_send(op->sync_fd, TM_SYNC_VTPM_READY, NULL, 0, -1) < 0)
        fail_start(c, "cannot talk to the container's init");
}

/* init's mount namespace, sent by init before its exec (spawn.c send_mntns): kept until init has
 * exited and its client has been answered (cleanup), so that the teardown of the container's
 * mounts (an RCU grace period, the superblocks of its overlay, tmpfs, proc, sysfs and data
 * volume) is no longer part of init's exit, which trustmed and the client wait for. A mount
 * namespace only: anything else sent under the type is dropped. */
static void keep_mntns(struct container *c, int fd)
{
    if (ioctl(fd, NS_GET_NSTYPE) != CLONE_NEWNS) {
        close(fd);
        return;
    }
    close_and_reset(c->lc->mntns_fd);
    c->lc->mntns_fd = fd;
}

static void on_sync(tm_source *src, uint32_t events, void *userdata)
{
    struct container *c = userdata;
    struct start_op *op = c->lc->start;
    bool reset_seen = false;
    for (;;) {
        tm_sync_msg msg;
        int r = tm_sync_recv(op->sync_fd, &msg);
        if (r == -EAGAIN)
            return;
        if (r == -ECONNRESET && !reset_seen) {
            /* The other end closed with a message of ours unread (TM_SYNC_PREPARED, when the setup
             * process failed before it took it): the kernel reports that before the messages
             * still queued here, among them the error that says why. Read those first. */
            reset_seen = true;
            continue;
        }
        if (r <= 0) {
            /* EOF: the setup process is done and init has exec'd (its end was O_CLOEXEC), or
             * one of them died. */
            tm_source_free(op->sync_src);
            op->sync_src = NULL;
            close_and_reset(op->sync_fd);
            if (r < 0 && r != -ECONNRESET)
                fail_start(c, "bad message from the setup process: %s", strerror(-r));
            else if (op->got_pid && !c->lc->starting_failed && c->state == CS_STARTING)
                container_fire(c, EV_STARTED, NULL, NULL);
            if (c->lc->start)
                start_op_maybe_free(c);
            return;
        }
        switch (msg.type) {
        case TM_SYNC_PROGRESS: progress(c, msg.payload); break;
        case TM_SYNC_ERROR: {
            int32_t code;
            if (msg.len < sizeof(code)) {
                fail_start(c, "malformed error report from the setup process");
                break;
            }
            memcpy(&code, msg.payload, sizeof(code));
            /* EBADMSG from the setup process: a GuestOS image failed its hash check. */
            if (code == EBADMSG && op->ctx.guestos)
                daemon_audit(c->d, "guestos.corrupted", "fail", c, NULL, "%s", msg.payload + sizeof(code));
            fail_start(c, "%s", msg.payload + sizeof(code));
            break;
        }
        case TM_SYNC_PID: {
            int32_t pid;
            if (msg.len != sizeof(pid) || op->got_pid) {
                fail_start(c, "unexpected pid report from the setup process");
                break;
            }
            memcpy(&pid, msg.payload, sizeof(pid));
            op->got_pid = true;
            /* init is our child (CLONE_PARENT) and not yet reaped: its pid cannot have been
             * reused, so opening a pidfd from the number is race-free. */
            int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
            tm_err err;
            if (pidfd < 0 || container_watch_init(c, pid, pidfd, &err) < 0) {
                if (pidfd >= 0)
                    close(pidfd);
                kill(pid, SIGKILL);
                reaper_take_pid(c->d, pid);
                fail_start(c, "cannot watch init (pid %d)", pid);
            } else if (c->state != CS_STARTING || c->lc->starting_failed) {
                /* Stopped or failed while the setup process was still at work: this init came
                 * too late to live. */
                signal_init(c, SIGKILL);
            } else
                release_init(c);
            break;
        }
        case TM_SYNC_IMAGE:
            if (op->ctx.guestos && msg.fd >= 0)
                image_cache_record(c->d, op->ctx.guestos, msg.payload, msg.len, steal_fd(msg.fd));
            break;
        case TM_SYNC_IMAGE_MOUNT:
            if (op->ctx.guestos && msg.fd >= 0)
                image_cache_record_mount(c->d, op->ctx.guestos, msg.payload, msg.len, steal_fd(msg.fd));
            break;
        case TM_SYNC_DATAFS: unlock_volume(c, msg.fd); break;
        case TM_SYNC_KEYREQ: send_key(c); break;
        case TM_SYNC_CONTROL:
            if (msg.fd >= 0)
                ctlsock_received(c, steal_fd(msg.fd));
            break;
        case TM_SYNC_KEYSTORE: {
            tm_err kerr;
            if (msg.fd < 0 || !c->cfg->keystore)
                fail_start(c, "unexpected keystore socket from the setup process");
            else if (keystore_svc_serve(c, steal_fd(msg.fd), container_encrypted(c),
                                        op->ctx.guestos ? &(struct keystore_guestos){op->ctx.guestos->cfg->name,
                                                                                     op->ctx.guestos->cfg->version,
                                                                                     op->ctx.guestos->json_sha256}
                                                        : NULL,
                                        &kerr) < 0)
                fail_start(c, "keystore: %s", kerr.msg);
            break;
        }
        case TM_SYNC_NETNS: {
            tm_err nerr;
            if (msg.fd < 0 || net_pin(c, steal_fd(msg.fd), &nerr) < 0)
                fail_start(c, "%s", msg.fd < 0 ? "no network namespace" : nerr.msg);
            else if (tm_sync_send(op->sync_fd, TM_SYNC_CONTINUE, NULL, 0, -1) < 0)
                fail_start(c, "cannot tell the setup process its network is ready"); /* pinned, rules hold */
            break;
        }
        case TM_SYNC_MNTNS:
            if (msg.fd >= 0)
                keep_mntns(c, steal_fd(msg.fd));
            break;
        case TM_SYNC_USERNS: {
            struct stat st;
            if (msg.fd < 0 || c->lc->userns_fd >= 0 || fstat(msg.fd, &st) < 0) {
                fail_start(c, "unexpected user namespace from the setup process");
                break;
            }
            c->lc->userns_fd = steal_fd(msg.fd);
            c->lc->userns_dev = st.st_dev;
            c->lc->userns_ino = st.st_ino;
            break;
        }
        default: fail_start(c, "unexpected message %u from the setup process", msg.type);
        }
        if (msg.fd >= 0)
            close(msg.fd);
        if (!c->lc->start || c->lc->start->sync_fd < 0)
            return;
    }
}

static void on_setup_exit(tm_source *src, uint32_t events, void *userdata)
{
    struct container *c = userdata;
    struct start_op *op = c->lc->start;
    int status;
    if (child_exit_status(op->setup_pidfd, &status) <= 0)
        return;
    tm_source_free(op->setup_src);
    op->setup_src = NULL;
    close_and_reset(op->setup_pidfd);
    /* Read whatever the process said before it went: its error explains its status. */
    if (op->sync_fd >= 0)
        on_sync(NULL, EPOLLIN, c);
    /* Killed by abort_start for a stop request, it did not fail: the stop is no failed start
     * (a failed start is STOPPING already, with its first reason kept). */
    if (status != 0 && c->state == CS_STARTING) {
        char how[64] = "was reaped with the container's processes";
        if (status >= 0)
            describe_wait_status(status, how, sizeof(how), NULL, NULL);
        fail_start(c, "the setup process %s", how);
    }
    start_op_maybe_free(c);
    maybe_exited(c);
}

static void on_start_timeout(tm_source *src, void *userdata)
{
    struct container *c = userdata;
    c->lc->start->timeout = NULL;
    fail_start(c, "start timed out after %d s", START_TIMEOUT_MS / 1000);
}

/* Where init's stdio goes: the attached client, or the console (console.c). */
static int open_stdio(struct container *c, const struct start_args *args, int fds[3], tm_err *err)
{
    fds[0] = fds[1] = fds[2] = -1;
    if (args && args->attach) {
        struct session *s = session_new(c, args->conn_id, args->req_id, true, false, "init");
        if (!s)
            return tm_err_set(err, ENOMEM, "out of memory");
        int r = session_pipes(s, fds, err);
        if (r < 0) {
            session_free(s);
            return r;
        }
        if (args->stdin_credit)
            session_use_credit(s);
        return 0;
    }
    int r = console_open(c, &fds[1], err);
    if (r < 0)
        return r;
    fds[2] = dup(fds[1]);
    return fds[2] < 0 ? tm_err_sys(err, "dup") : 0;
}

static void spawn_setup(struct container *c);
static void on_measured(struct container *c, const tm_err *merr);

static void on_vtpm(struct container *c, const tm_err *err)
{
    if (!c->lc->start || c->state != CS_STARTING || c->lc->starting_failed)
        return;
    if (err) {
        fail_start(c, "%s", err->msg);
        return;
    }
    c->lc->start->vtpm_pending = false;
    release_init(c);
}

static void on_key(struct container *c, struct secret *key, const tm_err *err)
{
    if (!c->lc->start || c->state != CS_STARTING || c->lc->starting_failed) {
        secret_free(key);
        return;
    }
    if (!key) {
        fail_start(c, "%s", err->msg);
        return;
    }
    tm_err kerr;
    if (keystore_svc_token_key(c, key, &kerr) < 0) {
        secret_free(key);
        fail_start(c, "keystore: %s", kerr.msg);
        return;
    }
    c->lc->start->key = key;
    if (c->cfg->vtpm) {
        /* Its vTPM starts (state checked, swtpm up, events extended) while the setup process
         * works; init waits for it before its exec (release_init), so nothing of the container
         * runs before the vTPM is measured. */
        progress(c, "starting its vTPM...");
        tm_err verr = {0};
        c->lc->start->vtpm_pending = true;
        if (vtpm_start(c, key, on_vtpm, &verr) < 0) {
            fail_start(c, "%s", verr.msg);
            return;
        }
        if (!c->lc->start || c->state != CS_STARTING || c->lc->starting_failed)
            return;
    }
    spawn_setup(c);
}

/* The GuestOS this start runs: the newest installed version the config allows, still within
 * the device policy (which may have changed since the install). */
static int resolve_guestos(struct container *c, struct start_ctx *ctx, tm_err *err)
{
    const struct device_config *dev = &c->d->device;
    if (!c->cfg->guestos[0])
        return dev->allow_unsigned ? 0
                                   : tm_err_set(err, EPERM,
                                                "it runs a development rootfs, "
                                                "which the device policy does not allow "
                                                "(device.json policy.allow_unsigned)");
    struct guestos *g = guestos_for(c);
    if (!g && c->cfg->guestos_version)
        return tm_err_set(err, ENOENT,
                          "GuestOS %s version %llu is not installed (trustme guestos "
                          "list)",
                          c->cfg->guestos, (unsigned long long)c->cfg->guestos_version);
    if (!g)
        return tm_err_set(err, ENOENT, "GuestOS %s is not installed (trustme guestos list)", c->cfg->guestos);
    if ((g->trust == TRUST_UNSIGNED && !dev->allow_unsigned) || (g->trust == TRUST_LOCAL && !dev->allow_locally_signed))
        return tm_err_set(err, EPERM,
                          "GuestOS %s-%llu is %s, which the device policy no longer "
                          "allows",
                          g->cfg->name, (unsigned long long)g->cfg->version, trust_level_name(g->trust));
    int r = guestos_apply(c->cfg, g->cfg, err);
    if (r < 0)
        return r;
    ctx->guestos = g;
    c->guestos_version = g->cfg->version;
    return 0;
}

static void begin_start(struct container *c, const struct start_args *args)
{
    struct daemon *d = c->d;
    if (migrate_locked(c)) {
        /* Its keys may already be in a bundle for another device: two running copies never. */
        fail_start(c, "the container is migrating (exported to another device): `trustme migrate commit` or "
                      "`trustme migrate abort` with the target's signed refusal");
        return;
    }
    struct start_op *op = calloc(1, sizeof(*op));
    if (!op) {
        fail_start(c, "out of memory");
        return;
    }
    op->sync_fd = op->setup_pidfd = -1;
    op->child_stdio[0] = op->child_stdio[1] = op->child_stdio[2] = -1;
    op->args = *args;
    op->args.pin = NULL; /* the caller's; used below only */
    c->lc->start = op;
    c->last_error[0] = c->last_exit[0] = '\0';
    c->lc->starting_failed = c->lc->adopted = false;
    c->exit_code = c->lc->wait_status = -1;
    struct start_ctx *ctx = &op->ctx;
    *ctx = (struct start_ctx){.d = d,
                              .c = c,
                              .cfg = c->cfg,
                              .userns_fd = -1,
                              .netns_fd = -1,
                              .sync_fd = -1,
                              .root_fd = -1,
                              .cgroup_fd = -1,
                              .init_pidfd = -1,
                              .stdio = {-1, -1, -1},
                              .uid_base = c->cfg->user_namespace ? c->uid_base : 0,
                              .crypt = data_crypt_of(c)};
    container_run_dir(c, ctx->run_dir, sizeof(ctx->run_dir));
    container_data_dir(c, ctx->data_dir, sizeof(ctx->data_dir));
    snprintf(ctx->root, sizeof(ctx->root), "%s/root", ctx->run_dir);

    tm_err err = {0};
    /* stdio first: an attached client must hear about any failure below. */
    if (mkdir(ctx->run_dir, 0700) < 0 && errno != EEXIST) {
        fail_start(c, "cannot create %s: %s", ctx->run_dir, strerror(errno));
        return;
    }
    if (open_stdio(c, &op->args, op->child_stdio, &err) < 0) {
        fail_start(c, "%s", err.msg);
        return;
    }
    if (resolve_guestos(c, ctx, &err) < 0) {
        fail_start(c, "%s", err.msg);
        return;
    }
    /* The policy may have changed since the create. */
    if (caps_privileged(c->cfg) && !d->device.allow_privileged) {
        char names[768];
        caps_names(caps_privileged(c->cfg), names, sizeof(names));
        fail_start(c,
                   "it keeps %s without a user namespace (a privileged container), which the "
                   "device policy does not allow (device.json policy.allow_privileged)",
                   names);
        return;
    }
    if (d->device.require_vtpm && !c->cfg->vtpm) {
        fail_start(c, "it has no vTPM, which the device policy requires (device.json policy.require_vtpm)");
        return;
    }
    if (c->cfg->vtpm && vtpm_check(c, &err) < 0) {
        fail_start(c, "%s", err.msg);
        return;
    }
    /* The PIN waits in locked memory while tpmd measures (a few ms). */
    if (args->pin && args->pin->len > 0) {
        if (secret_new(args->pin->len, &op->pin, &err) < 0) {
            fail_start(c, "%s", err.msg);
            return;
        }
        memcpy(op->pin->data, args->pin->data, args->pin->len);
    }
    if (measure_start(c, ctx->guestos, on_measured, &err) < 0)
        fail_start(c, "%s", err.msg);
}

/* Measured, the GuestOS version is not a rollback and the TPM anchors no migration lock (the
 * lock file was checked in begin_start, but root may have removed it; measure.c checks the TPM's
 * word in the same round trip): the data key, then set up. */
static void on_measured(struct container *c, const tm_err *merr)
{
    struct start_op *op = c->lc->start;
    if (!op || c->state != CS_STARTING || c->lc->starting_failed)
        return;
    if (merr) {
        fail_start(c, "%s", merr->msg);
        return;
    }
    if (op->ctx.crypt == DATA_PLAIN) {
        spawn_setup(c);
        return;
    }
    /* The token's answer (a KDF, a smartcard) takes a while: the start goes on in on_key. */
    progress(c, "unlocking the data key...");
    tm_err err = {0};
    ProtobufCBinaryData pin = {.len = op->pin ? op->pin->len : 0, .data = op->pin ? op->pin->data : NULL};
    int r = tokens_get_key(c, op->pin ? &pin : NULL, on_key, &err);
    secret_free(op->pin);
    op->pin = NULL;
    if (r < 0)
        fail_start(c, "%s", err.msg);
}

/* Prepare the modules and fork the setup process, which does the rest off the event loop. */
static void spawn_setup(struct container *c)
{
    struct daemon *d = c->d;
    struct start_op *op = c->lc->start;
    struct start_ctx *ctx = &op->ctx;
    tm_err err = {0};
    _cleanup_close_pair_ int sp[2] = {-1, -1};
    /* The setup process trusts a verified image only if no change was seen on it until now. */
    if (ctx->guestos)
        image_cache_refresh(d);
    /* trustmed's own fds: the setup process inherits them, trustmed keeps them. */
    image_cache_kept_mounts(ctx->guestos, ctx->image_mnt, ARRAY_SIZE(ctx->image_mnt), &ctx->nimage_mnt);
    /* The hooks of prepare_after_fork modules run below, after the fork; their cleanup tolerates
     * a start that fails before. */
    if (modules_run(PHASE_PREPARE, ctx, &op->prepared, &err) < 0) {
        fail_start(c, "%s", err.msg);
        return;
    }
    if (tm_sync_socketpair(sp) < 0) {
        tm_err_sys(&err, "socketpair");
        fail_start(c, "%s", err.msg);
        return;
    }
    ctx->sync_fd = sp[1];
    memcpy(ctx->stdio, op->child_stdio, sizeof(ctx->stdio));
    pid_t self = getpid();
    struct clone_args ca = {
        .flags = CLONE_PIDFD, .pidfd = (uint64_t)(uintptr_t)&op->setup_pidfd, .exit_signal = SIGCHLD};
    pid_t pid = (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
    if (pid == 0) {
        close(sp[0]);
        setup_main(ctx, self);
    }
    if (pid < 0) {
        tm_err_sys(&err, "cannot fork the setup process");
        ctx->sync_fd = -1; /* closed with sp */
        fail_start(c, "%s", err.msg);
        return;
    }
    close_and_reset(sp[1]);
    ctx->sync_fd = -1;
    for (int i = 0; i < 3; i++) {
        close_and_reset(op->child_stdio[i]);
        ctx->stdio[i] = -1;
    }
    op->sync_fd = steal_fd(sp[0]);
    op->sync_src = tm_loop_io(d->loop, op->sync_fd, EPOLLIN, on_sync, c);
    op->setup_src = tm_loop_io(d->loop, op->setup_pidfd, EPOLLIN, on_setup_exit, c);
    op->timeout = tm_loop_timer(d->loop, START_TIMEOUT_MS, on_start_timeout, c);
    if (!op->sync_src || !op->setup_src || !op->timeout) {
        fail_start(c, "cannot watch the setup process");
        return;
    }
    log_info("%s: starting", container_label(c));
    /* The cgroups are made now, on this core, while the setup process makes its namespaces and
     * mounts on the other; it joins them only after TM_SYNC_PREPARED (module.h
     * prepare_after_fork). A setup process that has already ended says why itself (on_sync). */
    if (modules_run(PHASE_PREPARE_LATE, ctx, NULL, &err) < 0) {
        fail_start(c, "%s", err.msg);
        return;
    }
    int r = tm_sync_send(op->sync_fd, TM_SYNC_PREPARED, NULL, 0, -1);
    if (r < 0 && r != -EPIPE && r != -ECONNRESET)
        fail_start(c, "cannot talk to the setup process: %s", strerror(-r));
}

/* ---- init ------------------------------------------------------------------------------------ */

static void on_init_exit(tm_source *src, uint32_t events, void *userdata)
{
    struct container *c = userdata;
    siginfo_t si = {0};
    int status = -1;
    if (waitid(P_PIDFD, (id_t)c->pidfd, &si, WEXITED | WNOHANG) == 0) {
        if (si.si_pid == 0)
            return; /* spurious wake-up */
        status = si.si_code == CLD_EXITED ? W_EXITCODE(si.si_status, 0) : si.si_status & 0x7f;
    } else if (errno != ECHILD) {
        return;
    } /* ECHILD: an adopted init is not our child; how it ended is not ours to know. */
    /* Messages still queued from init (an exec error, or the EOF of a successful exec) must be
     * seen before its exit, or a failed exec would look like a container that ran and ended. */
    if (c->lc->start && c->lc->start->sync_fd >= 0)
        on_sync(NULL, EPOLLIN, c);
    tm_source_free(c->lc->pidfd_src);
    c->lc->pidfd_src = NULL;
    close_and_reset(c->pidfd);
    c->pid = 0;
    if (status >= 0) {
        describe_wait_status(status, c->last_exit, sizeof(c->last_exit), &c->exit_code, NULL);
    } else {
        snprintf(c->last_exit, sizeof(c->last_exit), "ended (status unknown: adopted)");
        c->exit_code = -1;
    }
    c->lc->wait_status = status;
    maybe_exited(c);
}

int container_watch_init(struct container *c, pid_t pid, int pidfd, tm_err *err)
{
    c->lc->pidfd_src = tm_loop_io(c->d->loop, pidfd, EPOLLIN, on_init_exit, c);
    if (!c->lc->pidfd_src)
        return tm_err_sys(err, "epoll");
    c->pid = pid;
    c->pidfd = pidfd;
    c->lc->starttime = proc_starttime(pid);
    return 0;
}

static void signal_init(struct container *c, int sig)
{
    if (c->pidfd >= 0 && syscall(SYS_pidfd_send_signal, c->pidfd, sig, NULL, 0) < 0 && errno != ESRCH)
        log_warn("%s: cannot signal init: %m", container_label(c));
}

/* ---- actions ------------------------------------------------------------------------------ */

static void on_started(struct container *c)
{
    tm_source_free(c->lc->start->timeout);
    c->lc->start->timeout = NULL;
    c->started_at = (uint64_t)time(NULL);
    tm_err err;
    if (runtime_save(c, &err) < 0)
        log_warn("%s: %s (it will not be re-adopted after a restart)", container_label(c), err.msg);
    log_info("%s: running, init pid %d", container_label(c), c->pid);
    daemon_audit(c->d, "container.start", "ok", c, NULL, "init %s, pid %d", c->cfg->init, c->pid);
    if (caps_privileged(c->cfg)) {
        char names[768];
        caps_names(caps_privileged(c->cfg), names, sizeof(names));
        daemon_audit(c->d, "container.privileged", "ok", c, NULL, "running as host root, keeping %s", names);
    }
    notify(c, WAIT_START, 0, NULL);
    start_op_maybe_free(c);
}

static void abort_start(struct container *c)
{
    if (c->pid)
        signal_init(c, SIGKILL);
    if (c->lc->start && c->lc->start->setup_pidfd >= 0)
        syscall(SYS_pidfd_send_signal, c->lc->start->setup_pidfd, SIGKILL, NULL, 0);
    /* An init whose pid has not reached us yet is found through the cgroups. */
    cgroups_kill(c->d, c->uuid);
    maybe_exited(c);
}

static void on_kill_timer(tm_source *src, void *userdata)
{
    struct container *c = userdata;
    c->lc->timer = NULL;
    log_info("%s: init did not stop in time, sending SIGKILL", container_label(c));
    signal_init(c, SIGKILL);
}

static void do_stop(struct container *c, enum cstate old, const struct stop_args *args)
{
    bool frozen = old == CS_FROZEN || old == CS_FREEZING;
    tm_source_free(c->lc->timer);
    c->lc->timer = NULL;
    if (frozen || !args || args->kill || args->timeout_s == 0) {
        /* A frozen init cannot handle SIGTERM; SIGKILL is delivered as soon as it is thawed. */
        signal_init(c, SIGKILL);
        if (frozen)
            cgroups_set_frozen(c, false, NULL);
        return;
    }
    signal_init(c, SIGTERM);
    c->lc->timer = tm_loop_timer(c->d->loop, (uint64_t)args->timeout_s * 1000, on_kill_timer, c);
}

/* Answer the attached client of a container whose init ended: its exit is audited first (the
 * record synced before anyone hears of the exit), then runtime.json goes (a trustmed killed after
 * the record and before the unlink audits the stop once more at its restart, as "ended while
 * trustmed was not running"; one killed after the unlink finds nothing to record). Nothing the
 * client is told depends on the cleanup that follows, and trustmed reads no request before that
 * cleanup is done: a client's next request sees the container stopped and cleaned up. */
static void report_exit(struct container *c)
{
    struct daemon *d = c->d;
    log_info("%s: stopped (init %s)", container_label(c), c->last_exit);
    daemon_audit(d, "container.stop", "ok", c, NULL, "init %s", c->last_exit);
    runtime_remove(c);
    struct session *s = session_attached(c);
    if (s)
        session_finish(s, c->lc->wait_status >= 0 ? c->lc->wait_status : W_EXITCODE(255, 0));
    test_crash_point(d->data_dir, "container-exit-answered");
}

static void cleanup(struct container *c)
{
    struct daemon *d = c->d;
    bool failed = c->lc->starting_failed;
    if (!failed)
        report_exit(c);
    /* The container's mounts go now, with the last reference to its mount namespace (keep_mntns),
     * and before the modules' cleanup: a dm-crypt mapping can only be removed once its file
     * system is unmounted. */
    close_and_reset(c->lc->mntns_fd);
    size_t n = c->lc->start ? c->lc->start->prepared : modules_count();
    modules_cleanup(c, n);
    start_op_free(c);
    console_close(c);
    close_and_reset(c->lc->userns_fd);
    if (failed)
        runtime_remove(c);
    tm_source_free(c->lc->timer);
    c->lc->timer = NULL;
    c->lc->adopted = false;
    if (failed) {
        struct session *s = session_attached(c);
        c->last_exit[0] = '\0'; /* init never ran the configured program */
        log_warn("%s: start failed: %s", container_label(c), c->last_error);
        daemon_audit(d, "container.start", "fail", c, NULL, "%s", c->last_error);
        notify(c, WAIT_START, EIO, c->last_error);
        if (s)
            session_fail(s, EIO, c->last_error);
    } else {
        notify(c, WAIT_START, 0, NULL); /* init ended before the start was reported */
    }
    notify(c, WAIT_STOP, 0, NULL);
    notify(c, WAIT_FREEZE, EIO, "the container stopped");
    notify(c, WAIT_UNFREEZE, EIO, "the container stopped");
    tm_err err;
    if (container_save_state(c, &err) < 0)
        log_error("%s: %s", container_label(c), err.msg);
    daemon_maybe_exit(d);
}

static void on_freeze_poll(tm_source *src, void *userdata)
{
    struct container *c = userdata;
    c->lc->timer = NULL;
    int r = cgroups_is_frozen(c);
    if (r > 0) {
        container_fire(c, EV_FROZEN, NULL, NULL);
    } else if (r < 0 || ++c->lc->freeze_polls >= FREEZE_MAX_POLLS) {
        snprintf(c->last_error, sizeof(c->last_error), "freezing did not complete%s",
                 r < 0 ? ": cannot read the freezer state" : " within 5 s");
        container_fire(c, EV_FREEZE_FAILED, NULL, NULL);
    } else {
        c->lc->timer = tm_loop_timer(c->d->loop, FREEZE_POLL_MS, on_freeze_poll, c);
    }
}

static void do_freeze(struct container *c)
{
    tm_err err;
    c->lc->freeze_polls = 0;
    if (cgroups_set_frozen(c, true, &err) < 0) {
        snprintf(c->last_error, sizeof(c->last_error), "%s", err.msg);
        container_fire(c, EV_FREEZE_FAILED, NULL, NULL);
        return;
    }
    c->lc->timer = tm_loop_timer(c->d->loop, FREEZE_POLL_MS, on_freeze_poll, c);
}

static void do_thaw(struct container *c, enum cstate old)
{
    tm_source_free(c->lc->timer);
    c->lc->timer = NULL;
    tm_err err;
    int r = cgroups_set_frozen(c, false, &err);
    if (old == CS_FREEZING) { /* freezing failed */
        daemon_audit(c->d, "container.freeze", "fail", c, NULL, "%s", c->last_error);
        notify(c, WAIT_FREEZE, EIO, c->last_error);
        return;
    }
    daemon_audit(c->d, "container.unfreeze", r < 0 ? "fail" : "ok", c, NULL, "%s", r < 0 ? err.msg : "");
    notify(c, WAIT_UNFREEZE, r < 0 ? EIO : 0, r < 0 ? err.msg : NULL);
}

int container_fire(struct container *c, enum cevent ev, const void *arg, tm_err *err)
{
    assert(c->lc); /* every container in the store has its run state (lc_created) */
    enum cstate old = c->state;
    struct transition t = state_next(old, ev);
    if (t.action == ACT_INVALID) {
        char buf[128];
        return tm_err_set(err, EBUSY, "%s", state_refusal(old, ev, buf, sizeof(buf)));
    }
    c->state = t.next;
    log_debug("%s: %s --%s--> %s", container_label(c), state_name(old), event_name(ev), state_name(t.next));
    switch (t.action) {
    case ACT_INVALID:
    case ACT_NONE: break;
    case ACT_BEGIN_START: begin_start(c, arg); break;
    case ACT_STARTED: on_started(c); break;
    case ACT_ABORT_START: abort_start(c); break;
    case ACT_STOP: do_stop(c, old, arg); break;
    case ACT_CLEANUP: cleanup(c); break;
    case ACT_FREEZE: do_freeze(c); break;
    case ACT_FROZEN:
        daemon_audit(c->d, "container.freeze", "ok", c, NULL, "%s", "");
        notify(c, WAIT_FREEZE, 0, NULL);
        break;
    case ACT_THAW: do_thaw(c, old); break;
    }
    for (size_t i = 0; i < c->d->nobservers; i++)
        if (c->d->observers[i]->transition)
            c->d->observers[i]->transition(c, old, ev);
    return 0;
}

/* Every container in the store has its lc_state from its create or load on. */
static int lc_created(struct container *c, tm_err *err)
{
    assert(!c->lc);
    c->lc = calloc(1, sizeof(*c->lc));
    if (!c->lc)
        return tm_err_set(err, ENOMEM, "out of memory");
    c->lc->wait_status = -1;
    c->lc->userns_fd = c->lc->mntns_fd = -1;
    return 0;
}

static void lc_freed(struct container *c)
{
    console_close(c);
    if (!c->lc) /* a create that failed before its observers ran */
        return;
    close_and_reset(c->lc->userns_fd);
    close_and_reset(c->lc->mntns_fd);
    for (struct waiter *w = c->lc->waiters, *next; w; w = next) {
        next = w->next;
        free(w);
    }
    free(c->lc);
    c->lc = NULL;
}

const struct container_observer lifecycle_container_observer = {
    .name = "lifecycle",
    .created = lc_created,
    .loaded = lc_created,
    .removed = measure_config_anchor_drop,
    .freed = lc_freed,
    .transition = core_on_transition,
};
