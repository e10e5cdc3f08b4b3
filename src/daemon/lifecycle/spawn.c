/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "spawn.h"

#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cleanup.h"
#include "fdutil.h"
#include "syncmsg.h"

static const char *const default_env[] = {
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME=/root",
    "container=trustme",
};

/* A container with a vTPM: every tpm2-tss user finds it (docs/VTPM.md). */
static const char *const vtpm_env[] = {
    "TPM2TOOLS_TCTI=swtpm:path=/run/tpm/tpm.sock",
    "TPM2OPENSSL_TCTI=swtpm:path=/run/tpm/tpm.sock",
    "TPM2_PKCS11_TCTI=swtpm:path=/run/tpm/tpm.sock",
};

static bool env_has_key(char **env, size_t n, const char *kv)
{
    size_t klen = strcspn(kv, "=");
    for (size_t i = 0; i < n; i++)
        if (strncmp(env[i], kv, klen) == 0 && env[i][klen] == '=')
            return true;
    return false;
}

char **build_env(const struct container_config *cfg, char *const *extra, size_t nextra)
{
    size_t max = ARRAY_SIZE(default_env) + ARRAY_SIZE(vtpm_env) + cfg->nenv + cfg->nguest_env + nextra + 1;
    char **env = calloc(max, sizeof(char *));
    if (!env)
        return NULL;
    size_t n = 0;
    /* Later sources win: take them first and skip keys already present. */
    for (size_t i = nextra; i-- > 0;)
        if (!env_has_key(env, n, extra[i]))
            env[n++] = extra[i];
    for (size_t i = cfg->nenv; i-- > 0;)
        if (!env_has_key(env, n, cfg->env[i]))
            env[n++] = cfg->env[i];
    for (size_t i = cfg->nguest_env; i-- > 0;)
        if (!env_has_key(env, n, cfg->guest_env[i]))
            env[n++] = cfg->guest_env[i];
    for (size_t i = 0; cfg->vtpm && i < ARRAY_SIZE(vtpm_env); i++)
        if (!env_has_key(env, n, vtpm_env[i]))
            env[n++] = (char *)vtpm_env[i];
    for (size_t i = 0; i < ARRAY_SIZE(default_env); i++)
        if (!env_has_key(env, n, default_env[i]))
            env[n++] = (char *)default_env[i];
    return env;
}

/* Hand trustmed init's mount namespace, now complete (lifecycle.c keep_mntns). With a reference
 * there, init's exit no longer tears down the container's mounts before its parent hears of it:
 * trustmed does that after it has answered. Sent while it is in flight the reference holds too,
 * so init may exit before trustmed reads it. Without /proc (cannot happen: module_kernfs mounted
 * it) the mounts simply go with init, as before. */
static void send_mntns(int sync_fd)
{
    int fd = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    tm_sync_send(sync_fd, TM_SYNC_MNTNS, NULL, 0, fd);
    close(fd);
}

_Noreturn void init_main(struct start_ctx *ctx)
{
    tm_err err = {0};
    /* Dies with trustmed while it is still being set up; cleared right before exec, since a
     * running container must survive a trustmed restart (and be re-adopted). Not dumpable until
     * exec, like every helper (child_reset). */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    prctl(PR_SET_DUMPABLE, 0);
    if (modules_run(PHASE_CHILD, ctx, NULL, &err) < 0)
        child_fail(ctx->sync_fd, &err, 127);
    send_mntns(ctx->sync_fd);
    for (int i = 0; i < 3; i++) {
        int fd = ctx->stdio[i] >= 0 ? ctx->stdio[i] : open("/dev/null", O_RDWR | O_CLOEXEC);
        if (fd < 0 || dup2(fd, i) < 0) {
            tm_err_sys(&err, "cannot set up the standard file descriptors");
            child_fail(ctx->sync_fd, &err, 127);
        }
    }
    /* The sync socket is fd 3 (fd_keep_only in setup_main); it closes on exec, which tells
     * trustmed the exec succeeded. Everything else goes now. */
    close_range(4, ~0U, 0);
    umask(022);
    size_t argc = ctx->cfg->nargs + 1;
    char **argv = calloc(argc + 1, sizeof(char *));
    char **envp = build_env(ctx->cfg, NULL, 0);
    if (!argv || !envp) {
        tm_err_set(&err, ENOMEM, "out of memory");
        child_fail(ctx->sync_fd, &err, 127);
    }
    argv[0] = (char *)ctx->cfg->init;
    for (size_t i = 0; i < ctx->cfg->nargs; i++)
        argv[i + 1] = ctx->cfg->args[i];
    /* An imported OCI image's WorkingDir and User (guestos.json working_dir, user): the last
     * steps before exec, inside the container, so the path resolves in its file system and the
     * ids are its own. Dropping to a user other than 0 loses every capability, as in Docker. */
    if (ctx->cfg->guest_working_dir[0] && chdir(ctx->cfg->guest_working_dir) < 0) {
        tm_err_sys(&err, "cannot change to the working directory %s", ctx->cfg->guest_working_dir);
        child_fail(ctx->sync_fd, &err, 127);
    }
    if (ctx->cfg->guest_user &&
        (setgroups(0, NULL) < 0 || setgid(ctx->cfg->guest_gid) < 0 || setuid(ctx->cfg->guest_uid) < 0)) {
        tm_err_sys(&err, "cannot become the user %u:%u", ctx->cfg->guest_uid, ctx->cfg->guest_gid);
        child_fail(ctx->sync_fd, &err, 127);
    }
    /* A container with a vTPM: its vTPM started alongside the setup process; nothing of the
     * container runs before it is measured and serving (lifecycle.c release_init). */
    if (ctx->cfg->vtpm) {
        struct pollfd p = {.fd = ctx->sync_fd, .events = POLLIN};
        tm_sync_msg msg;
        while (poll(&p, 1, -1) < 0 && errno == EINTR)
            ;
        int r = tm_sync_recv(ctx->sync_fd, &msg);
        if (r > 0 && msg.fd >= 0)
            close(msg.fd);
        if (r <= 0 || msg.type != TM_SYNC_VTPM_READY) {
            tm_err_set(&err, EPROTO, "the vTPM did not become ready");
            child_fail(ctx->sync_fd, &err, 127);
        }
    }
    prctl(PR_SET_PDEATHSIG, 0);
    execve(ctx->cfg->init, argv, envp);
    tm_err_sys(&err, "cannot execute %s in the container", ctx->cfg->init);
    child_fail(ctx->sync_fd, &err, 127);
}

