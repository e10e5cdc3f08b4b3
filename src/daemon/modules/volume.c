/* SPDX-License-Identifier: GPL-2.0-or-later */
/* module_volume: the container's root file system.
 *
 *   lower   the GuestOS's root image, hashed on the fd that is then attached to the loop
 *           device (images.c), read-only, id-mapped to the container's user namespace; or, for
 *           development, a rootfs directory or image
 *   data    the persistent data image (ext4 on an autoclear loop device, created on first start)
 *           holding the overlay's upper and work directories; a tmpfs if data_size_mb is 0.
 *           With a token, upper and work live in encrypted/ (fscrypt v2): the setup process hands
 *           trustmed the mounted volume, trustmed adds the key and sets the policy (fscrypt.c),
 *           and only then does setup go on. The key leaves the kernel with the file system.
 *   root    overlay of both (or lower alone for a "shared" root), plus /dev (tmpfs with allowed
 *           nodes only), then the GuestOS's further mounts (/proc and /sys: module_kernfs)
 *
 * All of it is mounted by the setup process in its private mount namespace, which init inherits:
 * no mount is ever visible on the host, and everything disappears with the container's last
 * process (the loop devices detach themselves). Nothing is left to unmount after a crash. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "daemon.h"
#include "fdutil.h"
#include "fileio.h"
#include "fscrypt.h"
#include "images.h"
#include "storage_dmcrypt.h"
#include "tokens.h"
#include "tokens_migrated.h"
#include "module.h"
#include "mount_util.h"
#include "syncmsg.h"
#include "volume.h"

#define SQUASHFS_MAGIC "hsqs"
#define EROFS_MAGIC 0xE0F5E1E2u
#define EROFS_SB_OFFSET 1024
#define DATA_KEY_BYTES 64

static int detect_rootfs(const char *path, enum rootfs_type *type, tm_err *err)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return tm_err_sys(err, "root file system %s", path);
    if (S_ISDIR(st.st_mode)) {
        *type = ROOTFS_DIR;
        return 0;
    }
    if (!S_ISREG(st.st_mode))
        return tm_err_set(err, EINVAL, "root file system %s is neither a directory nor an image", path);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return tm_err_sys(err, "cannot open %s", path);
    char magic[4];
    uint32_t erofs = 0;
    if (pread(fd, magic, sizeof(magic), 0) == 4 && memcmp(magic, SQUASHFS_MAGIC, 4) == 0) {
        *type = ROOTFS_SQUASHFS;
        return 0;
    }
    if (pread(fd, &erofs, sizeof(erofs), EROFS_SB_OFFSET) == 4 && erofs == EROFS_MAGIC) {
        *type = ROOTFS_EROFS;
        return 0;
    }
    return tm_err_set(err, EINVAL, "%s is not a squashfs or erofs image", path);
}

static void sub_path(char *out, size_t size, const struct start_ctx *ctx, const char *name)
{
    snprintf(out, size, "%s/%s", ctx->run_dir, name);
}

int volume_check_rootfs(const struct container_config *cfg, tm_err *err)
{
    enum rootfs_type found;
    int r = detect_rootfs(cfg->rootfs, &found, err);
    if (r < 0)
        return tm_err_prefix(err, "$.rootfs.path");
    if (cfg->rootfs_type != ROOTFS_AUTO && cfg->rootfs_type != found)
        return tm_err_set(err, EINVAL, "$.rootfs.type: %s is a %s, but the config says %s", cfg->rootfs,
                          rootfs_type_name(found), rootfs_type_name(cfg->rootfs_type));
    return 0;
}

static int volume_prepare(struct start_ctx *ctx, tm_err *err)
{
    int r = ctx->guestos ? 0 : volume_check_rootfs(ctx->cfg, err);
    if (r < 0)
        return r;
    const char *dirs[] = {"", "lower", "data", "root"};
    for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
        char path[PATH_MAX];
        sub_path(path, sizeof(path), ctx, dirs[i]);
        if (mkdir(path, 0700) < 0 && errno != EEXIST)
            return tm_err_sys(err, "cannot create %s", path);
    }
    return 0;
}

/* ---- setup process ------------------------------------------------------------------------ */

