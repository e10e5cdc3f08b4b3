/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "fdutil.h"

int read_file(const char *path, size_t max, char **ret_data, size_t *ret_len, tm_err *err)
{
    /* O_NONBLOCK: a FIFO put where a file was would block the open until a writer came (root
     * could hang a daemon with mkfifo); it is refused below as not a regular file. For regular
     * files the flag changes nothing. */
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return tm_err_sys(err, "cannot open %s", path);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return tm_err_sys(err, "cannot stat %s", path);
    if (!S_ISREG(st.st_mode))
        return tm_err_set(err, EINVAL, "%s is not a regular file", path);
    if ((size_t)st.st_size > max)
        return tm_err_set(err, EFBIG, "%s is too large (%lld bytes, limit %zu)", path, (long long)st.st_size, max);
    _cleanup_free_ char *buf = malloc((size_t)st.st_size + 1);
    if (!buf)
        return tm_err_set(err, ENOMEM, "out of memory reading %s", path);
    ssize_t n = read_all(fd, buf, (size_t)st.st_size);
    if (n < 0) {
        errno = (int)-n;
        return tm_err_sys(err, "cannot read %s", path);
    }
    buf[n] = '\0';
    if (ret_len)
        *ret_len = (size_t)n;
    *ret_data = steal_ptr(buf);
    return 0;
}

int fsync_parent(const char *path)
{
    char copy[PATH_MAX];
    if (snprintf(copy, sizeof(copy), "%s", path) >= (int)sizeof(copy))
        return -ENAMETOOLONG;
    _cleanup_close_ int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) < 0)
        return -errno;
    return 0;
}

static int replace_file(const char *path, const void *data, size_t len, mode_t mode, bool durable, tm_err *err)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp-XXXXXX", path) >= (int)sizeof(tmp))
        return tm_err_set(err, ENAMETOOLONG, "path too long: %s", path);
    _cleanup_close_ int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return tm_err_sys(err, "cannot create a temporary file next to %s", path);
    int r = write_all(fd, data, len);
    if (r < 0) {
        errno = -r;
        r = tm_err_sys(err, "cannot write %s", tmp);
    } else if (fchmod(fd, mode) < 0 || (durable && fsync(fd) < 0)) {
        r = tm_err_sys(err, "cannot sync %s", tmp);
    } else if (rename(tmp, path) < 0) {
        r = tm_err_sys(err, "cannot rename %s to %s", tmp, path);
    }
    if (r < 0) {
        unlink(tmp);
        return r;
    }
    if (durable && (r = fsync_parent(path)) < 0) {
        errno = -r;
        return tm_err_sys(err, "cannot sync the directory of %s", path);
    }
    return 0;
}

int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode, tm_err *err)
{
    return replace_file(path, data, len, mode, true, err);
}

int write_file_replace(const char *path, const void *data, size_t len, mode_t mode, tm_err *err)
{
    return replace_file(path, data, len, mode, false, err);
}

int write_file_in_place(const char *path, const void *data, size_t len, mode_t mode, tm_err *err)
{
    /* O_NONBLOCK as in read_file: a FIFO must not block the open. */
    bool created = false;
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK);
    /* A file this process may not write (root put a copy back, owned by root): the slot is dead,
     * so it is replaced by a new one (in the directory, which is ours). */
    if (fd < 0 && errno == EACCES && unlink(path) == 0)
        errno = ENOENT;
    if (fd < 0 && errno == ENOENT) {
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW, mode);
        created = fd >= 0;
    }
    if (fd < 0)
        return tm_err_sys(err, "cannot open %s", path);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return tm_err_sys(err, "cannot stat %s", path);
    if (!S_ISREG(st.st_mode))
        return tm_err_set(err, EINVAL, "%s is not a regular file", path);
    /* A file with another name too (root linked the dead slot to the live one, or to another
     * store's file): writing in place would overwrite that one. The slot gets a file of its own. */
    if (!created && st.st_nlink != 1) {
        closep(&fd);
        fd = -1;
        if (unlink(path) < 0)
            return tm_err_sys(err, "cannot replace %s (it has other links)", path);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW, mode);
        if (fd < 0)
            return tm_err_sys(err, "cannot open %s", path);
        created = true;
        st.st_size = 0;
    }
    int r = write_all(fd, data, len);
    if (r < 0) {
        errno = -r;
        return tm_err_sys(err, "cannot write %s", path);
    }
    if ((size_t)st.st_size > len && ftruncate(fd, (off_t)len) < 0)
        return tm_err_sys(err, "cannot truncate %s", path);
    if (fdatasync(fd) < 0)
        return tm_err_sys(err, "cannot sync %s", path);
    if (created && (r = fsync_parent(path)) < 0) {
        errno = -r;
        return tm_err_sys(err, "cannot sync the directory of %s", path);
    }
    return 0;
}

int write_string_file(const char *path, const char *s)
{
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return -errno;
    size_t len = strlen(s);
    ssize_t n = write(fd, s, len);
    if (n < 0)
        return -errno;
    return (size_t)n == len ? 0 : -EIO;
}

int read_string_file(const char *path, char *buf, size_t size)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return -errno;
    ssize_t n = read_all(fd, buf, size - 1);
    if (n < 0)
        return (int)n;
    buf[n] = '\0';
    while (n > 0 && buf[n - 1] == '\n')
        buf[--n] = '\0';
    return 0;
}

int mkdir_p(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
        return -ENAMETOOLONG;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(buf, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    int r = type == FTW_DP ? rmdir(path) : unlink(path);
    return r < 0 && errno != ENOENT ? -errno : 0;
}

int rm_rf(const char *path)
{
    int r = nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
    if (r < 0 && errno == ENOENT)
        return 0;
    return r < 0 ? -errno : r;
}
