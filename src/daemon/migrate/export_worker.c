/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "export_worker.h"

#include <errno.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "child.h"
#include "cleanup.h"
#include "fdutil.h"
#include "reaper.h"
#include "syncmsg.h"
#include "test_hooks.h"

#define PROGRESS_MS 1000

struct export_worker {
    struct daemon *d;
    struct bundle_header h; /* as given (parts' src pointers cleared); the digest filled at the end */
    char path[PATH_MAX];
    uint64_t total; /* the parts' sizes, for the progress */
    int pidfd, sync_fd;
    tm_source *pid_src, *sync_src, *timer;
    bool have_digest;
    tm_err err;
    export_worker_progress_fn progress;
    export_worker_done_fn done;
    void *userdata;
};

void export_worker_free(struct export_worker *w)
{
    if (!w)
        return;
    tm_source_free(w->pid_src);
    tm_source_free(w->sync_src);
    tm_source_free(w->timer);
    if (w->pidfd >= 0) {
        syscall(SYS_pidfd_send_signal, w->pidfd, SIGKILL, NULL, 0);
        reaper_take_pidfd(w->d, w->pidfd);
    }
    if (w->sync_fd >= 0)
        close(w->sync_fd);
    free(w);
}

static _Noreturn void worker_main(struct export_worker *w, const char *dir, const uint8_t *key_spki,
                                  size_t key_spki_len, int sync_fd, pid_t daemon_pid)
{
    child_reset(daemon_pid);
    /* Nothing of trustmed's but the sync socket and the parts held in memory (the token's): the
     * data dir's lock or the control socket held by a dying worker would keep a successor
     * trustmed or a client waiting. */
    int fds[1 + BUNDLE_PARTS_MAX];
    size_t n = 0;
    fds[n++] = sync_fd;
    for (size_t i = 0; i < w->h.nparts; i++)
        if (w->h.parts[i].has_fd)
            fds[n++] = w->h.parts[i].fd;
    if (fd_keep_only(fds, n) < 0)
        _exit(1);
    sync_fd = fds[0];
    n = 1;
    for (size_t i = 0; i < w->h.nparts; i++)
        if (w->h.parts[i].has_fd)
            w->h.parts[i].fd = fds[n++];
    tm_err err = {0};
    _cleanup_secret_ struct secret *s = NULL;
    int r = secret_new(BUNDLE_SECRETS_LEN, &s, &err);
    if (r == 0 && (r = tm_sync_recv_exact(sync_fd, TM_SYNC_KEY, s->data, (uint32_t)s->len)) < 0)
        r = tm_err_set(&err, -r, "the export worker did not get the keys to seal");
    if (r < 0)
        child_fail(sync_fd, &err, 1);
    /* The worker alone dies here; trustmed sees it and undoes the export. */
    test_crash_point(w->d->data_dir, "migrate-export-worker");
    /* From here a crash point is trustmed's step (the bundle half written): it dies too. */
    test_crash_also(daemon_pid);
    if (bundle_write(w->path, dir, &w->h, key_spki, key_spki_len, s, &err) < 0)
        child_fail(sync_fd, &err, 1);
    if (tm_sync_send(sync_fd, TM_SYNC_RESULT, w->h.digest, sizeof(w->h.digest), -1) < 0)
        _exit(1);
    _exit(0);
}

static void on_sync(tm_source *src, uint32_t events, void *userdata)
{
    struct export_worker *w = userdata;
    (void)src;
    (void)events;
    tm_sync_msg msg;
    int r;
    while ((r = tm_sync_recv(w->sync_fd, &msg)) > 0) {
        if (msg.fd >= 0)
            close(msg.fd);
        if (msg.type == TM_SYNC_RESULT && msg.len == sizeof(w->h.digest) && msg.payload[64] == '\0' &&
            strlen(msg.payload) == 64) {
            memcpy(w->h.digest, msg.payload, sizeof(w->h.digest));
            w->have_digest = true;
        } else if (msg.type == TM_SYNC_ERROR && msg.len >= 4) {
            int32_t code;
            memcpy(&code, msg.payload, 4);
            tm_err_set(&w->err, code > 0 ? code : EIO, "%s", msg.payload + 4);
        }
    }
    if (r != -EAGAIN) {
        tm_source_free(w->sync_src);
        w->sync_src = NULL;
    }
}

static void on_tick(tm_source *src, void *userdata)
{
    struct export_worker *w = userdata;
    (void)src;
    w->timer = NULL; /* freed by the loop */
    struct stat st;
    if (w->progress && stat(w->path, &st) == 0)
        w->progress((uint64_t)st.st_size, w->total, w->userdata);
    w->timer = tm_loop_timer(w->d->loop, PROGRESS_MS, on_tick, w);
}

