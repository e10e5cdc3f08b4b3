/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "fdutil.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <unistd.h>

int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

ssize_t read_all(int fd, void *buf, size_t len)
{
    char *p = buf;
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, p + got, len - got);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

int fd_set_nonblock(int fd, bool on)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0)
        return -errno;
    int nflags = on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK;
    if (nflags != flags && fcntl(fd, F_SETFL, nflags) < 0)
        return -errno;
    return 0;
}

int fd_keep_only(int *fds, size_t n)
{
    /* First lift every fd above the target range so that no dup3 below overwrites a source. */
    int floor = 3 + (int)n;
    for (size_t i = 0; i < n; i++) {
        if (fds[i] < 0)
            continue;
        int high = fcntl(fds[i], F_DUPFD_CLOEXEC, floor);
        if (high < 0)
            return -errno;
        fds[i] = high;
    }
    for (size_t i = 0; i < n; i++) {
        int target = 3 + (int)i;
        if (fds[i] < 0) {
            /* An empty slot must not keep whatever the parent had at that number. */
            close(target);
            continue;
        }
        if (dup3(fds[i], target, O_CLOEXEC) < 0)
            return -errno;
        fds[i] = target;
    }
    if (close_range((unsigned)floor, ~0U, 0) < 0)
        return -errno;
    return 0;
}
