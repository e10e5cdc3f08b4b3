/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "test_hooks.h"

#ifdef TM_TEST_HOOKS
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "log.h"

static pid_t also_kill;

void test_crash_also(pid_t pid)
{
    also_kill = pid;
}

void test_crash_point(const char *dir, const char *name)
{
    char path[4096], buf[128];
    if (!dir || snprintf(path, sizeof(path), "%s/test-crash-at", dir) >= (int)sizeof(path))
        return;
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    if (n <= 0)
        return;
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    if (strcmp(buf, name) != 0)
        return;
    unlink(path);
    log_warn("test crash point %s: SIGKILL", name);
    if (also_kill > 0)
        kill(also_kill, SIGKILL);
    raise(SIGKILL);
}

bool test_flag(const char *dir, const char *name)
{
    char path[4096];
    if (!dir || snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
        return false;
    return access(path, F_OK) == 0;
}
#else
/* An empty translation unit is not ISO C. */
typedef int test_hooks_unused;
#endif
