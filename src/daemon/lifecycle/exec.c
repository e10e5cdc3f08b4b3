/* SPDX-License-Identifier: GPL-2.0-or-later */
/* An exec session takes two processes, neither of which outlives the command:
 *   helper  forked by trustmed; joins the container's cgroups, enters its namespaces through
 *           init's pidfd, clones the command with CLONE_PARENT and exits
 *   command trustmed's child inside the container: root of its user namespace, the same
 *           capability drop and seccomp filter as init, then exec
 * Entering by pidfd needs nothing but init itself, so it works the same for adopted containers. */
#include "exec.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "child_exit.h"
#include "cleanup.h"
#include "lc_state.h"
#include "container.h"
#include "fdutil.h"
#include "log.h"
#include "reaper.h"
#include "caps.h"
#include "session.h"
#include "spawn.h"
#include "syncmsg.h"

#define EXEC_MAX_ARGS 4096
#define EXEC_MAX_BYTES (1024 * 1024)

extern char **environ;

static _Noreturn void exec_command(struct start_ctx *ctx, char **argv, char **envp)
{
    tm_err err = {0};
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    close_and_reset(ctx->cgroup_fd); /* a host cgroupfs directory: out before anything else */
    /* First of the hooks: becoming the container's root, then its cgroup namespace. */
    if (modules_run(PHASE_EXEC, ctx, NULL, &err) < 0)
        child_fail(ctx->sync_fd, &err, 126);
    if (ctx->tty) {
        /* The pty comes from the container's own devpts instance, never from the host's. */
        int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
        int slave = -1;
        if (master < 0 || unlockpt(master) < 0 || (slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY)) < 0) {
            tm_err_sys(&err, "cannot allocate a terminal in the container");
            child_fail(ctx->sync_fd, &err, 126);
        }
        if (tm_sync_send(ctx->sync_fd, TM_SYNC_PTY, NULL, 0, master) < 0 || setsid() < 0 ||
            ioctl(slave, TIOCSCTTY, 0) < 0) {
            tm_err_sys(&err, "cannot set up the terminal");
            child_fail(ctx->sync_fd, &err, 126);
        }
        close(master);
        for (int i = 0; i < 3; i++)
            ctx->stdio[i] = slave;
    }
    for (int i = 0; i < 3; i++) {
        int fd = ctx->stdio[i] >= 0 ? ctx->stdio[i] : open("/dev/null", O_RDWR | O_CLOEXEC);
        if (fd < 0 || dup2(fd, i) < 0) {
            tm_err_sys(&err, "cannot set up the standard file descriptors");
            child_fail(ctx->sync_fd, &err, 126);
        }
    }
    if (chdir("/") < 0) {
        tm_err_sys(&err, "chdir /");
        child_fail(ctx->sync_fd, &err, 126);
    }
    close_range(4, ~0U, 0); /* the sync socket (fd 3) closes on exec */
    umask(022);
    environ = envp;
    prctl(PR_SET_PDEATHSIG, 0);
    execvp(argv[0], argv);
    int code = errno == ENOENT ? 127 : 126;
    tm_err_sys(&err, "cannot execute %s in the container", argv[0]);
    child_fail(ctx->sync_fd, &err, code);
}