/* Mount an image file (through an autoclear loop device; EROFS straight from the file where the
 * kernel can) as a detached mount. Returns its fd. */
static int mount_image(const char *fstype, const char *image, unsigned attrs, tm_err *err)
{
    if (strcmp(fstype, "erofs") == 0) {
        tm_err ferr;
        int mfd = mount_create("erofs", image, NULL, attrs, &ferr);
        if (mfd >= 0)
            return mfd;
    }
    char dev[64];
    /* The mount holds the loop device; closing lfd lets autoclear detach it when the mount goes. */
    _cleanup_close_ int lfd = loop_attach(image, (attrs & MOUNT_ATTR_RDONLY) != 0, dev, sizeof(dev), err);
    if (lfd < 0)
        return lfd;
    return mount_create(fstype, dev, NULL, attrs, err);
}

static int mount_lower(struct start_ctx *ctx, tm_err *err)
{
    char lower[PATH_MAX];
    sub_path(lower, sizeof(lower), ctx, "lower");
    _cleanup_close_ int target = open(lower, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (target < 0)
        return tm_err_sys(err, "cannot open %s", lower);
    unsigned attrs = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV;
    if (ctx->guestos) {
        const struct guestos *g = ctx->guestos;
        _cleanup_close_ int mfd = image_mount_verified(ctx, &g->cfg->mounts[g->cfg->root], attrs, err);
        return mfd < 0 ? mfd : mount_attach(mfd, target, 0, ctx->userns_fd, err);
    }
    enum rootfs_type type;
    int r = detect_rootfs(ctx->cfg->rootfs, &type, err);
    if (r < 0)
        return r;
    if (type == ROOTFS_DIR)
        return bind_mount_at(AT_FDCWD, ctx->cfg->rootfs, target, attrs, ctx->userns_fd, err);
    _cleanup_close_ int mfd = mount_image(rootfs_type_name(type), ctx->cfg->rootfs, attrs, err);
    if (mfd < 0)
        return mfd;
    return mount_attach(mfd, target, 0, ctx->userns_fd, err);
}

/* Run mkfs.ext4 on path; its complaints become the error message. */
static int run_mkfs(const char *path, uint32_t owner, tm_err *err)
{
    _cleanup_close_pair_ int pipefd[2] = {-1, -1};
    if (pipe2(pipefd, O_CLOEXEC) < 0)
        return tm_err_sys(err, "pipe");
    char owner_opt[64];
    snprintf(owner_opt, sizeof(owner_opt), "root_owner=%u:%u", owner, owner);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return tm_err_sys(err, "fork");
    if (pid == 0) {
        /* An aborted start kills the setup process: mkfs must not go on writing the image. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        dup2(pipefd[1], STDERR_FILENO);
        dup2(pipefd[1], STDOUT_FILENO);
        /* -m 0: no blocks reserved for host root, the container's root is the only user.
         * -O encrypt: fscrypt (a file system without it cannot be encrypted later). */
        const char *argv[] = {"mkfs.ext4", "-q",      "-F", "-m",           "0",  "-O", "encrypt",
                              "-E",        owner_opt, "-L", "trustme-data", path, NULL};
        execv("/sbin/mkfs.ext4", (char **)argv);
        execv("/usr/sbin/mkfs.ext4", (char **)argv);
        _exit(127);
    }
    close_and_reset(pipefd[1]);
    char out[512] = "";
    ssize_t n = read_all(pipefd[0], out, sizeof(out) - 1);
    close_and_reset(pipefd[0]);
    out[n > 0 ? n : 0] = '\0';
    out[strcspn(out, "\n")] = '\0';
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return tm_err_sys(err, "waitpid");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return tm_err_set(err, EIO, "mkfs.ext4 failed (status %d)%s%s", WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                          out[0] ? ": " : "", out);
    return 0;
}

/* A new, sparse data image of the configured size (the first start). */
static int make_sparse(struct start_ctx *ctx, const char *path, tm_err *err)
{
    char msg[128];
    snprintf(msg, sizeof(msg), "creating the data volume (%llu MiB)...", (unsigned long long)ctx->cfg->data_size_mb);
    tm_sync_send_text(ctx->sync_fd, TM_SYNC_PROGRESS, msg);
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return tm_err_sys(err, "cannot create %s", path);
    if (ftruncate(fd, (off_t)(ctx->cfg->data_size_mb << 20)) < 0) {
        int r = tm_err_sys(err, "cannot size %s", path);
        unlink(path);
        return r;
    }
    return 0;
}

/* The data image is made under a temporary name and renamed into place only when complete, so
 * a crash half-way never leaves an image that a later start would use. */
static int create_data_image(struct start_ctx *ctx, const char *image, tm_err *err)
{
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof(tmp), "%s.new", image);
    int r = make_sparse(ctx, tmp, err);
    if (r < 0)
        return r;
    _cleanup_close_ int fd = open(tmp, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    r = fd < 0 ? tm_err_sys(err, "cannot open %s", tmp) : run_mkfs(tmp, ctx->uid_base, err);
    if (r == 0 && fsync(fd) < 0)
        r = tm_err_sys(err, "cannot sync %s", tmp);
    if (r == 0 && rename(tmp, image) < 0)
        r = tm_err_sys(err, "cannot rename %s", tmp);
    if (r < 0) {
        unlink(tmp);
        return r;
    }
    fsync_parent(image);
    return 0;
}

/* dm-crypt: ask trustmed for the key, received straight into locked memory. */
static int request_key(struct start_ctx *ctx, struct secret *key, tm_err *err)
{
    int r = modules_await_prepared(ctx, err);
    if (r < 0)
        return r;
    r = tm_sync_send(ctx->sync_fd, TM_SYNC_KEYREQ, NULL, 0, -1);
    if (r == 0)
        r = tm_sync_recv_exact(ctx->sync_fd, TM_SYNC_KEY, key->data, (uint32_t)key->len);
    if (r < 0)
        return tm_err_set(err, EPROTO, "trustmed did not hand over the data key: %s", strerror(-r));
    return 0;
}

/* dm-crypt: the image is a LUKS2 volume (storage_dmcrypt.c); ext4 lives on the mapped device,
 * made there at the first start. */
static int mount_dmcrypt(struct start_ctx *ctx, const char *image, int target, tm_err *err)
{
    char tmp[PATH_MAX + 8], name[64], mapped[96], dev[64];
    bool fresh = access(image, F_OK) < 0;
    snprintf(tmp, sizeof(tmp), "%s.new", image);
    dmcrypt_name(ctx->c->uuid, name, sizeof(name));
    snprintf(mapped, sizeof(mapped), "/dev/mapper/%s", name);
    int r = 0;
    if (fresh)
        r = make_sparse(ctx, tmp, err);
    else if (loop_in_use(image))
        return tm_err_set(err, EBUSY, "the data volume %s is still in use by a loop device", image);
    if (r < 0)
        return r;
    {
        /* The mapped device holds the loop device from here on; autoclear detaches it when the
         * mapping goes (trustmed removes it after the stop). */
        _cleanup_close_ int lfd = loop_attach(fresh ? tmp : image, false, dev, sizeof(dev), err);
        _cleanup_secret_ struct secret *key = NULL;
        r = lfd < 0 ? lfd : secret_new(DATA_KEY_BYTES, &key, err);
        if (r == 0 && (r = request_key(ctx, key, err)) == 0)
            r = dmcrypt_open(dev, name, key, fresh, ctx->sync_fd, err);
    }
    if (r == 0 && fresh)
        r = run_mkfs(mapped, ctx->uid_base, err);
    if (r == 0 && fresh && rename(tmp, image) < 0)
        r = tm_err_sys(err, "cannot rename %s", tmp);
    if (r < 0) {
        if (fresh)
            unlink(tmp);
        return r;
    }
    if (fresh)
        fsync_parent(image);
    _cleanup_close_ int mfd = mount_create("ext4", mapped, NULL, MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID, err);
    return mfd < 0 ? mfd : mount_attach(mfd, target, 0, -1, err);
}

/* Where the overlay's upper and work directories are, inside the data volume. */
static const char *layers_dir(const struct start_ctx *ctx)
{
    return ctx->crypt == DATA_FSCRYPT ? FSCRYPT_DIR "/" : "";
}

/* Hand trustmed the mounted volume's root and wait until it has added the key (fscrypt.h). */
static int unlock_data(struct start_ctx *ctx, const char *data, tm_err *err)
{
    int r = modules_await_prepared(ctx, err);
    if (r < 0)
        return r;
    _cleanup_close_ int fd = open(data, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return tm_err_sys(err, "cannot open %s", data);
    r = tm_sync_send(ctx->sync_fd, TM_SYNC_DATAFS, NULL, 0, fd);
    if (r < 0) {
        errno = -r;
        return tm_err_sys(err, "cannot hand the data volume to trustmed");
    }
    /* The sync socket does not block (tm_sync_recv): wait for trustmed's answer here. */
    struct pollfd p = {.fd = ctx->sync_fd, .events = POLLIN};
    while (poll(&p, 1, -1) < 0 && errno == EINTR)
        ;
    tm_sync_msg msg;
    r = tm_sync_recv(ctx->sync_fd, &msg);
    if (r > 0 && msg.fd >= 0)
        close(msg.fd);
    if (r <= 0 || msg.type != TM_SYNC_CONTINUE)
        return tm_err_set(err, EPROTO, "trustmed did not unlock the data volume");
    return 0;
}

/* A migrated container's volume (docs/MIGRATION.md): its files belong to the source's uid range;
 * at its first start here every owner in that range moves by the same offset into this device's
 * range (lchown, no symlink followed, not across mounts), then the note goes. Owners outside the
 * source's range are left alone: a bundle can only hand files to the container itself. */
static uint32_t shift_from, shift_to;
static int shift_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)flag;
    (void)ftw;
    uid_t u = st->st_uid;
    gid_t g = st->st_gid;
    bool move_u = u >= shift_from && u - shift_from < TM_IDS_PER_CONTAINER;
    bool move_g = g >= shift_from && g - shift_from < TM_IDS_PER_CONTAINER;
    if ((move_u || move_g) && lchown(path, move_u ? u - shift_from + shift_to : (uid_t)-1,
                                     move_g ? g - shift_from + shift_to : (gid_t)-1) < 0)
        return -1;
    return 0;
}

