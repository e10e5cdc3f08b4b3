/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "swtpm.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "fdutil.h"
#include "fileio.h"
#include "log.h"

#define START_TIMEOUT_MS 5000
#define STOP_TIMEOUT_MS 3000 /* trustmed waits 5 s for tpmd, which stops its swtpm first */

static int connect_unix(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, path);
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return -errno;
    return 0;
}

/* Both sockets accept: swtpm serves one client at a time, but a connection to a busy one still
 * completes (it waits in the backlog), so this tells a live swtpm from a dead or stuck one
 * without disturbing it. */
static bool answers(const struct swtpm *s)
{
    char ctrl[PATH_MAX + 8];
    snprintf(ctrl, sizeof(ctrl), "%s.ctrl", s->sock);
    return connect_unix(s->sock) == 0 && connect_unix(ctrl) == 0;
}

static pid_t read_pid(const char *path)
{
    char buf[32];
    if (read_string_file(path, buf, sizeof(buf)) < 0)
        return 0;
    char *end;
    long v = strtol(buf, &end, 10);
    if (v <= 1 || v > INT32_MAX || (*end && *end != '\n'))
        return 0;
    return (pid_t)v;
}

/* The pid is an swtpm serving our socket, not an unrelated process that got the pid later. */
static bool is_our_swtpm(pid_t pid, const char *sock)
{
    char path[64], arg[PATH_MAX + 32];
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    /* procfs reports size 0: read_file() cannot be used */
    static char data[16384];
    ssize_t len = read_all(fd, data, sizeof(data) - 1);
    if (len <= 0)
        return false;
    data[len] = '\0';
    snprintf(arg, sizeof(arg), "type=unixio,path=%s", sock);
    bool is_swtpm = false, ours = false;
    for (size_t off = 0; off < (size_t)len; off += strlen(data + off) + 1) {
        const char *a = data + off;
        if (off == 0) {
            const char *base = strrchr(a, '/');
            is_swtpm = strcmp(base ? base + 1 : a, "swtpm") == 0;
        }
        ours |= strcmp(a, arg) == 0;
    }
    return is_swtpm && ours;
}

/* Wait up to ms for the process behind pidfd to end. */
static bool wait_gone(int pidfd, int ms)
{
    struct pollfd p = {.fd = pidfd, .events = POLLIN};
    int r;
    do
        r = poll(&p, 1, ms);
    while (r < 0 && errno == EINTR);
    return r == 1;
}

static void remove_files(const struct swtpm *s)
{
    char ctrl[PATH_MAX + 8];
    snprintf(ctrl, sizeof(ctrl), "%s.ctrl", s->sock);
    unlink(s->sock);
    unlink(ctrl);
    unlink(s->pid_path);
}

static int try_reuse(struct swtpm *s)
{
    pid_t pid = read_pid(s->pid_path);
    if (pid == 0)
        return 0;
    int pidfd = pidfd_open(pid, 0);
    if (pidfd < 0)
        return 0; /* gone */
    if (!is_our_swtpm(pid, s->sock)) {
        log_debug("%s names process %d, which is not our swtpm", s->pid_path, (int)pid);
        close(pidfd);
        return 0;
    }
    if (!answers(s)) {
        /* Alive but not serving: it cannot become the TPM again, and its state dir must not
         * have two writers. */
        log_warn("swtpm %d does not answer on %s: killing it", (int)pid, s->sock);
        pidfd_send_signal(pidfd, SIGKILL, NULL, 0);
        wait_gone(pidfd, STOP_TIMEOUT_MS);
        close(pidfd);
        return 0;
    }
    s->pid = pid;
    s->pidfd = pidfd;
    s->reused = true;
    return 1;
}

static void exec_swtpm(const char *binary, char *const argv[])
{
    /* Its own session: no signal aimed at tpmd's process group or terminal reaches it. */
    setsid();
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
    }
    /* fd 3 is the link to trustmed, and is not close-on-exec. */
    close_range(3, ~0u, 0);
    /* tpmd blocks SIGTERM for its signalfd and ignores SIGPIPE; both would carry over. */
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_UNBLOCK, &all, NULL);
    signal(SIGPIPE, SIG_DFL);
    execvp(binary, argv);
    _exit(127);
}

