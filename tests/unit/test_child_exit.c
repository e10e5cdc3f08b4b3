/* SPDX-License-Identifier: GPL-2.0-or-later */
/* How a followed child ended (src/daemon/core/child_exit.c): its status, "not yet", and a child
 * someone else reaped first, as the reaper does for a dying container's processes. That last
 * case must count as ended: taken for "not yet", the owner's readable pidfd made trustmed spin
 * and never answer the start it belonged to (found looping test_vtpm_review.py under load). */
#include <errno.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unit.h"

#include "child_exit.h"

static int spawn(int how, pid_t *ret_pid)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (how < 0)
            pause(); /* until killed */
        _exit(how);
    }
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    assert_true(pidfd >= 0);
    *ret_pid = pid;
    return pidfd;
}

static void wait_readable(int pidfd)
{
    siginfo_t si = {0};
    /* WNOWAIT: seen ended, left to reap */
    assert_int_equal(waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED | WNOWAIT), 0);
}

static void reports_the_exit_status(void **state)
{
    (void)state;
    pid_t pid;
    int pidfd = spawn(3, &pid), status = 0;
    wait_readable(pidfd);
    assert_int_equal(child_exit_status(pidfd, &status), 1);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 3);
    close(pidfd);
}

static void reports_the_signal_and_not_yet(void **state)
{
    (void)state;
    pid_t pid;
    int pidfd = spawn(-1, &pid), status = 0;
    assert_int_equal(child_exit_status(pidfd, &status), 0); /* still running */
    assert_int_equal(kill(pid, SIGKILL), 0);
    wait_readable(pidfd);
    assert_int_equal(child_exit_status(pidfd, &status), 1);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGKILL);
    close(pidfd);
}

static void a_child_reaped_elsewhere_has_ended(void **state)
{
    (void)state;
    pid_t pid;
    int pidfd = spawn(0, &pid), status = 0;
    /* the reaper's own pidfd for the same child, and it reaps first */
    int other = (int)syscall(SYS_pidfd_open, pid, 0);
    assert_true(other >= 0);
    siginfo_t si = {0};
    assert_int_equal(waitid(P_PIDFD, (id_t)other, &si, WEXITED), 0);
    assert_int_equal(child_exit_status(pidfd, &status), 1);
    assert_int_equal(status, -1);
    close(other);
    close(pidfd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reports_the_exit_status),
        cmocka_unit_test(reports_the_signal_and_not_yet),
        cmocka_unit_test(a_child_reaped_elsewhere_has_ended),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
