/* module_userns: each container's own user namespace, mapping its root to a private range of
 * 65536 host ids (allocated at create, persisted, never shared). */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "daemon.h"
#include "fileio.h"
#include "module.h"
#include "net.h"

/* The setup process needs the namespace before any process lives in it: to id-map the root
 * file system and to enter it before cloning init. A short-lived helper creates it, the maps are
 * written from outside (so any range is allowed), and its fd outlives the helper.
 * A container with a network of its own (module_net) gets its network namespace from the same
 * clone: owned by the new user namespace, and no second helper to fork (ctx->netns_fd). */
static int userns_setup(struct start_ctx *ctx, tm_err *err)
{
    if (!ctx->uid_base)
        return 0;
    bool net = net_wanted(ctx->c);
    struct clone_args args = {.flags = CLONE_NEWUSER | (net ? CLONE_NEWNET : 0), .exit_signal = SIGCHLD};
    pid_t pid = (pid_t)syscall(SYS_clone3, &args, sizeof(args));
    if (pid < 0)
        return tm_err_sys(err, "cannot create the user namespace");
    if (pid == 0) {
        for (;;)
            pause();
    }
    char path[64], map[64];
    int r = 0;
    snprintf(map, sizeof(map), "0 %u %u\n", ctx->uid_base, TM_IDS_PER_CONTAINER);
    const char *files[] = {"uid_map", "gid_map"};
    for (size_t i = 0; i < ARRAY_SIZE(files) && r == 0; i++) {
        snprintf(path, sizeof(path), "/proc/%d/%s", pid, files[i]);
        if ((r = write_string_file(path, map)) < 0) {
            errno = -r;
            r = tm_err_sys(err, "cannot write %s", path);
        }
    }
    if (r == 0) {
        snprintf(path, sizeof(path), "/proc/%d/ns/user", pid);
        ctx->userns_fd = open(path, O_RDONLY | O_CLOEXEC);
        if (ctx->userns_fd < 0)
            r = tm_err_sys(err, "cannot open %s", path);
    }
    if (r == 0 && net) {
        snprintf(path, sizeof(path), "/proc/%d/ns/net", pid);
        if ((ctx->netns_fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
            r = tm_err_sys(err, "cannot open %s", path);
    }
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    return r;
}

/* Become root of the namespace, without any supplementary group of the host. */
static int become_root(struct start_ctx *ctx, tm_err *err)
{
    if (setgroups(0, NULL) < 0)
        return tm_err_sys(err, "setgroups");
    if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
        return tm_err_sys(err, "cannot become root in the container");
    return 0;
}

const struct tm_module module_userns = {
    .name = "userns",
    .setup = userns_setup,
    .child = become_root,
    .exec = become_root,
};
