/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A restarted trustmed re-adopts the vTPMs the last one left running (docs/VTPM.md "Crashes"):
 * found by helper.pid, checked, watched by pidfd, and its state reports reached again. */
#include "vtpm_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "cleanup.h"
#include "fdutil.h"
#include "fileio.h"
#include "log.h"

/* The vTPM the last trustmed ran for c, if it still runs: its pid from the pidfile, checked to be
 * the very process (its start time, in the pidfile too) and to run as the vTPM's uid. Not by its
 * command line: trustme-vtpm can rewrite that in its own memory (code of the guest's making, run
 * through a flaw in libtpms, could so keep it out of this trustmed's watch: docs/SECURITY.md, review
 * rev7). A pidfile of an older trustmed holds the pid alone: then by its command line, as before. */
static pid_t find_orphan(const struct container *c, uid_t uid, bool *ret_had_pidfile)
{
    char path[PATH_MAX + 16];
    vtpm_pidfile_path(c, path, sizeof(path));
    _cleanup_free_ char *text = NULL;
    size_t len = 0;
    tm_err err = {0};
    *ret_had_pidfile = false;
    if (read_file(path, 32, &text, &len, &err) < 0)
        return 0;
    *ret_had_pidfile = true;
    int pid = 0;
    unsigned long long started = 0, now_started = 0;
    int fields = sscanf(text, "%d %llu", &pid, &started);
    if (fields < 1 || pid <= 1)
        return 0;
    char proc[64], cmd[4096];
    struct stat st;
    if (fields == 2) {
        snprintf(proc, sizeof(proc), "/proc/%d", pid);
        if (vtpm_start_time(pid, &now_started) < 0 || now_started != started || stat(proc, &st) < 0 || st.st_uid != uid)
            return 0;
        return pid;
    }
    snprintf(proc, sizeof(proc), "/proc/%d/cmdline", pid);
    _cleanup_close_ int fd = open(proc, O_RDONLY | O_CLOEXEC);
    ssize_t cmd_len = fd >= 0 ? read(fd, cmd, sizeof(cmd)) : -1; /* (proc files have no size) */
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
    vtpm_run_dir(v->c, dir, sizeof(dir));
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
    vtpm_close_report(v);
    v->report_fd = fd;
    fd = -1;
    v->report_src = tm_loop_io(v->c->d->loop, v->report_fd, EPOLLIN, vtpm_on_report, v);
    return v->report_src ? 0 : -ENOMEM;
}

static void readopt(struct container *c)
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
    struct vtpm *v = vtpm_get(c);
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
        vtpm_pidfile_path(c, path, sizeof(path));
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
    v->pid_src = tm_loop_io(c->d->loop, pidfd, EPOLLIN, vtpm_on_exit, v);
    if (!v->pid_src) {
        log_error("%s: cannot watch the vTPM (pid %d)", container_label(c), (int)pid);
        return;
    }
    if (c->state == CS_RUNNING || c->state == CS_FROZEN) {
        log_info("%s: re-adopted its vTPM (pid %d)", container_label(c), (int)pid);
        daemon_audit(c->d, "vtpm.adopt", "ok", c, NULL, "pid %d", (int)pid);
    } else {
        /* Its container is gone: it stops, and its state is anchored when it has. */
        vtpm_stop(v);
    }
}

void vtpm_recover(struct container *c)
{
    readopt(c);
    /* A stopped container's next start finds its trustme-vtpm waiting (docs/VTPM.md "The
     * standby"): launched once trustmed is up, one container at a time, at SCHED_IDLE. One whose
     * orphaned vTPM still stops gets it once that one's state is anchored (vtpm_on_exit). */
    if (c->cfg->vtpm && c->state == CS_STOPPED && (!c->vtpm || !c->vtpm->pid)) {
        struct vtpm *v = vtpm_get(c);
        if (v)
            vtpm_standby_want(v);
    }
}
