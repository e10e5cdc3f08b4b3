/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Generic first and last steps of every process trustmed forks: helpers (scd, tpmd, installers)
 * and the container's own processes alike (child.h). */
#include "child.h"

#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "syncmsg.h"

int child_drop_privileges(uid_t uid, gid_t gid, const gid_t *groups, int ngroups, tm_err *err)
{
    for (int cap = 0; cap <= CAP_LAST_CAP; cap++)
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
            return tm_err_sys(err, "cannot drop capability %d", cap);
    if (setgroups((size_t)ngroups, groups) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)
        return tm_err_sys(err, "cannot become uid %u", uid);
    /* Changing from uid 0 cleared the permitted and effective sets; ambient goes too. */
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return tm_err_sys(err, "cannot drop the last privileges");
    return 0;
}

void child_reset(pid_t daemon_pid)
{
    /* Not dumpable until exec: once a helper has entered a container's namespaces, nothing in
     * the container may ptrace it or take its fds (pidfd_getfd) while it still holds host
     * credentials and fds. exec resets this for the program that runs. */
    prctl(PR_SET_DUMPABLE, 0);
    struct sigaction sa = {.sa_handler = SIG_DFL};
    for (int sig = 1; sig < NSIG; sig++)
        sigaction(sig, &sa, NULL); /* fails harmlessly for SIGKILL, SIGSTOP and gaps */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (daemon_pid && getppid() != daemon_pid)
        _exit(1); /* trustmed died before the line above took effect */
}

pid_t clone_for_daemon(uint64_t ns_flags, int cgroup_fd)
{
    struct clone_args args = {.flags = CLONE_PARENT | ns_flags};
    if (cgroup_fd >= 0) {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = (uint64_t)cgroup_fd;
    }
    return (pid_t)syscall(SYS_clone3, &args, sizeof(args));
}

_Noreturn void child_fail(int sync_fd, const tm_err *err, int status)
{
    tm_sync_send_error(sync_fd, err);
    _exit(status);
}
