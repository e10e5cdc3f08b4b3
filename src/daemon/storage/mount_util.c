/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "mount_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/loop.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cleanup.h"
#include "fileio.h"

int open_in_root(int rootfd, const char *path, int flags, tm_err *err)
{
    struct open_how how = {
        .flags = (uint64_t)(flags ? flags : O_PATH) | O_CLOEXEC,
        .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    int fd = (int)syscall(SYS_openat2, rootfd, path, &how, sizeof(how));
    if (fd < 0)
        return tm_err_sys(err, "cannot open /%s in the container root", path);
    return fd;
}

int mkdir_in_root(int rootfd, const char *path, mode_t mode, uid_t uid, gid_t gid, tm_err *err)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
        return tm_err_set(err, ENAMETOOLONG, "path too long: %s", path);
    _cleanup_close_ int cur = open_in_root(rootfd, ".", O_PATH | O_DIRECTORY, err);
    if (cur < 0)
        return cur;
    char *save = NULL;
    for (char *comp = strtok_r(buf, "/", &save); comp; comp = strtok_r(NULL, "/", &save)) {
        if (mkdirat(cur, comp, mode) == 0) {
            if (uid != (uid_t)-1 && fchownat(cur, comp, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
                return tm_err_sys(err, "cannot chown /%s", path);
        } else if (errno != EEXIST) {
            return tm_err_sys(err, "cannot create /%s", path);
        }
        /* Resolve each step within the root again: the entry may be a symlink. */
        int next = open_in_root(cur, comp, O_PATH | O_DIRECTORY, err);
        if (next < 0)
            return next;
        close(cur);
        cur = next;
    }
    return steal_fd(cur);
}

/* The kernel explains fsconfig failures in a message log readable from the fs context fd. */
static int fs_error(int fsfd, tm_err *err, const char *what, const char *fstype)
{
    int saved = errno;
    char msg[256] = "";
    ssize_t n = fsfd >= 0 ? read(fsfd, msg, sizeof(msg) - 1) : -1;
    if (n > 0) {
        msg[n] = '\0';
        msg[strcspn(msg, "\n")] = '\0';
    }
    errno = saved;
    if (n > 2)
        return tm_err_sys(err, "%s %s (%s)", what, fstype, msg + 2); /* skip the "e " tag */
    return tm_err_sys(err, "%s %s", what, fstype);
}

int mount_create(const char *fstype, const char *source, const char *options, unsigned attrs, tm_err *err)
{
    _cleanup_close_ int fsfd = fsopen(fstype, FSOPEN_CLOEXEC);
    if (fsfd < 0)
        return tm_err_sys(err, "cannot open file system type %s", fstype);
    if (source && fsconfig(fsfd, FSCONFIG_SET_STRING, "source", source, 0) < 0)
        return fs_error(fsfd, err, "bad source for", fstype);
    /* A read-only mount of a writable superblock would still open the device for writing. */
    if ((attrs & MOUNT_ATTR_RDONLY) && fsconfig(fsfd, FSCONFIG_SET_FLAG, "ro", NULL, 0) < 0)
        return fs_error(fsfd, err, "cannot make read-only:", fstype);
    char opts[4096];
    if (snprintf(opts, sizeof(opts), "%s", options ? options : "") >= (int)sizeof(opts))
        return tm_err_set(err, ENAMETOOLONG, "%s options too long", fstype);
    char *save = NULL;
    for (char *o = strtok_r(opts, ",", &save); o; o = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(o, '=');
        int r;
        if (eq) {
            *eq = '\0';
            r = fsconfig(fsfd, FSCONFIG_SET_STRING, o, eq + 1, 0);
        } else {
            r = fsconfig(fsfd, FSCONFIG_SET_FLAG, o, NULL, 0);
        }
        if (r < 0)
            return fs_error(fsfd, err, "bad option for", fstype);
    }
    if (fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
        return fs_error(fsfd, err, "cannot create", fstype);
    int mfd = fsmount(fsfd, FSMOUNT_CLOEXEC, attrs);
    if (mfd < 0)
        return fs_error(fsfd, err, "cannot mount", fstype);
    return mfd;
}

int mount_attach(int mnt_fd, int target_fd, unsigned attrs, int userns_fd, tm_err *err)
{
    struct mount_attr attr = {.attr_set = attrs};
    if (userns_fd >= 0) {
        attr.attr_set |= MOUNT_ATTR_IDMAP;
        attr.userns_fd = (uint64_t)userns_fd;
    }
    if (attr.attr_set && mount_setattr(mnt_fd, "", AT_EMPTY_PATH, &attr, sizeof(attr)) < 0)
        return tm_err_sys(err, "cannot set %s", userns_fd >= 0 ? "the id mapping" : "mount attributes");
    if (move_mount(mnt_fd, "", target_fd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
        return tm_err_sys(err, "cannot attach the mount");
    return 0;
}

int mount_new_fs(int target_fd, const char *fstype, const char *source, const char *options, unsigned attrs,
                 tm_err *err)
{
    _cleanup_close_ int mfd = mount_create(fstype, source, options, attrs, err);
    if (mfd < 0)
        return mfd;
    int r = mount_attach(mfd, target_fd, 0, -1, err);
    return r < 0 ? tm_err_prefix(err, "%s", fstype) : 0;
}

int mount_new_fs_in(int rootfd, const char *path, const char *fstype, const char *options, unsigned attrs, tm_err *err)
{
    _cleanup_close_ int t = mkdir_in_root(rootfd, path, 0755, (uid_t)-1, (gid_t)-1, err);
    if (t < 0)
        return t;
    int r = mount_new_fs(t, fstype, fstype, options, attrs, err);
    return r < 0 ? tm_err_prefix(err, "/%s", path) : 0;
}

int bind_mount_at(int src_dirfd, const char *src, int target_fd, unsigned attrs, int userns_fd, tm_err *err)
{
    _cleanup_close_ int tfd =
        open_tree(src_dirfd, src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (src[0] ? 0 : AT_EMPTY_PATH));
    if (tfd < 0)
        return tm_err_sys(err, "cannot clone mount %s", src[0] ? src : "(fd)");
    int r = mount_attach(tfd, target_fd, attrs, userns_fd, err);
    return r < 0 ? tm_err_prefix(err, "bind mount of %s", src[0] ? src : "(fd)") : 0;
}

int loop_attach(const char *image, bool read_only, char *ret_devpath, size_t size, tm_err *err)
{
    _cleanup_close_ int ifd = open(image, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (ifd < 0)
        return tm_err_sys(err, "cannot open image %s", image);
    return loop_attach_fd(ifd, image, read_only, ret_devpath, size, err);
}

int loop_attach_fd(int ifd, const char *image, bool read_only, char *ret_devpath, size_t size, tm_err *err)
{
    char devpath[32];
    _cleanup_close_ int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (ctl < 0)
        return tm_err_sys(err, "cannot open /dev/loop-control");
    /* GET_FREE and CONFIGURE race with other users of loop devices: retry on EBUSY. */
    for (int attempt = 0; attempt < 64; attempt++) {
        int nr = ioctl(ctl, LOOP_CTL_GET_FREE);
        if (nr < 0)
            return tm_err_sys(err, "no free loop device");
        snprintf(devpath, sizeof(devpath), "/dev/loop%d", nr);
        _cleanup_close_ int lfd = open(devpath, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
        if (lfd < 0) {
            if (errno == ENOENT) /* node not created yet (no udev) */
                continue;
            return tm_err_sys(err, "cannot open %s", devpath);
        }
        struct loop_config cfg = {
            .fd = (uint32_t)ifd,
            .info = {.lo_flags = LO_FLAGS_AUTOCLEAR | (read_only ? LO_FLAGS_READ_ONLY : 0)},
        };
        snprintf((char *)cfg.info.lo_file_name, sizeof(cfg.info.lo_file_name), "%s", image);
        if (ioctl(lfd, LOOP_CONFIGURE, &cfg) == 0) {
            snprintf(ret_devpath, size, "%s", devpath);
            return steal_fd(lfd);
        }
        if (errno != EBUSY)
            return tm_err_sys(err, "cannot attach %s to %s", image, devpath);
    }
    return tm_err_set(err, EBUSY, "cannot find a free loop device for %s", image);
}

bool loop_in_use(const char *image)
{
    struct stat want;
    if (stat(image, &want) < 0)
        return false;
    _cleanup_(closedirp) DIR *dir = opendir("/sys/block");
    if (!dir)
        return false;
    struct dirent *de;
    while ((de = readdir(dir))) {
        if (strncmp(de->d_name, "loop", 4) != 0)
            continue;
        char path[PATH_MAX], backing[PATH_MAX];
        snprintf(path, sizeof(path), "/sys/block/%s/loop/backing_file", de->d_name);
        if (read_string_file(path, backing, sizeof(backing)) < 0)
            continue;
        struct stat st;
        if (stat(backing, &st) == 0 && st.st_dev == want.st_dev && st.st_ino == want.st_ino)
            return true;
    }
    return false;
}