static int shift_migrated_owners(struct start_ctx *ctx, const char *data, tm_err *err)
{
    char note[PATH_MAX + 32], text[32];
    snprintf(note, sizeof(note), "%s/" TOKENS_MIGRATED_UID_FILE, ctx->data_dir);
    if (read_string_file(note, text, sizeof(text)) < 0)
        return 0; /* not migrated, or moved already */
    unsigned long from = strtoul(text, NULL, 10);
    if (from != ctx->uid_base && from <= UINT32_MAX) {
        shift_from = (uint32_t)from;
        shift_to = ctx->uid_base;
        if (nftw(data, shift_one, 16, FTW_PHYS | FTW_MOUNT) != 0)
            return tm_err_sys(err, "cannot move the migrated volume's owners into this device's range");
    }
    if (unlink(note) < 0 && errno != ENOENT)
        return tm_err_sys(err, "cannot remove %s", note);
    return 0;
}

static int mount_data(struct start_ctx *ctx, tm_err *err)
{
    char data[PATH_MAX], image[PATH_MAX];
    sub_path(data, sizeof(data), ctx, "data");
    snprintf(image, sizeof(image), "%s/data.img", ctx->data_dir);
    _cleanup_close_ int target = open(data, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (target < 0)
        return tm_err_sys(err, "cannot open %s", data);
    int r;
    if (ctx->cfg->data_size_mb == 0) {
        char opts[96];
        snprintf(opts, sizeof(opts), "mode=0755,uid=%u,gid=%u", ctx->uid_base, ctx->uid_base);
        r = mount_new_fs(target, "tmpfs", "tmpfs", opts, MOUNT_ATTR_NODEV, err);
    } else if (ctx->crypt == DATA_DMCRYPT) {
        r = mount_dmcrypt(ctx, image, target, err);
    } else {
        if (access(image, F_OK) < 0 && (r = create_data_image(ctx, image, err)) < 0)
            return r;
        /* Two mounts of one ext4 image through two loop devices would corrupt it. */
        if (loop_in_use(image))
            return tm_err_set(err, EBUSY, "the data volume %s is still in use by a loop device", image);
        _cleanup_close_ int mfd = mount_image("ext4", image, MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID, err);
        r = mfd < 0 ? mfd : mount_attach(mfd, target, 0, -1, err);
    }
    if (r < 0)
        return r;
    if (ctx->crypt == DATA_FSCRYPT && (r = unlock_data(ctx, data, err)) < 0)
        return r;
    if ((r = shift_migrated_owners(ctx, data, err)) < 0)
        return r;
    const char *dirs[] = {"upper", "work"};
    for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
        char path[PATH_MAX + 32];
        snprintf(path, sizeof(path), "%s/%s%s", data, layers_dir(ctx), dirs[i]);
        if (mkdir(path, 0755) < 0 && errno != EEXIST)
            return tm_err_sys(err, "cannot create %s", path);
        if (chown(path, ctx->uid_base, ctx->uid_base) < 0)
            return tm_err_sys(err, "cannot chown %s", path);
    }
    return 0;
}

