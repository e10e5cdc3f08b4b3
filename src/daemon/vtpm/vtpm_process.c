/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme-vtpm's process (docs/VTPM.md "Lifetime"): launched as the vTPM's uid without key or
 * state, given them once the state passed its anchor check, watched by pidfd, started again when
 * it dies while its container runs, and stopped (SIGTERM, then SIGKILL) when the container has. */
#include "vtpm_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "child.h"
#include "child_exit.h"
#include "cleanup.h"
#include "fdutil.h"
#include "fileio.h"
#include "hex.h"
#include "log.h"

static void on_ready(tm_source *src, uint32_t events, void *userdata)
{
    struct vtpm *v = userdata;
    char buf[READY_MAX], *msg = buf;
    ssize_t n = read(v->ready_fd, buf, sizeof(buf));
    tm_err err = {0};
    /* "W" first: exec'd and linked, it waits for its key (docs/VTPM.md "The standby"). */
    if (n >= 1 && buf[0] == 'W') {
        v->waiting = true;
        vtpm_standby_settled(v);
        msg++;
        n--;
        if (n == 0 && src)
            return; /* the rest comes once it has its key */
        if (n == 0) { /* it ended (vtpm_on_exit): what it wrote after, or the pipe's EOF */
            msg = buf;
            n = read(v->ready_fd, buf, sizeof(buf));
        }
    }
    if (n >= 1 && msg[n - 1] == 'E' && v->manufacture && v->ev_fd >= 0) {
        /* The EKs are made: record them, have them certified, then let trustme-vtpm go on. */
        if (vtpm_record_eks(v, msg, (size_t)n - 1, &err) < 0) {
            close_and_reset(v->ev_fd); /* trustme-vtpm goes on without certificates */
            tm_source_free(v->ready_src);
            v->ready_src = NULL;
            close_and_reset(v->ready_fd);
            vtpm_finish_start(v, &err);
            return;
        }
        v->manufacture = false;
        vtpm_request_certs(v);
        /* Measured while it stores the certificates and extends its events. */
        if (vtpm_measure_eks(v, &err) < 0)
            vtpm_finish_start(v, &err);
        return;
    }
    tm_source_free(v->ready_src);
    v->ready_src = NULL;
    close_and_reset(v->ready_fd);
    close_and_reset(v->ev_fd);
    if (n < 1 || msg[n - 1] != 'R') {
        tm_err_set(&err, EIO, "the vTPM did not start (trustmed's log has trustme-vtpm's reason)");
        vtpm_finish_start(v, &err);
        return;
    }
    if (v->manufacture) {
        tm_err_set(&err, EPROTO, "trustme-vtpm did not report the endorsement keys it made");
        vtpm_finish_start(v, &err);
        return;
    }
    vtpm_record_certs(v, msg, (size_t)n - 1);
    /* Its EKs were sent to be measured when it got its key (or made them): released once that
     * is done too (on_ek_measured). */
    v->ready_seen = true;
    if (!v->eks_measuring) {
        log_info("%s: vTPM ready (pid %d)", container_label(v->c), v->pid);
        vtpm_finish_start(v, NULL);
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
void vtpm_pidfile_path(const struct container *c, char *out, size_t size)
{
    char dir[PATH_MAX];
    vtpm_run_dir(c, dir, sizeof(dir));
    snprintf(out, size, "%s/helper.pid", dir);
}

int vtpm_start_time(pid_t pid, unsigned long long *ret)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
    if (n <= 0)
        return -ESRCH;
    buf[n] = '\0';
    /* After the command name (which may hold anything, ")" too): field 3 on; starttime is 22. */
    const char *p = strrchr(buf, ')');
    for (int field = 2; p && field < 22; field++)
        p = strchr(p + 1, ' ');
    if (!p || sscanf(p + 1, "%llu", ret) != 1)
        return -EPROTO;
    return 0;
}

static void write_pidfile(struct vtpm *v)
{
    char path[PATH_MAX + 16], text[48];
    vtpm_pidfile_path(v->c, path, sizeof(path));
    unsigned long long started = 0;
    /* With its start time: the next trustmed re-adopts this very process (vtpm_recover.c). */
    int n = vtpm_start_time(v->pid, &started) == 0 ? snprintf(text, sizeof(text), "%d %llu\n", (int)v->pid, started)
                                                   : snprintf(text, sizeof(text), "%d\n", (int)v->pid);
    tm_err err = {0};
    if (write_file_replace(path, text, (size_t)n, 0600, &err) < 0)
        log_warn("%s: %s (the vTPM is not re-adopted after a restart)", container_label(v->c), err.msg);
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

/* The vTPM's directories: made before the setup process, which binds pub/ into the container
 * while the vTPM is still starting. */
int vtpm_make_dirs(const struct container *c, uid_t uid, tm_err *err)
{
    char rdir[PATH_MAX], priv[PATH_MAX + 8], pub[PATH_MAX + 8], sdir[PATH_MAX + 8];
    int r;
    snprintf(rdir, sizeof(rdir), "%s/vtpm", c->d->run_dir);
    /* Search-only: the vTPM's uid reaches its own directories by name. */
    if ((r = mkdir_owned(rdir, 0711, 0, err)) < 0)
        return r;
    vtpm_run_dir(c, rdir, sizeof(rdir));
    snprintf(priv, sizeof(priv), "%s/priv", rdir);
    snprintf(pub, sizeof(pub), "%s/pub", rdir);
    vtpm_state_dir(c, sdir, sizeof(sdir));
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

/* Stop waiting for a trustme-vtpm that has no key yet: its key pipe's EOF ends it before it read
 * any state (it blocks SIGTERM, so a signal would wait for STOP_TIMEOUT_MS). */
void vtpm_withdraw(struct vtpm *v)
{
    close_and_reset(v->key_fd);
    close_and_reset(v->state_memfd);
}

/* trustme-vtpm started as the vTPM's uid, before the state is checked: its exec, dynamic linking
 * and library set-up overlap the anchor read. It gets nothing yet but its directories and empty
 * pipes; it blocks on fd 3 until vtpm_deliver() writes its key, after the check passed. */
int vtpm_launch(struct vtpm *v, tm_err *err)
{
    struct container *c = v->c;
    char binary[PATH_MAX], rdir[PATH_MAX], sdir[PATH_MAX + 8];
    uid_t uid = 0;
    int r;
    if ((r = vtpm_uid(c, &uid, err)) < 0)
        return r;
    if ((r = daemon_find_helper("", "trustme-vtpm", "/../vtpm", binary, sizeof(binary), err)) < 0)
        return r;
    if ((r = vtpm_make_dirs(c, uid, err)) < 0)
        return r;
    vtpm_run_dir(c, rdir, sizeof(rdir));
    vtpm_state_dir(c, sdir, sizeof(sdir));
    _cleanup_close_ int memfd = memfd_create("vtpm-state", MFD_CLOEXEC);
    if (memfd < 0)
        return tm_err_sys(err, "memfd_create");
    _cleanup_close_ int state_fd = open(sdir, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    int key[2] = {-1, -1}, ev[2] = {-1, -1}, ready[2] = {-1, -1}, rep[2] = {-1, -1};
    if (state_fd < 0)
        return tm_err_sys(err, "cannot open %s", sdir);
    /* What it is launched for: a standby is taken only by a start of the same vTPM. */
    struct stat sst, rst;
    if (fstat(state_fd, &sst) < 0 || stat(rdir, &rst) < 0)
        return tm_err_sys(err, "cannot stat %s", sdir);
    v->launched_uid = uid;
    v->launched_dev = sst.st_dev;
    v->launched_state_ino = sst.st_ino;
    v->launched_run_ino = rst.st_ino;
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
    /* A standby's exec and linking take only CPU nobody else wants: the start it waits for may be
     * hours away, and one that comes sooner raises it (vtpm_standby_take). Set here, not in the
     * child: a take before the child got that far must not be undone by it. */
    if (v->standby) {
        struct sched_param sp = {0};
        if (sched_setscheduler(pid, SCHED_IDLE, &sp) < 0)
            log_debug("%s: the standby runs at the ordinary scheduling: %s", container_label(c), strerror(errno));
    }
    close_and_reset(key[0]);
    close_and_reset(ev[0]);
    close_and_reset(ready[1]);
    close_and_reset(rep[1]);
    vtpm_close_report(v);
    v->report_fd = rep[0];
    rep[0] = -1;
    v->report_src = tm_loop_io(c->d->loop, v->report_fd, EPOLLIN, vtpm_on_report, v);
    vtpm_withdraw(v);
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
    v->adopted = v->delivered = v->ready_seen = v->eks_measuring = v->waiting = false;
    v->pid_src = tm_loop_io(c->d->loop, pidfd, EPOLLIN, vtpm_on_exit, v);
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
int vtpm_deliver(struct vtpm *v, tm_err *err)
{
    struct container *c = v->c;
    char rdir[PATH_MAX], pub[PATH_MAX + 8], sdir[PATH_MAX + 8];
    int r;
    if (v->key_fd < 0 || v->state_memfd < 0)
        return tm_err_set(err, EIO, "the vTPM did not start (trustmed's log has trustme-vtpm's reason)");
    vtpm_run_dir(c, rdir, sizeof(rdir));
    snprintf(pub, sizeof(pub), "%s/pub", rdir);
    vtpm_state_dir(c, sdir, sizeof(sdir));
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
    r = vtpm_read_state(c, STATE_FILE, &state, &state_len);
    if (r < 0 && r != -ENOENT)
        return tm_err_set(err, -r, "cannot read the vTPM state in %s: %s", sdir, strerror(-r));
    if (r == 0)
        tm_sha256(state, state_len, digest);
    const char *why = vtpm_state_refused(v, r == 0, digest);
    if (v->have_anchored && (r != 0 || memcmp(digest, v->anchored, 32) != 0) &&
        vtpm_take_anchored_tmp(v, sdir, &state, &state_len) == 0) {
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
            vtpm_anchor_step(v, digest, false);
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
        vtpm_request_certs(v);
        if ((r = vtpm_measure_eks(v, err)) < 0)
            return r;
    }
    return 0;
}

/* A restart: launched and given its key and state at once. */
static int spawn(struct vtpm *v, tm_err *err)
{
    int r = vtpm_launch(v, err);
    if (r < 0)
        return r;
    if ((r = vtpm_deliver(v, err)) < 0)
        vtpm_withdraw(v);
    return r;
}

void vtpm_on_exit(tm_source *src, uint32_t events, void *userdata)
{
    struct vtpm *v = userdata;
    struct container *c = v->c;
    int status = -1;
    /* An adopted vTPM is not our child: its pidfd turning readable is all we learn. */
    if (!v->adopted && child_exit_status(v->pidfd, &status) <= 0)
        return;
    v->adopted = false;
    bool was_standby = v->standby;
    v->standby = v->waiting = false;
    vtpm_standby_settled(v);
    /* Its exit code or signal number; 0 when unknown (adopted, or reaped elsewhere). */
    int code = status < 0 ? 0 : WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status);
    tm_source_free(v->stop_timer);
    v->stop_timer = NULL;
    tm_source_free(v->pid_src);
    v->pid_src = NULL;
    close_and_reset(v->pidfd);
    v->pid = 0;
    char pidfile[PATH_MAX + 16];
    vtpm_pidfile_path(c, pidfile, sizeof(pidfile));
    unlink(pidfile);
    close_and_reset(v->ev_fd);
    vtpm_withdraw(v);
    if (v->ready_src) { /* it ended before it was ready */
        v->manufacture = false; /* (what it may have said first is not the answer now) */
        on_ready(NULL, EPOLLIN, v);
    }
    /* One that never had its key read no state and wrote none: nothing to anchor. */
    if (v->delivered)
        vtpm_anchor_state(v);
    else
        vtpm_close_report(v);
    if (v->start_queued) {
        v->start_queued = false;
        vtpm_check_and_spawn(v);
        return;
    }
    bool wanted = !v->stopping && (c->state == CS_RUNNING || c->state == CS_FROZEN || c->state == CS_FREEZING);
    if (!wanted) {
        secret_free(v->key);
        v->key = NULL;
        /* A run (or a start) ended: the next run's trustme-vtpm is launched now, once the state
         * is anchored. A standby that ended (killed by someone, or it failed) is not replaced
         * until then: the next start launches one as before. */
        if (was_standby)
            log_info("%s: its standby trustme-vtpm ended (status %d): the next start launches one", container_label(c),
                     code);
        else
            vtpm_standby_want(v);
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
    log_warn("%s: the vTPM ended (status %d); started again", container_label(c), code);
    daemon_audit(c->d, "vtpm.restart", "ok", c, NULL, "status %d", code);
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

void vtpm_stop(struct vtpm *v)
{
    v->stopping = true;
    vtpm_withdraw(v); /* one still waiting for its key ends at once */
    if (v->pidfd >= 0) {
        syscall(SYS_pidfd_send_signal, v->pidfd, SIGTERM, NULL, 0);
        if (!v->stop_timer)
            v->stop_timer = tm_loop_timer(v->c->d->loop, STOP_TIMEOUT_MS, on_stop_timeout, v);
    } else {
        secret_free(v->key);
        v->key = NULL;
    }
}
