/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "container_root.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cleanup.h"

int container_root_open(const struct container *c, tm_err *err)
{
    if (!c->pid || c->pidfd < 0)
        return tm_err_set(err, ESRCH, "%s is not running", c->cfg->name);
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d", c->pid);
    _cleanup_close_ int proc = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    /* Opened first, checked after: if init is still alive now, the pid was not reused, and
     * the /proc directory opened is init's for good (it does not follow a pid). */
    if (proc < 0 || syscall(SYS_pidfd_send_signal, c->pidfd, 0, NULL, 0) < 0)
        return tm_err_set(err, ESRCH, "%s is not running", c->cfg->name);
    int root = openat(proc, "root", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        return tm_err_set(err, ESRCH, "%s is not running", c->cfg->name);
    return root;
}

int container_root_openat(int root_fd, const char *path, int flags)
{
    struct open_how how = {
        .flags = (uint64_t)flags | O_CLOEXEC,
        .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    int fd = (int)syscall(SYS_openat2, root_fd, path, &how, sizeof(how));
    return fd < 0 ? -errno : fd;
}