static _Noreturn void exec_helper(struct start_ctx *ctx, int init_pidfd, int userns_fd, char **argv, char **envp,
                                  pid_t daemon_pid)
{
    tm_err err = {0};
    child_reset(daemon_pid); /* not dumpable from here until the command's exec */
    int fds[6] = {ctx->sync_fd, ctx->stdio[0], ctx->stdio[1], ctx->stdio[2], init_pidfd, userns_fd};
    if (fd_keep_only(fds, ARRAY_SIZE(fds)) < 0) {
        tm_err_sys(&err, "cannot arrange file descriptors");
        child_fail(ctx->sync_fd, &err, 1);
    }
    ctx->sync_fd = fds[0];
    for (int i = 0; i < 3; i++)
        ctx->stdio[i] = fds[i + 1];
    ctx->init_pidfd = fds[4];
    /* Until the command gets its own stdio (a tty session only gets its pty later), 0-2 are
     * /dev/null, not trustmed's stdio. */
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    for (int i = 0; i < 3 && null >= 0; i++)
        dup2(null, i);
    if (null > 2)
        close(null);
    if (modules_run(PHASE_JOIN, ctx, NULL, &err) < 0)
        child_fail(ctx->sync_fd, &err, 1);
    /* init's namespaces but the user namespace (below) and the cgroup one (the command joins it,
     * see cgroups_exec) — while still host root: the time namespace belongs to the host's user
     * namespace, which nothing inside the container's could enter. */
    int flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWTIME;
    if (setns(ctx->init_pidfd, flags) < 0) {
        tm_err_sys(&err, "cannot enter the container's namespaces");
        child_fail(ctx->sync_fd, &err, 1);
    }
    /* Then the container's own user namespace, never the one its init may have moved into since:
     * there the container's root would own us and could trace us before we drop privileges. */
    if (fds[5] >= 0 && setns(fds[5], CLONE_NEWUSER) < 0) {
        tm_err_sys(&err, "cannot enter the container's user namespace");
        child_fail(ctx->sync_fd, &err, 1);
    }
    close_and_reset(fds[5]);
    /* setns(CLONE_NEWPID) places only children in the container's pid namespace. */
    pid_t pid = clone_for_daemon(0, ctx->cgroup_fd);
    if (pid < 0) {
        tm_err_sys(&err, "cannot create the process in the container");
        child_fail(ctx->sync_fd, &err, 1);
    }
    if (pid == 0)
        exec_command(ctx, argv, envp);
    tm_sync_send_pid(ctx->sync_fd, pid);
    _exit(0);
}

static void audit_end(struct session *s, const char *how)
{
    daemon_audit(s->d, "exec.end", "ok", s->c, s->actor, "%s: %s", s->what, how);
}

static void on_exec_sync(tm_source *src, uint32_t events, void *userdata);

static void on_command_exit(tm_source *src, uint32_t events, void *userdata)
{
    struct session *s = userdata;
    int status;
    if (child_exit_status(s->pidfd, &status) <= 0)
        return;
    if (s->sync_fd >= 0) /* an exec error may still be queued */
        on_exec_sync(NULL, EPOLLIN, s);
    /* Reaped by the reaper first: only cgroups_kill hands it a session's command, after its
     * SIGKILL (the container is going). */
    if (status < 0)
        status = SIGKILL;
    char how[64];
    describe_wait_status(status, how, sizeof(how), NULL, NULL);
    audit_end(s, s->failed ? s->error : how);
    if (s->failed)
        session_fail(s, WIFEXITED(status) && WEXITSTATUS(status) == 127 ? ENOENT : EACCES, s->error);
    else
        session_finish(s, status);
}

static void on_helper_exit(tm_source *src, uint32_t events, void *userdata)
{
    struct session *s = userdata;
    int status;
    if (child_exit_status(s->helper_pidfd, &status) <= 0)
        return;
    tm_source_free(s->helper_src);
    s->helper_src = NULL;
    close_and_reset(s->helper_pidfd);
    if (s->sync_fd >= 0)
        on_exec_sync(NULL, EPOLLIN, s);
    if (s->pid == 0) { /* the command was never created */
        if (!s->failed)
            snprintf(s->error, sizeof(s->error), "the exec helper ended unexpectedly");
        audit_end(s, s->error);
        session_fail(s, EIO, s->error);
    }
}

