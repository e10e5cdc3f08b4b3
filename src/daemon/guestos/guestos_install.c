/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "guestos_install.h"
#include "reply.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/vfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/sched.h>
#include <unistd.h>

#include "cleanup.h"
#include "container_root.h"
#include "crypto.h"
#include "fdutil.h"
#include "fileio.h"
#include "guestos.h"
#include "image_type.h"
#include "guestos_owner.h"
#include "tpmd_client.h"
#include "log.h"
#include "reaper.h"
#include "child.h"
#include "syncmsg.h"
#include "trust.h"

#ifndef FUSE_SUPER_MAGIC
#define FUSE_SUPER_MAGIC 0x65735546
#endif
#define SIG_MAX (16 * 1024)
#define CHAIN_MAX (256 * 1024)
#define COPY_CHUNK (1024 * 1024)
#define PROGRESS_EVERY (32ull << 20)
/* Left free on the data dir's file system by an install (the audit log, volumes, tokens). */
#define STORE_RESERVE (64 << 20)

struct install_op {
    struct daemon *d;
    uint64_t conn_id, req_id;
    char actor[48];
    char label[CONFIG_NAME_MAX + 24]; /* name-version */
    int src_fd;
    char *json, *sig, *chain;
    size_t json_len, sig_len, chain_len;
    struct guestos_config *cfg;
    enum trust_level trust;
    char signer[512];
    char owner[65]; /* the GuestOS Signing CA to record as the name's owner, "" for none */
    struct guestos_anchor anchored; /* the name's TPM-anchored version and owner */
    char anchor_name[GUESTOS_ANCHOR_NAME_MAX + 1];
    char final[PATH_MAX + 128]; /* in the store, waiting for its anchor */
    char staging[PATH_MAX];
    int pidfd, sync_fd;
    tm_source *pid_src, *sync_src;
    tm_err worker_err;
};

static void op_free(struct install_op *op)
{
    struct daemon *d = op->d;
    if (d->install == op)
        d->install = NULL;
    trust_forget(d, op);
    tpmd_forget(d, op);
    tm_source_free(op->pid_src);
    tm_source_free(op->sync_src);
    if (op->pidfd >= 0) {
        syscall(SYS_pidfd_send_signal, op->pidfd, SIGKILL, NULL, 0);
        reaper_take_pidfd(d, op->pidfd);
    }
    if (op->sync_fd >= 0)
        close(op->sync_fd);
    if (op->src_fd >= 0)
        close(op->src_fd);
    if (op->staging[0])
        rm_rf(op->staging);
    if (op->final[0])
        rm_rf(op->final);
    free(op->json);
    free(op->sig);
    free(op->chain);
    guestos_config_free(op->cfg);
    free(op);
}