/* The overlay is given its directories relative to the container's run dir, which the setup
 * process (a child of its own) enters for the mount: overlayfs shows its options as given, in
 * the container's /proc/mounts too, and absolute ones would tell the container the host's
 * paths (its data dir, its UUID; docs/STORAGE.md). */
static int mount_overlay(struct start_ctx *ctx, int target, tm_err *err)
{
    char opts[128];
    snprintf(opts, sizeof(opts), "lowerdir=lower,upperdir=data/%supper,workdir=data/%swork", layers_dir(ctx),
             layers_dir(ctx));
    _cleanup_close_ int here = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (here < 0 || chdir(ctx->run_dir) < 0)
        return tm_err_sys(err, "cannot enter %s", ctx->run_dir);
    int r = mount_new_fs(target, "overlay", "overlay", opts, MOUNT_ATTR_NODEV, err);
    if (fchdir(here) < 0 && r == 0)
        r = tm_err_sys(err, "cannot go back to the working directory");
    return r;
}

static int mount_root(struct start_ctx *ctx, tm_err *err)
{
    char lower[PATH_MAX];
    sub_path(lower, sizeof(lower), ctx, "lower");
    _cleanup_close_ int target = open(ctx->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (target < 0)
        return tm_err_sys(err, "cannot open %s", ctx->root);
    int r;
    if (ctx->guestos && ctx->guestos->cfg->mounts[ctx->guestos->cfg->root].kind == GMOUNT_SHARED)
        r = bind_mount_at(AT_FDCWD, lower, target, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV, -1, err);
    else
        r = mount_overlay(ctx, target, err);
    if (r < 0)
        return r;
    ctx->root_fd = open(ctx->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (ctx->root_fd < 0)
        return tm_err_sys(err, "cannot open %s", ctx->root);
    /* /dev: a small tmpfs owned by the container's root; module_devices fills it. */
    _cleanup_close_ int dev = mkdir_in_root(ctx->root_fd, "dev", 0755, ctx->uid_base, ctx->uid_base, err);
    if (dev < 0)
        return dev;
    char devopts[96];
    snprintf(devopts, sizeof(devopts), "mode=0755,size=1m,nr_inodes=4096,uid=%u,gid=%u", ctx->uid_base, ctx->uid_base);
    return mount_new_fs(dev, "tmpfs", "tmpfs", devopts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, err);
}

static int volume_setup(struct start_ctx *ctx, tm_err *err)
{
    int r;
    if ((r = mount_lower(ctx, err)) < 0 || (r = mount_data(ctx, err)) < 0 || (r = mount_root(ctx, err)) < 0)
        return r;
    if (!ctx->guestos)
        return 0;
    char data[PATH_MAX + 16];
    sub_path(data, sizeof(data), ctx, "data");
    if (ctx->crypt == DATA_FSCRYPT)
        snprintf(data + strlen(data), sizeof(data) - strlen(data), "/%s", FSCRYPT_DIR);
    return images_mount_rest(ctx, data, err);
}

/* ---- container init, before pivot_root ---------------------------------------------------- */

static const unsigned kernel_fs_attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;

static int volume_child(struct start_ctx *ctx, tm_err *err)
{
    /* The setup process left us in the root (see setup_main), with /proc and /sys mounted and
     * masked (module_kernfs). Mounts copied into a namespace of a less privileged user namespace
     * are locked, and pivot_root refuses a locked new root: re-bind the root (with everything
     * below it, still locked) as this namespace's own mount and work in that. */
    _cleanup_close_ int inherited = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (inherited < 0)
        return tm_err_sys(err, "cannot open the container's root");
    _cleanup_close_ int rootfd =
        open_tree(inherited, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | AT_EMPTY_PATH);
    if (rootfd < 0)
        return tm_err_sys(err, "cannot clone the container's root");
    int r = mount_attach(rootfd, inherited, 0, -1, err);
    if (r < 0)
        return tm_err_prefix(err, "re-binding the root");
    /* These belong to the container (its devpts instance, its IPC namespace's mqueue): made
     * here, inside its user namespace, so its root owns them. */
    if ((r = mount_new_fs_in(rootfd, "dev/pts", "devpts", "newinstance,ptmxmode=0666,mode=0620,gid=5",
                             MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, err)) < 0 ||
        (r = mount_new_fs_in(rootfd, "dev/shm", "tmpfs", "mode=1777,size=65536k", kernel_fs_attrs, err)) < 0 ||
        (r = mount_new_fs_in(rootfd, "dev/mqueue", "mqueue", NULL, kernel_fs_attrs, err)) < 0)
        return r;
    /* pivot_root(".", ".") stacks the old root on top of the new one; detaching it leaves the
     * container's root alone. Only then chdir into it, so no host directory stays reachable. */
    if (fchdir(rootfd) < 0)
        return tm_err_sys(err, "cannot enter the container's root");
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        return tm_err_sys(err, "pivot_root");
    if (umount2(".", MNT_DETACH) < 0)
        return tm_err_sys(err, "cannot detach the host's root");
    if (chdir("/") < 0)
        return tm_err_sys(err, "chdir /");
    return 0;
}

/* trustmed, after the last process: a dm-crypt mapping outlives the mount namespace. */
static void volume_cleanup(struct container *c)
{
    if (c->d->device.storage_backend != STORAGE_DMCRYPT || !container_encrypted(c))
        return;
    char name[64];
    dmcrypt_name(c->uuid, name, sizeof(name));
    dmcrypt_remove(name);
}

const struct tm_module module_volume = {
    .name = "volume",
    .prepare = volume_prepare,
    .cleanup = volume_cleanup,
    .setup = volume_setup,
    .child = volume_child,
};