static void on_exec_sync(tm_source *src, uint32_t events, void *userdata)
{
    struct session *s = userdata;
    for (;;) {
        tm_sync_msg msg;
        int r = tm_sync_recv(s->sync_fd, &msg);
        if (r == -EAGAIN)
            return;
        if (r <= 0) {
            tm_source_free(s->sync_src);
            s->sync_src = NULL;
            close_and_reset(s->sync_fd);
            return;
        }
        if (msg.type == TM_SYNC_PID && msg.len == sizeof(int32_t) && s->pid == 0) {
            int32_t pid;
            memcpy(&pid, msg.payload, sizeof(pid));
            /* Our child (CLONE_PARENT), not reaped yet: the pid is still its own. */
            s->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
            s->pid = pid;
            if (s->pidfd >= 0)
                s->pidfd_src = tm_loop_io(s->d->loop, s->pidfd, EPOLLIN, on_command_exit, s);
            if (!s->pidfd_src) {
                /* Treated as never created: the helper's exit fails the session. */
                kill(pid, SIGKILL);
                reaper_take_pid(s->d, pid);
                close_and_reset(s->pidfd);
                s->pid = 0;
                snprintf(s->error, sizeof(s->error), "cannot watch the command (pid %d)", pid);
                s->failed = true;
            }
        } else if (msg.type == TM_SYNC_PTY && msg.fd >= 0 && s->tty && s->out_fd < 0) {
            session_set_pty(s, steal_fd(msg.fd), 0, 0);
        } else if (msg.type == TM_SYNC_ERROR && msg.len >= sizeof(int32_t)) {
            s->failed = true;
            snprintf(s->error, sizeof(s->error), "%s", msg.payload + sizeof(int32_t));
        } else {
            log_warn("exec %s: unexpected message %u from the helper", s->what, msg.type);
        }
        if (msg.fd >= 0)
            close(msg.fd);
    }
}

static int check_request(const Trustme__RunRequest *rq, tm_err *err)
{
    if (rq->n_argv == 0 || !rq->argv[0][0])
        return tm_err_set(err, EINVAL, "no command given");
    size_t total = 0;
    if (rq->n_argv > EXEC_MAX_ARGS || rq->n_env > EXEC_MAX_ARGS)
        return tm_err_set(err, E2BIG, "too many arguments or variables");
    for (size_t i = 0; i < rq->n_argv; i++)
        total += strlen(rq->argv[i]) + 1;
    for (size_t i = 0; i < rq->n_env; i++) {
        const char *eq = strchr(rq->env[i], '=');
        if (!eq || eq == rq->env[i])
            return tm_err_set(err, EINVAL, "environment entry \"%.40s\" is not KEY=VALUE", rq->env[i]);
        total += strlen(rq->env[i]) + 1;
    }
    if (total > EXEC_MAX_BYTES)
        return tm_err_set(err, E2BIG, "arguments and environment exceed %d bytes", EXEC_MAX_BYTES);
    return 0;
}

/* A session whose start failed part way (exec_start). */
static void session_freep(struct session **s)
{
    if (*s)
        session_free(*s);
}

static void close_stdiop(int (*fds)[3])
{
    for (int i = 0; i < 3; i++)
        closep(&(*fds)[i]);
}

