/* SPDX-License-Identifier: GPL-2.0-or-later */
/* module_userns: each container's own user namespace, mapping its root to a private range of
 * 65536 host ids (allocated at create, persisted, never shared). */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "daemon.h"
#include "fileio.h"
#include "module.h"
#include "net.h"

/* The setup process needs the namespace before any process lives in it: to id-map the root
 * file system, and to hand init a network namespace the container owns. A short-lived helper
 * creates it, the maps are written from outside (so any range is allowed), and its fd outlives
 * the helper. The network namespace comes from the same clone (CLONE_NEWUSER | CLONE_NEWNET:
 * it belongs to the new user namespace, as if made from inside it), so no second helper is
 * forked for it; module_net sets it up when the container has a network of its own
 * (ctx->netns_fd). init itself starts with host credentials (module_kernfs) and enters the user
 * namespace in become_container_root below.
 *
 * The helper shares the setup process's memory (CLONE_VM) and runs on a small stack of its own:
 * it only waits to be killed. A fork would copy the setup process's address space (a copy of
 * trustmed's) and tear it down again at the helper's exit, page table by page table, which on a
 * paravirtualised guest is most of what the helper cost (docs/BENCHMARKS.md "The setup process"). It
 * never returns to C code that the setup process runs and touches no memory but its own stack, so
 * sharing is safe; CLONE_VM allows a new user namespace as long as the helper is not a thread of
 * the setup process (no CLONE_THREAD, CLONE_FS or CLONE_SIGHAND). */
#define HELPER_STACK_SIZE 16384

/* The helper: sleeps until SIGKILL. Raw system calls, not libc or sanitizer wrappers that might
 * touch the thread state it shares with the setup process. It dies with the setup process: one
 * killed while the helper lives (a stop while starting, trustmed's death through the setup
 * process's PDEATHSIG) would otherwise leave it behind for good, holding the container's new user
 * and network namespaces and the setup process's address space. arg is the setup process's pid:
 * if that died before the PDEATHSIG was set, the helper is the orphan and goes at once. */
static int hold(void *arg)
{
    syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (syscall(SYS_getppid) != (long)(intptr_t)arg)
        syscall(SYS_exit_group, 0);
    for (;;)
        syscall(SYS_ppoll, NULL, 0, NULL, NULL, 0);
    return 0;
}

static int userns_setup(struct start_ctx *ctx, tm_err *err)
{
    if (!ctx->uid_base)
        return 0;
    /* Its stack is in this frame: the helper is killed and reaped before the frame goes. */
    _Alignas(16) char stack[HELPER_STACK_SIZE];
    pid_t pid = clone(hold, stack + sizeof(stack), CLONE_VM | CLONE_NEWUSER | CLONE_NEWNET | SIGCHLD,
                      (void *)(intptr_t)getpid());
    if (pid < 0)
        return tm_err_sys(err, "cannot create the user namespace");
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
    const struct {
        const char *name;
        int *fd;
    } ns[] = {{"user", &ctx->userns_fd}, {"net", &ctx->netns_fd}};
    for (size_t i = 0; i < ARRAY_SIZE(ns) && r == 0; i++) {
        snprintf(path, sizeof(path), "/proc/%d/ns/%s", pid, ns[i].name);
        if ((*ns[i].fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
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

/* init, after module_kernfs: into the container's user namespace, and only then into mount, UTS
 * and IPC namespaces of its own, which that user namespace owns. The kernel locks every mount
 * copied into the new mount namespace (the masks among them): the container's root may mount on
 * top of them but never remove them to see what is below. */
static int become_container_root(struct start_ctx *ctx, tm_err *err)
{
    if (ctx->userns_fd < 0)
        return 0;
    if (setns(ctx->userns_fd, CLONE_NEWUSER) < 0)
        return tm_err_sys(err, "cannot enter the container's user namespace");
    close_and_reset(ctx->userns_fd);
    if (unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC) < 0)
        return tm_err_sys(err, "cannot create the container's mount, UTS and IPC namespaces");
    return become_root(ctx, err);
}

const struct tm_module module_userns = {
    .name = "userns",
    .setup = userns_setup,
    .child = become_container_root,
    .exec = become_root,
};