static void progress(struct install_op *op, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void progress(struct install_op *op, const char *fmt, ...)
{
    if (!reply_alive(op->d, op->conn_id))
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    Trustme__Progress p = TRUSTME__PROGRESS__INIT;
    p.message = msg;
    Trustme__Response resp = TRUSTME__RESPONSE__INIT;
    resp.body_case = TRUSTME__RESPONSE__BODY_PROGRESS;
    resp.progress = &p;
    reply_send(op->d, op->conn_id, op->req_id, &resp);
}

static void fail(struct install_op *op, const tm_err *err)
{
    /* Out of the store before the client hears of the failure. */
    if (op->final[0]) {
        rm_rf(op->final);
        op->final[0] = '\0';
    }
    /* A restricted client could fail installs in a loop: its records are rate-limited. */
    if (reply_install_failure_audit_due(op->d, op->conn_id))
        daemon_audit(op->d, "guestos.install", "fail", NULL, op->actor, "%s: %s", op->label[0] ? op->label : "?",
                     err->msg);
    char msg[sizeof(err->msg)] = "";
    size_t n = strlen(op->d->data_dir), used = 0;
    if (reply_restricted(op->d, op->conn_id) && n > 1) {
        /* A restricted client learns nothing of the host: not where its store is. */
        for (const char *p = err->msg, *hit; *p && used + 1 < sizeof(msg); p = hit + n) {
            hit = strstr(p, op->d->data_dir);
            size_t keep = hit ? (size_t)(hit - p) : strlen(p);
            used += (size_t)snprintf(msg + used, sizeof(msg) - used, "%.*s%s", (int)keep, p, hit ? "<data dir>" : "");
            if (!hit || used >= sizeof(msg))
                break;
        }
    } else {
        snprintf(msg, sizeof(msg), "%s", err->msg);
    }
    reply_error(op->d, op->conn_id, op->req_id, err->code, "GuestOS %s%snot installed: %s", op->label,
                op->label[0] ? " " : "", msg);
    op_free(op);
}

/* ---- reading the source directory ------------------------------------------------------------ */

/* A regular file in the source directory, not reached through a symlink, of at most max bytes.
 * Returns 1 when read, 0 when absent (if optional). */
static int read_member(int dirfd, const char *name, size_t max, bool optional, char **ret, size_t *ret_len, tm_err *err)
{
    _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0 && errno == ENOENT && optional)
        return 0;
    if (fd < 0)
        return errno == ELOOP ? tm_err_set(err, ELOOP, "%s is a symbolic link", name)
                              : tm_err_sys(err, "cannot open %s", name);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return tm_err_sys(err, "cannot stat %s", name);
    if (!S_ISREG(st.st_mode))
        return tm_err_set(err, EINVAL, "%s is not a regular file", name);
    if ((uint64_t)st.st_size > max)
        return tm_err_set(err, EFBIG, "%s is larger than %zu bytes", name, max);
    _cleanup_free_ char *buf = malloc((size_t)st.st_size + 1);
    if (!buf)
        return tm_err_set(err, ENOMEM, "out of memory");
    ssize_t n = read_all(fd, buf, (size_t)st.st_size);
    if (n != st.st_size)
        return tm_err_set(err, EIO, "cannot read %s", name);
    buf[n] = '\0';
    *ret = steal_ptr(buf);
    *ret_len = (size_t)n;
    return 1;
}