int exec_start(struct container *c, struct reply_to to, const Trustme__RunRequest *rq, tm_err *err)
{
    if (c->state != CS_RUNNING)
        return tm_err_set(err, EBUSY, "the container is %s%s", state_name(c->state),
                          c->state == CS_FROZEN ? "; unfreeze it first" : "; start it first");
    int r = check_request(rq, err);
    if (r < 0)
        return r;
    /* Each session costs trustmed 4-5 fds: bounded per connection, and per container for the
     * commands that outlive their clients (trustme exec list/kill reach those). */
    size_t on_conn = 0, in_container = 0;
    for (struct container *o = c->d->containers; o; o = o->next)
        for (struct session *s = o->lc->sessions; s; s = s->next) {
            on_conn += s->conn_id == to.client && !s->attach;
            in_container += o == c && !s->attach;
        }
    if (on_conn >= EXEC_MAX_PER_CONN)
        return tm_err_set(err, EAGAIN,
                          "this connection already has %d commands running (the "
                          "limit per connection); wait for one to end, or use another connection",
                          EXEC_MAX_PER_CONN);
    if (in_container >= EXEC_MAX_PER_CONTAINER)
        return tm_err_set(err, EAGAIN,
                          "%s already has %d commands started by trustme run "
                          "running (the limit per container); see trustme exec list %s",
                          c->cfg->name, EXEC_MAX_PER_CONTAINER, c->cfg->name);
    if (c->cfg->user_namespace && c->lc->userns_fd < 0)
        return tm_err_set(err, ENXIO,
                          "cannot find the container's own user namespace (its init "
                          "has left it since trustmed restarted); restart the container to run commands");
    bool tty = rq->has_tty && rq->tty;
    _cleanup_(session_freep) struct session *s = session_new(c, to.client, to.req_id, false, tty, rq->argv[0]);
    if (!s)
        return tm_err_set(err, ENOMEM, "out of memory");
    snprintf(s->actor, sizeof(s->actor), "%s", to.actor);
    struct start_ctx ctx = {.d = c->d,
                            .c = c,
                            .cfg = c->cfg,
                            .sync_fd = -1,
                            .userns_fd = -1,
                            .netns_fd = -1,
                            .root_fd = -1,
                            .cgroup_fd = -1,
                            .init_pidfd = -1,
                            .stdio = {-1, -1, -1},
                            .tty = tty,
                            .uid_base = c->cfg->user_namespace ? c->uid_base : 0};
    ctx.caps_drop = caps_drop_mask(c->cfg, ctx.uid_base != 0);
    _cleanup_(close_stdiop) int child_stdio[3] = {-1, -1, -1};
    _cleanup_close_pair_ int sp[2] = {-1, -1};
    if (!tty && (r = session_pipes(s, child_stdio, err)) < 0)
        return r;
    if ((r = tm_sync_socketpair(sp)) < 0)
        return tm_err_set(err, -r, "socketpair: %s", strerror(-r));
    ctx.sync_fd = sp[1];
    memcpy(ctx.stdio, child_stdio, sizeof(child_stdio));
    /* argv/envp are built before the fork; the helper only reads them. */
    _cleanup_free_ char **argv = calloc(rq->n_argv + 1, sizeof(char *));
    _cleanup_free_ char **envp = build_env(c->cfg, rq->env, rq->n_env);
    if (!argv || !envp)
        return tm_err_set(err, ENOMEM, "out of memory");
    memcpy(argv, rq->argv, rq->n_argv * sizeof(char *));
    pid_t self = getpid();
    struct clone_args ca = {
        .flags = CLONE_PIDFD, .pidfd = (uint64_t)(uintptr_t)&s->helper_pidfd, .exit_signal = SIGCHLD};
    pid_t pid = (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
    if (pid == 0) {
        close(sp[0]);
        exec_helper(&ctx, c->pidfd, c->lc->userns_fd, argv, envp, self);
    }
    if (pid < 0)
        return tm_err_sys(err, "cannot fork the exec helper");
    close_and_reset(sp[1]);
    for (int i = 0; i < 3; i++)
        close_and_reset(child_stdio[i]);
    s->sync_fd = steal_fd(sp[0]);
    s->sync_src = tm_loop_io(c->d->loop, s->sync_fd, EPOLLIN, on_exec_sync, s);
    s->helper_src = tm_loop_io(c->d->loop, s->helper_pidfd, EPOLLIN, on_helper_exit, s);
    if (rq->window && tty)
        session_resize(s, rq->window->rows, rq->window->cols);
    daemon_audit(c->d, "exec.start", "ok", c, to.actor, "%s%s", rq->argv[0], tty ? " (tty)" : "");
    if (rq->has_stdin_credit && rq->stdin_credit)
        session_use_credit(s);
    s = NULL; /* the container's session list keeps it */
    return 0;
}
