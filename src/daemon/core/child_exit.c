/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "child_exit.h"

#include <errno.h>
#include <signal.h>
#include <sys/wait.h>

int child_exit_status(int pidfd, int *status)
{
    siginfo_t si = {0};
    int r;
    while ((r = waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED | WNOHANG)) < 0 && errno == EINTR)
        ;
    if (r < 0 && errno == ECHILD) {
        *status = -1;
        return 1;
    }
    if (r < 0)
        return -errno;
    if (si.si_pid == 0)
        return 0;
    *status = si.si_code == CLD_EXITED ? W_EXITCODE(si.si_status, 0) : si.si_status & 0x7f;
    return 1;
}