static int read_source(struct install_op *op, const char *path, int root_fd, tm_err *err)
{
    /* In a container's root, resolution never leaves it: its errors are about its own files. */
    if (root_fd >= 0) {
        int fd = container_root_openat(root_fd, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
        errno = fd < 0 ? -fd : 0;
        op->src_fd = fd < 0 ? -1 : fd;
    } else {
        op->src_fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (op->src_fd < 0)
        return tm_err_sys(err, "cannot open the directory %s", path);
    /* trustmed reads guestos.json in its own loop: a file system the container serves itself
     * (FUSE) could block it forever. */
    struct statfs sfs;
    if (root_fd >= 0 && (fstatfs(op->src_fd, &sfs) < 0 || sfs.f_type == FUSE_SUPER_MAGIC))
        return tm_err_set(err, EXDEV, "%s is on a FUSE file system; copy the GuestOS elsewhere", path);
    int r = read_member(op->src_fd, "guestos.json", GUESTOS_JSON_MAX, false, &op->json, &op->json_len, err);
    if (r < 0)
        return r;
    int has_sig = read_member(op->src_fd, "guestos.json.sig", SIG_MAX, true, &op->sig, &op->sig_len, err);
    if (has_sig < 0)
        return has_sig;
    int has_chain = read_member(op->src_fd, "guestos.json.chain.pem", CHAIN_MAX, true, &op->chain, &op->chain_len, err);
    if (has_chain < 0)
        return has_chain;
    if (has_sig != has_chain)
        return tm_err_set(err, EINVAL, "%s without %s", has_sig ? "guestos.json.sig" : "guestos.json.chain.pem",
                          has_sig ? "guestos.json.chain.pem" : "guestos.json.sig");
    if ((r = guestos_config_parse(op->json, op->json_len, &op->cfg, err)) < 0)
        return tm_err_prefix(err, "guestos.json");
    snprintf(op->label, sizeof(op->label), "%s-%llu", op->cfg->name, (unsigned long long)op->cfg->version);
    return 0;
}

static int check_fit(struct install_op *op, tm_err *err)
{
    struct daemon *d = op->d;
    if (strcmp(op->cfg->architecture, d->device.architecture) != 0)
        return tm_err_set(err, EINVAL, "it is built for %s, this device is %s", op->cfg->architecture,
                          d->device.architecture);
    struct guestos *have = guestos_find(d, op->cfg->name, 0);
    if (have && have->cfg->version >= op->cfg->version)
        return tm_err_set(err, EPERM,
                          "version %llu is installed; only a greater version can be "
                          "installed (no downgrade)",
                          (unsigned long long)have->cfg->version);
    /* The sizes are what guestos.json declares (signed or, under allow_unsigned, whatever the
     * client wrote): an image that cannot fit is refused before a byte is copied, so that a
     * sparse file of a declared terabyte cannot fill the data dir's file system (and with it
     * the audit log and every container's volume) before its hash is found wrong. */
    uint64_t total = 0;
    for (size_t i = 0; i < op->cfg->nmounts; i++)
        if (op->cfg->mounts[i].image[0])
            total += op->cfg->mounts[i].size > UINT64_MAX / 4 ? UINT64_MAX / 4 : op->cfg->mounts[i].size;
    char store[PATH_MAX + 16];
    snprintf(store, sizeof(store), "%s/guestos", d->data_dir);
    struct statvfs vfs;
    if (statvfs(store, &vfs) == 0 && total + STORE_RESERVE > (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize)
        return tm_err_set(err, ENOSPC,
                          "its images (%llu MiB) do not fit into the GuestOS "
                          "store's free space (%d MiB are kept free)",
                          (unsigned long long)(total >> 20), STORE_RESERVE >> 20);
    return 0;
}

/* ---- the worker: copy and hash the images ----------------------------------------------------- */

static int copy_image(int src_dir, int dst_dir, const char *label, const struct guestos_mount *m, int sync_fd,
                      tm_err *err)
{
    _cleanup_close_ int in = openat(src_dir, m->image, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (in < 0)
        return errno == ELOOP ? tm_err_set(err, ELOOP, "image %s is a symbolic link", m->image)
                              : tm_err_sys(err, "cannot open image %s", m->image);
    struct stat st;
    if (fstat(in, &st) < 0)
        return tm_err_sys(err, "cannot stat image %s", m->image);
    if (!S_ISREG(st.st_mode))
        return tm_err_set(err, EINVAL, "image %s is not a regular file", m->image);
    if ((uint64_t)st.st_size != m->size)
        return tm_err_set(err, EBADMSG, "image %s of %s is %llu bytes, guestos.json says %llu", m->image, label,
                          (unsigned long long)st.st_size, (unsigned long long)m->size);
    _cleanup_close_ int out = openat(dst_dir, m->image, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0)
        return tm_err_sys(err, "cannot create %s in the store", m->image);
    _cleanup_free_ uint8_t *buf = malloc(COPY_CHUNK);
    if (!buf)
        return tm_err_set(err, ENOMEM, "out of memory");
    struct tm_sha256_ctx h;
    tm_sha256_init(&h);
    uint64_t done = 0, next_report = PROGRESS_EVERY;
    for (;;) {
        ssize_t n = read(in, buf, COPY_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return tm_err_sys(err, "cannot read image %s", m->image);
        if (n == 0)
            break;
        tm_sha256_update(&h, buf, (size_t)n);
        if (write_all(out, buf, (size_t)n) < 0)
            return tm_err_sys(err, "cannot write %s into the store", m->image);
        done += (uint64_t)n;
        if (done >= next_report) {
            char msg[256];
            snprintf(msg, sizeof(msg), "%s: %llu of %llu MiB copied and hashed", m->image,
                     (unsigned long long)(done >> 20), (unsigned long long)(m->size >> 20));
            tm_sync_send_text(sync_fd, TM_SYNC_PROGRESS, msg);
            next_report += PROGRESS_EVERY;
        }
    }
    uint8_t digest[32];
    tm_sha256_final(&h, digest);
    if (done != m->size)
        return tm_err_set(err, EBADMSG, "image %s of %s changed size while it was read", m->image, label);
    if (memcmp(digest, m->sha256, 32) != 0) {
        char got[65], want[65];
        tm_hex(digest, 32, got);
        tm_hex(m->sha256, 32, want);
        return tm_err_set(err, EBADMSG, "image %s of %s corrupted: SHA-256 %s, guestos.json says %s", m->image, label,
                          got, want);
    }
    /* Read back from the store's own copy, which no one else can change. */
    int r = image_check_fs_type(out, m, label, err);
    if (r < 0)
        return r;
    if (fsync(out) < 0)
        return tm_err_sys(err, "cannot sync %s", m->image);
    return 0;
}

static int write_member(int dir, const char *name, const void *data, size_t len, tm_err *err)
{
    _cleanup_close_ int fd = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || write_all(fd, data, len) < 0 || fsync(fd) < 0)
        return tm_err_sys(err, "cannot write %s into the store", name);
    return 0;
}

static _Noreturn void worker_main(struct install_op *op, int sync_fd, pid_t daemon_pid)
{
    child_reset(daemon_pid);
    /* Keep nothing of trustmed's but what the copy needs: holding the data dir's lock or the
     * control socket would keep a successor trustmed (or a client) waiting on a dying worker. */
    int fds[] = {sync_fd, op->src_fd};
    if (fd_keep_only(fds, ARRAY_SIZE(fds)) < 0)
        _exit(1);
    sync_fd = fds[0];
    op->src_fd = fds[1];
    tm_err err = {0};
    _cleanup_close_ int dst = open(op->staging, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int r = dst < 0 ? tm_err_sys(&err, "cannot open %s", op->staging) : 0;
    for (size_t i = 0; r == 0 && i < op->cfg->nmounts; i++)
        if (op->cfg->mounts[i].image[0])
            r = copy_image(op->src_fd, dst, op->label, &op->cfg->mounts[i], sync_fd, &err);
    if (r == 0 && (r = write_member(dst, "guestos.json", op->json, op->json_len, &err)) == 0 && op->sig)
        if ((r = write_member(dst, "guestos.json.sig", op->sig, op->sig_len, &err)) == 0)
            r = write_member(dst, "guestos.json.chain.pem", op->chain, op->chain_len, &err);
    if (r < 0)
        child_fail(sync_fd, &err, 1);
    _exit(0);
}

/* ---- after the worker ------------------------------------------------------------------------- */

static void reply_installed(struct install_op *op, struct guestos *g)
{
    if (!reply_alive(op->d, op->conn_id))
        return;
    Trustme__GuestosInfo info = TRUSTME__GUESTOS_INFO__INIT;
    info.name = g->cfg->name;
    info.has_version = true;
    info.version = g->cfg->version;
    info.trust = (char *)trust_level_name(g->trust);
    info.signer = g->signer;
    info.has_size = true;
    info.size = g->size;
    info.architecture = g->cfg->architecture;
    info.has_installed_at = true;
    info.installed_at = g->installed_at;
    info.description = g->cfg->description;
    Trustme__Response resp = TRUSTME__RESPONSE__INIT;
    resp.body_case = TRUSTME__RESPONSE__BODY_GUESTOS;
    resp.guestos = &info;
    reply_send(op->d, op->conn_id, op->req_id, &resp);
}

static void on_anchored(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *aerr, void *userdata)
{
    struct install_op *op = userdata;
    tm_err err = {0};
    if (aerr) {
        /* Fail closed: a version the TPM does not vouch for would let the store be rolled back
         * under it unnoticed. fail() takes it out of the store again. */
        tm_err_set(&err, aerr->code,
                   "the TPM anchor of %s cannot be written (%s): the install is "
                   "undone",
                   op->label, aerr->msg);
        fail(op, &err);
        return;
    }
    char final[sizeof(op->final)];
    memcpy(final, op->final, sizeof(final));
    op->final[0] = '\0';
    if (guestos_store_add(d, final, &err) < 0) {
        rm_rf(final);
        fail(op, &err);
        return;
    }
    struct guestos *g = guestos_find(d, op->cfg->name, op->cfg->version);
    daemon_audit(d, "guestos.install", "ok", NULL, op->actor, "%s, %s%s%s, %llu bytes", op->label,
                 trust_level_name(op->trust), op->signer[0] ? " by " : "", op->signer, (unsigned long long)g->size);
    log_info("GuestOS %s installed (%s)", op->label, trust_level_name(op->trust));
    reply_installed(op, g);
    op_free(op);
}

static void commit(struct install_op *op)
{
    struct daemon *d = op->d;
    tm_err err = {0};
    char final[PATH_MAX + 128];
    snprintf(final, sizeof(final), "%s/guestos/%s", d->data_dir, op->label);
    int r = guestos_write_record(op->staging, op->trust, op->signer, op->owner, &err);
    if (r == 0) {
        _cleanup_close_ int dfd = open(op->staging, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0 || fsync(dfd) < 0)
            r = tm_err_sys(&err, "cannot sync %s", op->staging);
    }
    /* rename(2) refuses to replace a non-empty directory: a concurrent install of the same
     * version cannot be overwritten. */
    if (r == 0 && rename(op->staging, final) < 0)
        r = tm_err_sys(&err, "cannot move the GuestOS into the store");
    if (r < 0) {
        fail(op, &err);
        return;
    }
    op->staging[0] = '\0';
    snprintf(op->final, sizeof(op->final), "%s", final);
    fsync_parent(final);
    /* In the store first, then anchored: a crash in between leaves a store newer than its anchor,
     * which the next container start anchors (measure.c); never an anchor above the store. */
    struct guestos_anchor a = {.version = op->cfg->version};
    memcpy(a.owner, op->owner[0] ? op->owner : op->anchored.owner, sizeof(a.owner));
    uint8_t value[GUESTOS_ANCHOR_VALUE_LEN];
    guestos_anchor_encode(&a, value);
    struct tpmd_anchor_entry set = {.name = op->anchor_name, .value = value, .len = sizeof(value)};
    if (tpmd_anchor_update(d, &set, 1, NULL, 0, on_anchored, op, &err) < 0) {
        tm_err_prefix(&err, "the TPM anchor of %s cannot be written: the install is undone", op->label);
        fail(op, &err);
    }
}

static void on_worker_sync(tm_source *src, uint32_t events, void *userdata)
{
    struct install_op *op = userdata;
    tm_sync_msg msg;
    int r;
    while ((r = tm_sync_recv(op->sync_fd, &msg)) > 0) {
        if (msg.fd >= 0)
            close(msg.fd);
        if (msg.type == TM_SYNC_PROGRESS) {
            progress(op, "%s", msg.payload);
        } else if (msg.type == TM_SYNC_ERROR && msg.len >= 4) {
            int32_t code;
            memcpy(&code, msg.payload, 4);
            tm_err_set(&op->worker_err, code > 0 ? code : EIO, "%s", msg.payload + 4);
        }
    }
    if (r != -EAGAIN) {
        tm_source_free(op->sync_src);
        op->sync_src = NULL;
    }
}

static void on_worker_exit(tm_source *src, uint32_t events, void *userdata)
{
    struct install_op *op = userdata;
    siginfo_t si = {0};
    if (waitid(P_PIDFD, (id_t)op->pidfd, &si, WEXITED | WNOHANG) < 0 || si.si_pid == 0)
        return;
    tm_source_free(op->pid_src);
    op->pid_src = NULL;
    close(op->pidfd);
    op->pidfd = -1;
    if (op->sync_src)
        on_worker_sync(NULL, EPOLLIN, op); /* its last words explain its status */
    if (si.si_code == CLD_EXITED && si.si_status == 0 && !op->worker_err.code) {
        commit(op);
        return;
    }
    if (!op->worker_err.code)
        tm_err_set(&op->worker_err, EIO, "the install worker died (%s %d)",
                   si.si_code == CLD_EXITED ? "status" : "signal", si.si_status);
    tm_err e = op->worker_err;
    fail(op, &e);
}

static int start_worker(struct install_op *op, tm_err *err)
{
    struct daemon *d = op->d;
    uint8_t rnd[6];
    char hex[13];
    if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd))
        return tm_err_sys(err, "getrandom");
    tm_hex(rnd, sizeof(rnd), hex);
    snprintf(op->staging, sizeof(op->staging), "%s/guestos/.staging-%s.%s", d->data_dir, op->label, hex);
    if (mkdir(op->staging, 0700) < 0) {
        int r = tm_err_sys(err, "cannot create %s", op->staging);
        op->staging[0] = '\0';
        return r;
    }
    _cleanup_close_pair_ int sp[2] = {-1, -1};
    if (tm_sync_socketpair(sp) < 0)
        return tm_err_sys(err, "socketpair");
    pid_t self = getpid();
    struct clone_args ca = {.flags = CLONE_PIDFD, .pidfd = (uint64_t)(uintptr_t)&op->pidfd, .exit_signal = SIGCHLD};
    pid_t pid = (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
    if (pid == 0) {
        close(sp[0]);
        worker_main(op, sp[1], self);
    }
    close_and_reset(sp[1]);
    if (pid < 0) {
        op->pidfd = -1;
        return tm_err_sys(err, "cannot fork the install worker");
    }
    op->sync_fd = steal_fd(sp[0]);
    op->sync_src = tm_loop_io(d->loop, op->sync_fd, EPOLLIN, on_worker_sync, op);
    op->pid_src = tm_loop_io(d->loop, op->pidfd, EPOLLIN, on_worker_exit, op);
    if (!op->sync_src || !op->pid_src)
        return tm_err_set(err, ENOMEM, "cannot watch the install worker");
    progress(op, "copying and hashing the images of %s...", op->label);
    return 0;
}

/* A name belongs to the GuestOS Signing CA device.json binds to it, else to the one of its first
 * signed install: another registered vendor cannot take it over with a higher version. */
static int check_owner(struct install_op *op, const struct trust_result *res, tm_err *err)
{
    char owner[65];
    bool bound;
    guestos_owner_want(op->d, op->cfg->name, &op->anchored, owner, &bound);
    if (strlen(res->ca_sha256) != 64)
        return tm_err_set(err, EPROTO,
                          "trustme-scd did not say which GuestOS Signing CA the "
                          "signature passed through");
    if (owner[0] && strcmp(owner, res->ca_sha256) != 0)
        return tm_err_set(err, EPERM,
                          "the name %s belongs to the GuestOS Signing CA with SHA-256 "
                          "%s (%s); this one is signed through the CA with SHA-256 %s (signer %s): "
                          "only device.json trust.guestos_owners hands a name to another vendor",
                          op->cfg->name, owner, bound ? "bound by device.json" : "its first signer", res->ca_sha256,
                          res->signer);
    memcpy(op->owner, res->ca_sha256, 65);
    return 0;
}

static void on_verified(struct daemon *d, const struct trust_result *res, const tm_err *err, void *userdata)
{
    struct install_op *op = userdata;
    if (err) {
        tm_err e = *err;
        tm_err_prefix(&e, "signature rejected");
        fail(op, &e);
        return;
    }
    op->trust = res->trust;
    snprintf(op->signer, sizeof(op->signer), "%s", res->signer);
    tm_err e = {0};
    if (op->trust == TRUST_SIGNED && strcmp(op->cfg->name, d->device.core_guestos) != 0 &&
        check_owner(op, res, &e) < 0) {
        fail(op, &e);
        return;
    }
    progress(op, "signature of %s verified: %s, by %s", op->label, trust_level_name(op->trust), op->signer);
    if (start_worker(op, &e) < 0)
        fail(op, &e);
}

/* The version the TPM anchors for this name: a lower one is a downgrade. The same version is
 * allowed when the store lacks it (check_fit saw to that): installing it again heals a store that
 * was rolled back. */
static int anchor_verdict(struct install_op *op, const Trustme__Tpmd__Response *resp, const tm_err *aerr, tm_err *err)
{
    if (aerr)
        return tm_err_set(err, aerr->code, "the TPM-anchored versions cannot be read: %s", aerr->msg);
    int r = guestos_anchor_parse(tpmd_anchor_value(resp, op->anchor_name), &op->anchored, err);
    if (r < 0)
        return r;
    if (op->anchored.version > op->cfg->version)
        return tm_err_set(err, ESTALE,
                          "version %llu is older than version %llu, which this "
                          "device's TPM anchors as installed: a downgrade is refused",
                          (unsigned long long)op->cfg->version, (unsigned long long)op->anchored.version);
    return 0;
}

/* The TPM's anchor allows this version: verify the signature (or accept it unsigned). */
static void on_anchor(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *aerr, void *userdata)
{
    struct install_op *op = userdata;
    tm_err err = {0};
    int r = anchor_verdict(op, resp, aerr, &err);
    if (r == 0 && !op->sig) {
        if (!d->device.allow_unsigned)
            r = tm_err_set(&err, EPERM,
                           "it is not signed (no guestos.json.sig), and the device "
                           "policy does not allow unsigned GuestOSes");
        op->trust = TRUST_UNSIGNED;
        if (r == 0)
            r = start_worker(op, &err);
    } else if (r == 0) {
        bool core = strcmp(op->cfg->name, d->device.core_guestos) == 0;
        progress(op, "verifying the signature of %s (%s chain)...", op->label,
                 core ? "Software Signing" : "GuestOS Signing");
        r = trust_verify(d, op->json, op->json_len, op->sig, op->sig_len, op->chain, op->chain_len,
                         core ? CHAIN_SOFTWARE : CHAIN_GUESTOS, d->device.allow_locally_signed, on_verified, op, &err);
        if (r < 0)
            tm_err_prefix(&err, "signature rejected");
    }
    if (r < 0)
        fail(op, &err);
}

void guestos_install(struct daemon *d, struct reply_to to, const char *path, int root_fd)
{
    if (!path || !config_clean_abs_path(path) || strcmp(path, "/") == 0) {
        reply_error(d, to.client, to.req_id, EINVAL,
                    "guestos install: give the GuestOS directory as a "
                    "canonical absolute path");
        return;
    }
    if (d->install) {
        reply_error(d, to.client, to.req_id, EBUSY,
                    "another GuestOS install is under way; try again "
                    "when it is done");
        return;
    }
    struct install_op *op = calloc(1, sizeof(*op));
    if (!op) {
        reply_error(d, to.client, to.req_id, ENOMEM, "out of memory");
        return;
    }
    *op = (struct install_op){
        .d = d, .conn_id = to.client, .req_id = to.req_id, .src_fd = -1, .pidfd = -1, .sync_fd = -1};
    snprintf(op->actor, sizeof(op->actor), "%s", to.actor);
    d->install = op;
    tm_err err = {0};
    int r = read_source(op, path, root_fd, &err);
    if (r == 0)
        r = check_fit(op, &err);
    if (r == 0) {
        guestos_anchor_name(op->cfg->name, op->anchor_name);
        const char *names[] = {op->anchor_name};
        r = tpmd_anchor_get(d, names, 1, on_anchor, op, &err);
    }
    if (r < 0)
        fail(op, &err);
}

bool guestos_install_serves(const struct daemon *d, uint64_t conn_id)
{
    return d->install && d->install->conn_id == conn_id;
}

void guestos_install_abort(struct daemon *d)
{
    if (d->install)
        op_free(d->install);
}