static void on_exit_(tm_source *src, uint32_t events, void *userdata)
{
    struct export_worker *w = userdata;
    (void)src;
    (void)events;
    siginfo_t si = {0};
    if (waitid(P_PIDFD, (id_t)w->pidfd, &si, WEXITED | WNOHANG) < 0 || si.si_pid == 0)
        return;
    tm_source_free(w->pid_src);
    w->pid_src = NULL;
    close(w->pidfd);
    w->pidfd = -1;
    if (w->sync_src)
        on_sync(NULL, EPOLLIN, w); /* its last words explain its status */
    bool ok = si.si_code == CLD_EXITED && si.si_status == 0 && !w->err.code && w->have_digest;
    struct stat st;
    /* The last progress line: an export shorter than a tick would show none. */
    if (ok && w->progress && stat(w->path, &st) == 0)
        w->progress((uint64_t)st.st_size, w->total, w->userdata);
    if (!ok && !w->err.code)
        tm_err_set(&w->err, EIO, "the export worker died (%s %d)", si.si_code == CLD_EXITED ? "status" : "signal",
                   si.si_status);
    export_worker_done_fn done = w->done;
    void *userdata_ = w->userdata;
    struct bundle_header *h = malloc(sizeof(*h));
    tm_err e = w->err;
    if (h)
        *h = w->h;
    export_worker_free(w);
    if (ok && !h)
        tm_err_set(&e, ENOMEM, "out of memory");
    done(ok && h ? h : NULL, ok && h ? NULL : &e, userdata_);
    free(h);
}

int export_worker_start(struct daemon *d, const char *path, const char *dir, const struct bundle_header *h,
                        const uint8_t *key_spki, size_t key_spki_len, const struct secret *secrets,
                        export_worker_progress_fn progress, export_worker_done_fn done, void *userdata,
                        struct export_worker **ret, tm_err *err)
{
    if (strlen(path) >= PATH_MAX)
        return tm_err_set(err, ENAMETOOLONG, "the bundle path is too long");
    if (secrets->len != BUNDLE_SECRETS_LEN)
        return tm_err_set(err, EINVAL, "the keys to seal are %zu bytes", secrets->len);
    struct export_worker *w = calloc(1, sizeof(*w));
    if (!w)
        return tm_err_set(err, ENOMEM, "out of memory");
    w->d = d;
    w->h = *h;
    w->pidfd = w->sync_fd = -1;
    w->progress = progress;
    w->done = done;
    w->userdata = userdata;
    snprintf(w->path, sizeof(w->path), "%s", path);
    for (size_t i = 0; i < h->nparts; i++) {
        char p[PATH_MAX];
        struct stat st;
        snprintf(p, sizeof(p), "%s/%s", dir, h->parts[i].name);
        if (stat(h->parts[i].src ? h->parts[i].src : p, &st) == 0)
            w->total += (uint64_t)st.st_size;
    }
    _cleanup_close_pair_ int sp[2] = {-1, -1};
    if (tm_sync_socketpair(sp) < 0) {
        free(w);
        return tm_err_sys(err, "socketpair");
    }
    pid_t self = getpid();
    struct clone_args ca = {.flags = CLONE_PIDFD, .pidfd = (uint64_t)(uintptr_t)&w->pidfd, .exit_signal = SIGCHLD};
    pid_t pid = (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
    if (pid == 0) {
        close(sp[0]);
        worker_main(w, dir, key_spki, key_spki_len, sp[1], self);
    }
    close_and_reset(sp[1]);
    if (pid < 0) {
        w->pidfd = -1;
        free(w);
        return tm_err_sys(err, "cannot fork the export worker");
    }
    for (size_t i = 0; i < w->h.nparts; i++)
        w->h.parts[i].src = NULL; /* the caller's, not to be kept */
    w->sync_fd = steal_fd(sp[0]);
    /* The keys straight from locked memory to the worker's (secret memory is wiped in a fork). */
    int r = tm_sync_send(w->sync_fd, TM_SYNC_KEY, secrets->data, (uint32_t)secrets->len, -1);
    if (r < 0) {
        tm_err_set(err, -r, "cannot hand the keys to the export worker");
        export_worker_free(w);
        return r;
    }
    w->sync_src = tm_loop_io(d->loop, w->sync_fd, EPOLLIN, on_sync, w);
    w->pid_src = tm_loop_io(d->loop, w->pidfd, EPOLLIN, on_exit_, w);
    w->timer = tm_loop_timer(d->loop, PROGRESS_MS, on_tick, w);
    if (!w->sync_src || !w->pid_src || !w->timer) {
        export_worker_free(w);
        return tm_err_set(err, ENOMEM, "cannot watch the export worker");
    }
    *ret = w;
    return 0;
}
