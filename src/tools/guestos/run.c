/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Running the image tools and trustme-pki: posix_spawnp, no shell, so no quoting of paths. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "guestos.h"

extern char **environ;

/* The tail of the tool's output: its error is usually at the end, and tm_err has 1 KiB. */
#define OUTPUT_TAIL 700

static void output_tail(int fd, char *buf, size_t size)
{
    buf[0] = '\0';
    off_t end = lseek(fd, 0, SEEK_END);
    if (end <= 0)
        return;
    off_t start = end > (off_t)size - 1 ? end - (off_t)size + 1 : 0;
    ssize_t n = pread(fd, buf, (size_t)(end - start), start);
    if (n <= 0)
        return;
    buf[n] = '\0';
    for (ssize_t i = 0; i < n; i++)
        if (buf[i] == '\0')
            buf[i] = ' ';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = '\0';
}

int gos_run(const char *const argv[], bool capture, tm_err *err)
{
    /* A memfd, not a pipe: nothing to drain while waiting, however much the tool writes. */
    _cleanup_close_ int out = capture ? memfd_create("tool-output", MFD_CLOEXEC) : -1;
    if (capture && out < 0)
        return tm_err_sys(err, "memfd_create");
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    if (capture) {
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, out, 1);
        posix_spawn_file_actions_adddup2(&fa, out, 2);
    } else {
        /* Our stdout is the built directory's path and nothing else, for scripts. */
        posix_spawn_file_actions_adddup2(&fa, 2, 1);
    }
    /* Our handlers for SIGINT/SIGTERM become SIG_DFL in the child by exec anyway; the mask is
     * inherited, so clear it. */
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
    pid_t pid;
    int r = posix_spawnp(&pid, argv[0], &fa, &attr, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (r != 0) {
        errno = r;
        return tm_err_sys(err, "cannot run %s", argv[0]);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return tm_err_sys(err, "waitpid %s", argv[0]);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    char how[64];
    if (WIFEXITED(status))
        snprintf(how, sizeof(how), "exited with status %d", WEXITSTATUS(status));
    else
        snprintf(how, sizeof(how), "was killed by signal %d", WTERMSIG(status));
    char tail[OUTPUT_TAIL + 1] = "";
    if (capture)
        output_tail(out, tail, sizeof(tail));
    return tm_err_set(err, EIO, "%s %s%s%s", argv[0], how, tail[0] ? ":\n" : "", tail);
}
