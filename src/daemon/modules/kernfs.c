/* SPDX-License-Identifier: GPL-2.0-or-later */
/* module_kernfs: /proc and /sys of the container, and the masks over what the kernel shows there
 * that a container has no business reading or writing (docs/SECURITY.md).
 *
 * The masks must hold against the container's own root, who has CAP_SYS_ADMIN in its user
 * namespace and could unmount them. So they are mounted by init while it still has host
 * credentials and a mount namespace owned by the host's user namespace (spawn.c); module_userns
 * then moves init into the container's user namespace and only then into a mount namespace of
 * its own. The kernel locks (MNT_LOCKED) every mount it copies into a namespace owned by another
 * user namespace: none of them can be unmounted, moved, bound without its children or made
 * writable from inside, by init or by an exec session (which joins that namespace). */
#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>

#include "cleanup.h"
#include "module.h"
#include "mount_util.h"

static const unsigned kernel_fs_attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;

/* Kernel interfaces a container has no business writing or reading (as runtimes customarily do). */
static const char *const ro_paths[] = {"proc/sys", "proc/sysrq-trigger", "proc/irq", "proc/bus", "proc/fs"};
static const char *const hidden_files[] = {"proc/kcore",       "proc/keys",          "proc/timer_list",
                                           "proc/sched_debug", "proc/latency_stats", "proc/kallsyms",
                                           "proc/kpagecount",  "proc/kpageflags",    "proc/kpagecgroup"};
/* sys/devices/virtual/block: the loop devices' backing_file names other containers' data
 * images (their UUIDs, the host's data dir). */
static const char *const hidden_dirs[] = {"proc/acpi", "proc/scsi", "sys/firmware", "sys/devices/virtual/block"};

static int apply_masks(int rootfd, tm_err *err)
{
    tm_err ignore;
    for (size_t i = 0; i < ARRAY_SIZE(ro_paths); i++) {
        _cleanup_close_ int t = open_in_root(rootfd, ro_paths[i], O_PATH, &ignore);
        if (t < 0)
            continue; /* absent on this kernel */
        if (bind_mount_at(t, "", t, MOUNT_ATTR_RDONLY | kernel_fs_attrs, -1, err) < 0)
            return tm_err_prefix(err, "read-only /%s", ro_paths[i]);
    }
    _cleanup_close_ int null = open_in_root(rootfd, "dev/null", O_PATH, err);
    if (null < 0)
        return null;
    for (size_t i = 0; i < ARRAY_SIZE(hidden_files); i++) {
        _cleanup_close_ int t = open_in_root(rootfd, hidden_files[i], O_PATH, &ignore);
        if (t < 0)
            continue;
        if (bind_mount_at(null, "", t, MOUNT_ATTR_RDONLY, -1, err) < 0)
            return tm_err_prefix(err, "hiding /%s", hidden_files[i]);
    }
    for (size_t i = 0; i < ARRAY_SIZE(hidden_dirs); i++) {
        _cleanup_close_ int t = open_in_root(rootfd, hidden_dirs[i], O_PATH | O_DIRECTORY, &ignore);
        if (t < 0)
            continue;
        if (mount_new_fs(t, "tmpfs", "tmpfs", "size=0,mode=0555", MOUNT_ATTR_RDONLY | kernel_fs_attrs, err) < 0)
            return tm_err_prefix(err, "hiding /%s", hidden_dirs[i]);
    }
    return 0;
}

/* init, first of all: in the container's pid and network namespaces (so proc and sysfs show
 * those), with host credentials, in the root the setup process left it in. */
static int kernfs_child(struct start_ctx *ctx, tm_err *err)
{
    (void)ctx;
    _cleanup_close_ int rootfd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return tm_err_sys(err, "cannot open the container's root");
    int r;
    if ((r = mount_new_fs_in(rootfd, "proc", "proc", NULL, kernel_fs_attrs, err)) < 0 ||
        (r = mount_new_fs_in(rootfd, "sys", "sysfs", NULL, MOUNT_ATTR_RDONLY | kernel_fs_attrs, err)) < 0)
        return r;
    return apply_masks(rootfd, err);
}

const struct tm_module module_kernfs = {
    .name = "kernfs",
    .child = kernfs_child,
};