_Noreturn void setup_main(struct start_ctx *ctx, pid_t daemon_pid)
{
    tm_err err = {0};
    child_reset(daemon_pid);
    umask(0);
    /* Only the sync socket, init's stdio and the kept mounts of the GuestOS's images survive into
     * the setup process (sync becomes fd 3). */
    int fds[4 + CTX_IMAGE_MNT_MAX] = {ctx->sync_fd, ctx->stdio[0], ctx->stdio[1], ctx->stdio[2]};
    for (size_t i = 0; i < ctx->nimage_mnt; i++)
        fds[4 + i] = ctx->image_mnt[i];
    if (fd_keep_only(fds, 4 + ctx->nimage_mnt) < 0) {
        tm_err_sys(&err, "cannot arrange file descriptors");
        child_fail(ctx->sync_fd, &err, 1);
    }
    ctx->sync_fd = fds[0];
    for (int i = 0; i < 3; i++)
        ctx->stdio[i] = fds[i + 1];
    for (size_t i = 0; i < ctx->nimage_mnt; i++)
        ctx->image_mnt[i] = fds[4 + i];

    /* Everything mounted from here on exists only in this namespace and in init's copy of it. */
    if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
        tm_err_sys(&err, "cannot create a private mount namespace");
        child_fail(ctx->sync_fd, &err, 1);
    }
    if (modules_run(PHASE_SETUP, ctx, NULL, &err) < 0)
        child_fail(ctx->sync_fd, &err, 1);
    uint64_t ns_flags =
        CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | (ctx->netns_joined ? 0 : CLONE_NEWNET);
    if (ctx->userns_fd >= 0) {
        /* trustmed keeps the namespace: exec sessions must join this one, the container's own,
         * and not whichever one init has moved into since (where the container would be owner). */
        if (tm_sync_send(ctx->sync_fd, TM_SYNC_USERNS, NULL, 0, ctx->userns_fd) < 0) {
            tm_err_sys(&err, "cannot hand over the user namespace");
            child_fail(ctx->sync_fd, &err, 1);
        }
        /* init is cloned as host root into the network namespace the container's user
         * namespace owns (module_userns made it), with new pid and mount namespaces: in the
         * mount namespace, still the host's, it mounts /proc, /sys and their masks, before it
         * enters the user namespace and a mount namespace of its own, which locks them
         * (module_kernfs). UTS and IPC namespaces come with that. The pid namespace belongs to
         * the host's user namespace (as the time namespace does): proc must be mounted from
         * inside it, and a pid namespace made by the container's would not let host root be
         * its pid 1. Its owner only decides who may mount proc for it, set its pids or reboot
         * it, none of which the container's root needs. */
        if (ctx->netns_fd >= 0 && setns(ctx->netns_fd, CLONE_NEWNET) < 0) {
            tm_err_sys(&err, "cannot enter the container's network namespace");
            child_fail(ctx->sync_fd, &err, 1);
        }
        close_and_reset(ctx->netns_fd);
        ns_flags = CLONE_NEWNS | CLONE_NEWPID;
    }
    /* init starts in its root: clone translates the working directory into init's copy of the
     * mount namespace, and the container's root user could not reach it by path (the run dir is
     * 0700 host root). */
    if (fchdir(ctx->root_fd) < 0) {
        tm_err_sys(&err, "cannot enter the container's root");
        child_fail(ctx->sync_fd, &err, 1);
    }
    close_and_reset(ctx->root_fd);
    /* CLONE_PARENT: init becomes trustmed's child, and this process can simply exit. */
    /* No CLONE_NEWCGROUP here: the namespace would be rooted where this process is in cgroup v2,
     * not where CLONE_INTO_CGROUP puts init. init creates it itself (module_cgroups). */
    pid_t pid = clone_for_daemon(ns_flags, ctx->cgroup_fd);
    if (pid < 0) {
        tm_err_sys(&err, "cannot create the container's init");
        child_fail(ctx->sync_fd, &err, 1);
    }
    if (pid == 0)
        init_main(ctx);
    close_and_reset(ctx->cgroup_fd);
    tm_sync_send_pid(ctx->sync_fd, pid);
    _exit(0);
}