static int launch(struct swtpm *s, const char *binary, const char *state_dir, const char *log_path, tm_err *err)
{
    char server[PATH_MAX + 32], ctrl[PATH_MAX + 32], state[PATH_MAX + 16], pidf[PATH_MAX + 16], logf[PATH_MAX + 32];
    snprintf(server, sizeof(server), "type=unixio,path=%s", s->sock);
    snprintf(ctrl, sizeof(ctrl), "type=unixio,path=%s.ctrl", s->sock);
    snprintf(state, sizeof(state), "dir=%s", state_dir);
    snprintf(pidf, sizeof(pidf), "file=%s", s->pid_path);
    snprintf(logf, sizeof(logf), "file=%s,level=1", log_path);
    /* Without --log, swtpm writes nothing (its stderr is /dev/null): at level 1 it logs a line
     * per TPM command, ~18 MB a minute under a quote flood. */
    char *argv[] = {"swtpm",
                    "socket",
                    "--tpm2",
                    "--server",
                    server,
                    "--ctrl",
                    ctrl,
                    "--tpmstate",
                    state,
                    "--flags",
                    "not-need-init,startup-clear",
                    "--pid",
                    pidf,
                    "--daemon",
                    NULL,
                    NULL,
                    NULL};
    if (s->log) {
        argv[13] = "--log";
        argv[14] = logf;
    }
    remove_files(s);
    pid_t child = fork();
    if (child < 0)
        return tm_err_sys(err, "cannot fork for swtpm");
    if (child == 0)
        exec_swtpm(binary, argv);
    /* With --daemon the first process exits once the sockets listen and the pid file is
     * written; the daemon is its child, reparented away from us. */
    int status;
    while (waitpid(child, &status, 0) < 0)
        if (errno != EINTR)
            return tm_err_sys(err, "cannot wait for swtpm");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return tm_err_set(err, EIO, "%s failed to start (exit status %d, %s)", binary,
                          WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
                          s->log ? log_path : "start tpmd with --swtpm-log to see why");
    s->pid = read_pid(s->pid_path);
    if (s->pid == 0 || (s->pidfd = pidfd_open(s->pid, 0)) < 0)
        return tm_err_set(err, EIO, "swtpm started but %s names no running process", s->pid_path);
    for (int waited = 0; !answers(s); waited += 10) {
        if (waited >= START_TIMEOUT_MS || wait_gone(s->pidfd, 10)) {
            swtpm_stop(s);
            return tm_err_set(err, EIO, "swtpm does not answer on %s%s%s", s->sock, s->log ? ", see " : "",
                              s->log ? log_path : "");
        }
    }
    return 0;
}

int swtpm_start(struct swtpm *s, const char *binary, const char *data_dir, const char *run_dir, bool log, tm_err *err)
{
    *s = (struct swtpm){.pidfd = -1, .log = log};
    struct sockaddr_un sa;
    snprintf(s->sock, sizeof(s->sock), "%s/swtpm.sock", run_dir);
    if (strlen(s->sock) + strlen(".ctrl") >= sizeof(sa.sun_path))
        return tm_err_set(err, ENAMETOOLONG, "the run dir %s is too long for a UNIX socket path", run_dir);
    snprintf(s->pid_path, sizeof(s->pid_path), "%s/swtpm.pid", run_dir);
    snprintf(s->tcti, sizeof(s->tcti), "swtpm:path=%s", s->sock);
    snprintf(s->log_path, sizeof(s->log_path), "%s/swtpm.log", run_dir);
    if (try_reuse(s)) {
        log_info("reusing the running swtpm %d (%s)", (int)s->pid, s->sock);
        return 0;
    }
    char state_dir[PATH_MAX];
    snprintf(state_dir, sizeof(state_dir), "%s/swtpm", data_dir);
    int r = mkdir_p(state_dir, 0700);
    if (r < 0) {
        errno = -r;
        return tm_err_sys(err, "cannot create %s", state_dir);
    }
    if ((r = launch(s, binary, state_dir, s->log_path, err)) < 0) {
        if (s->pidfd >= 0)
            close(s->pidfd);
        s->pidfd = -1;
        s->pid = 0;
        return r;
    }
    log_info("started swtpm %d (%s, state in %s)", (int)s->pid, s->sock, state_dir);
    return 0;
}

void swtpm_stop(struct swtpm *s)
{
    if (!s || s->pidfd < 0)
        return;
    pidfd_send_signal(s->pidfd, SIGTERM, NULL, 0);
    if (!wait_gone(s->pidfd, STOP_TIMEOUT_MS)) {
        log_warn("swtpm %d did not stop within %d s: killing it", (int)s->pid, STOP_TIMEOUT_MS / 1000);
        pidfd_send_signal(s->pidfd, SIGKILL, NULL, 0);
        wait_gone(s->pidfd, STOP_TIMEOUT_MS);
    }
    remove_files(s); /* swtpm removes them itself, except after SIGKILL */
    swtpm_release(s);
}

void swtpm_release(struct swtpm *s)
{
    if (!s)
        return;
    if (s->pidfd >= 0)
        close(s->pidfd);
    s->pidfd = -1;
    s->pid = 0;
}

void swtpm_trim_log(const struct swtpm *s)
{
    struct stat st;
    if (s->pidfd < 0 || stat(s->log_path, &st) < 0 || st.st_size <= SWTPM_LOG_MAX)
        return;
    if (truncate(s->log_path, 0) < 0)
        log_warn("cannot trim %s: %m", s->log_path);
}
