/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Applying an OCI layer: libarchive reads the tar stream, and every entry is made with *at()
 * calls relative to a directory opened by openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), so no
 * entry of a hostile layer reaches outside the tree or through a symbolic link an earlier entry
 * or layer placed (the kernel checks each path component, not a string test of ours). Nothing
 * is skipped silently: an entry we will not make fails the whole import, naming layer and entry. */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "cleanup.h"
#include "guestos.h"
#include "oci.h"

#define WHITEOUT ".wh."
#define OPAQUE ".wh..wh..opq"

int oci_open_beneath(int root_fd, const char *path, int flags, tm_err *err)
{
    struct open_how how = {
        .flags = (uint64_t)(flags | O_CLOEXEC), /* RESOLVE_NO_SYMLINKS: the last one too */
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
    };
    int fd = (int)syscall(SYS_openat2, root_fd, *path ? path : ".", &how, sizeof(how));
    if (fd < 0) {
        if (errno == ELOOP)
            return tm_err_set(err, ELOOP, "%s goes through a symbolic link", path);
        if (errno == EXDEV)
            return tm_err_set(err, EXDEV, "%s leaves the tree", path);
        return tm_err_sys(err, "%s", path);
    }
    return fd;
}

/* The set of paths made by the current layer: an opaque directory or a whiteout hides what lower
 * layers put there, not what this layer put there before the marker (the spec lets a whiteout
 * come anywhere in its layer). Open addressing on FNV-1a. */
struct path_set {
    char **slots;
    size_t cap, n;
};

static uint64_t fnv(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return h;
}

static void set_clear(struct path_set *s)
{
    for (size_t i = 0; i < s->cap; i++)
        free(s->slots[i]);
    free(s->slots);
    *s = (struct path_set){0};
}

static bool set_has(const struct path_set *s, const char *p)
{
    if (!s->cap)
        return false;
    for (size_t i = fnv(p) & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
        if (!s->slots[i])
            return false;
        if (strcmp(s->slots[i], p) == 0)
            return true;
    }
}

static int set_add(struct path_set *s, const char *p)
{
    if (set_has(s, p))
        return 0;
    if ((s->n + 1) * 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        char **slots = calloc(cap, sizeof(char *));
        if (!slots)
            return -ENOMEM;
        for (size_t i = 0; i < s->cap; i++) {
            if (!s->slots[i])
                continue;
            size_t j = fnv(s->slots[i]) & (cap - 1);
            while (slots[j])
                j = (j + 1) & (cap - 1);
            slots[j] = s->slots[i];
        }
        free(s->slots);
        s->slots = slots;
        s->cap = cap;
    }
    size_t i = fnv(p) & (s->cap - 1);
    while (s->slots[i])
        i = (i + 1) & (s->cap - 1);
    if (!(s->slots[i] = strdup(p)))
        return -ENOMEM;
    s->n++;
    return 0;
}

/* Tar names are relative: "./a//b/" becomes "a/b", "." or "./" becomes "" (the root). Absolute
 * names and ".." components are refused, never rewritten: an image that has them is not one a
 * well-behaved tool made. */
static int clean_name(const char *in, char *out, size_t size)
{
    if (!in || in[0] == '/')
        return -EINVAL;
    size_t n = 0;
    for (const char *p = in; *p;) {
        size_t len = strcspn(p, "/");
        if (len == 2 && p[0] == '.' && p[1] == '.')
            return -EINVAL;
        if (len && !(len == 1 && p[0] == '.')) {
            if (n + (n ? 1 : 0) + len + 1 > size)
                return -ENAMETOOLONG;
            if (n)
                out[n++] = '/';
            memcpy(out + n, p, len);
            n += len;
        }
        p += len;
        while (*p == '/')
            p++;
    }
    out[n] = '\0';
    return 0;
}

/* Remove name in dir_fd, a whole tree if it is a directory; never follows a symbolic link. */
static int remove_at(int dir_fd, const char *name)
{
    if (unlinkat(dir_fd, name, 0) == 0 || errno == ENOENT)
        return 0;
    if (errno != EISDIR)
        return -errno;
    _cleanup_close_ int fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    _cleanup_(closedirp) DIR *d = fdopendir(fd);
    if (!d)
        return -errno;
    fd = -1; /* d owns it */
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        int r = remove_at(dirfd(d), e->d_name);
        if (r < 0)
            return r;
    }
    return unlinkat(dir_fd, name, AT_REMOVEDIR) < 0 ? -errno : 0;
}

/* Empty the directory at path (an opaque marker), keeping what this layer made in it. */
static int make_opaque(int root_fd, const char *dir, const struct path_set *made, tm_err *err)
{
    _cleanup_close_ int fd = oci_open_beneath(root_fd, dir, O_RDONLY | O_DIRECTORY, err);
    if (fd < 0)
        return fd == -ENOENT ? 0 : fd;
    _cleanup_(closedirp) DIR *d = fdopendir(fd);
    if (!d)
        return tm_err_sys(err, "cannot read %s", dir);
    fd = -1; /* d owns it */
    struct dirent *e;
    char path[PATH_MAX];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(path, sizeof(path), "%s%s%s", dir, *dir ? "/" : "", e->d_name);
        if (set_has(made, path))
            continue;
        int r = remove_at(dirfd(d), e->d_name);
        if (r < 0) {
            errno = -r;
            return tm_err_sys(err, "cannot remove %s", path);
        }
    }
    return 0;
}

/* The parent directory of path, made (0755, root) where the layer did not list it. */
static int open_parent(int root_fd, char *path, const char **ret_base, tm_err *err)
{
    char *slash = strrchr(path, '/');
    *ret_base = slash ? slash + 1 : path;
    if (!slash) {
        int fd = fcntl(root_fd, F_DUPFD_CLOEXEC, 3);
        return fd < 0 ? tm_err_sys(err, "dup") : fd;
    }
    *slash = '\0';
    int fd = oci_open_beneath(root_fd, path, O_PATH | O_DIRECTORY, NULL);
    if (fd == -ENOENT) {
        /* Make it component by component, each beneath the last. */
        int cur = fcntl(root_fd, F_DUPFD_CLOEXEC, 3);
        for (char *p = path; cur >= 0 && *p;) {
            size_t len = strcspn(p, "/");
            char c = p[len];
            p[len] = '\0';
            if (mkdirat(cur, p, 0755) < 0 && errno != EEXIST)
                fd = tm_err_sys(err, "cannot make directory %s", path);
            else
                fd = oci_open_beneath(cur, p, O_PATH | O_DIRECTORY, err);
            p[len] = c;
            close(cur);
            cur = fd;
            p += len;
            if (*p)
                p++;
        }
        fd = cur;
    } else if (fd < 0) {
        fd = oci_open_beneath(root_fd, path, O_PATH | O_DIRECTORY, err);
    }
    *slash = '/';
    if (fd == -ELOOP)
        tm_err_set(err, ELOOP, "its directory %.*s is, or is under, a symbolic link (writing through it is refused)",
                   (int)(slash - path), path);
    else if (fd == -ENOTDIR)
        tm_err_set(err, ENOTDIR, "a part of its directory %.*s is not a directory", (int)(slash - path), path);
    return fd;
}

static int write_data(struct archive *a, int fd, int64_t size, tm_err *err)
{
    const void *buf;
    size_t len;
    la_int64_t off;
    int r;
    while ((r = archive_read_data_block(a, &buf, &len, &off)) == ARCHIVE_OK) {
        if (off < 0 || (int64_t)len > size || off > size - (int64_t)len)
            return tm_err_set(err, EINVAL, "data beyond the entry's size");
        for (size_t done = 0; done < len;) {
            ssize_t n = pwrite(fd, (const char *)buf + done, len - done, off + (off_t)done);
            if (n < 0)
                return tm_err_sys(err, "cannot write");
            done += (size_t)n;
        }
    }
    if (r != ARCHIVE_EOF)
        return tm_err_set(err, EIO, "%s", archive_error_string(a) ? archive_error_string(a) : "read error");
    /* Sparse files end in a hole that no block covers. */
    if (ftruncate(fd, size) < 0)
        return tm_err_sys(err, "cannot set the size");
    return 0;
}

/* Extended attributes that are the file's: file capabilities and the user namespace. Others
 * (security.selinux of the build host, trusted.* that overlayfs would read as its own) are not
 * the image's to set and are left out; the count is reported. */
static bool xattr_wanted(const char *name)
{
    return !strcmp(name, "security.capability") || !strncmp(name, "user.", 5);
}

/* Owner, then mode (a chown clears set-user-ID bits), then extended attributes (a chown clears
 * security.capability). fd is O_RDONLY or O_PATH for directories and files. */
static int set_meta(int fd, struct archive_entry *e, bool symlink, unsigned *dropped, tm_err *err)
{
    if (fchownat(fd, "", (uid_t)archive_entry_uid(e), (gid_t)archive_entry_gid(e),
                 AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
        return tm_err_sys(err, "cannot set the owner %lld:%lld", (long long)archive_entry_uid(e),
                          (long long)archive_entry_gid(e));
    if (symlink)
        return 0;
    char proc[64];
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    if (chmod(proc, archive_entry_perm(e) & 07777) < 0)
        return tm_err_sys(err, "cannot set the mode %o", archive_entry_perm(e));
    const char *name;
    const void *val;
    size_t len;
    archive_entry_xattr_reset(e);
    while (archive_entry_xattr_next(e, &name, &val, &len) == ARCHIVE_OK) {
        if (!xattr_wanted(name)) {
            (*dropped)++;
            continue;
        }
        if (setxattr(proc, name, val, len, 0) < 0)
            return tm_err_sys(err, "cannot set the extended attribute %s", name);
    }
    return 0;
}

struct applier {
    int root_fd;
    bool plain; /* an archive of a layout: regular files and directories only, no owners */
    const char *what;
    struct oci_budget *budget;
    struct path_set made;
    unsigned dropped_xattrs;
};

static int apply_entry(struct applier *ap, struct archive *a, struct archive_entry *e, const char *path, tm_err *err)
{
    mode_t type = archive_entry_filetype(e);
    const char *hardlink = archive_entry_hardlink(e);
    if (ap->budget->entries++ >= ap->budget->max_entries)
        return tm_err_set(err, EFBIG, "more than %llu entries (the limit)",
                          (unsigned long long)ap->budget->max_entries);
    int64_t size = archive_entry_size_is_set(e) ? archive_entry_size(e) : 0;
    if (size < 0 || (uint64_t)size > ap->budget->max_bytes - ap->budget->bytes)
        return tm_err_set(err, EFBIG, "unpacks beyond the limit of %llu MiB (--max-size)",
                          (unsigned long long)(ap->budget->max_bytes >> 20));
    if (!hardlink && type != AE_IFREG && type != AE_IFDIR && (ap->plain || (type != AE_IFLNK && type != AE_IFIFO)))
        return tm_err_set(err, EPERM, "%s are refused",
                          type == AE_IFCHR || type == AE_IFBLK ? "device nodes" : "entries of this type");
    if (ap->plain && hardlink)
        return tm_err_set(err, EPERM, "links are refused in an image archive");

    char name[PATH_MAX];
    snprintf(name, sizeof(name), "%s", path);
    const char *base = name;
    if (!*path) { /* the root itself: its metadata only */
        if (type != AE_IFDIR || hardlink)
            return tm_err_set(err, EINVAL, "the root is not a directory");
        return ap->plain ? 0 : set_meta(ap->root_fd, e, false, &ap->dropped_xattrs, err);
    }
    _cleanup_close_ int pfd = open_parent(ap->root_fd, name, &base, err);
    if (pfd < 0)
        return pfd;

    if (!ap->plain && !strncmp(base, WHITEOUT, strlen(WHITEOUT))) {
        if (type != AE_IFREG || hardlink)
            return tm_err_set(err, EINVAL, "a whiteout that is not a regular file");
        if (!strcmp(base, OPAQUE)) {
            char dir[PATH_MAX];
            snprintf(dir, sizeof(dir), "%.*s", (int)(base - name - (base > name ? 1 : 0)), name);
            return make_opaque(ap->root_fd, dir, &ap->made, err);
        }
        const char *victim = base + strlen(WHITEOUT);
        if (!*victim || !strcmp(victim, ".") || !strcmp(victim, "..") || !strncmp(victim, WHITEOUT, 4))
            return tm_err_set(err, EINVAL, "a whiteout of nothing");
        char vpath[PATH_MAX];
        snprintf(vpath, sizeof(vpath), "%.*s%s", (int)(base - name), name, victim);
        if (set_has(&ap->made, vpath))
            return 0; /* hides lower layers only */
        int r = remove_at(pfd, victim);
        if (r < 0) {
            errno = -r;
            return tm_err_sys(err, "cannot remove %s", vpath);
        }
        return 0;
    }

    int r = set_add(&ap->made, path);
    if (r < 0)
        return tm_err_set(err, ENOMEM, "out of memory");
    struct stat st;
    bool exists = fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0;
    /* A directory over a directory merges; anything else replaces what was there. */
    if (exists && !(type == AE_IFDIR && !hardlink && S_ISDIR(st.st_mode))) {
        if ((r = remove_at(pfd, base)) < 0) {
            errno = -r;
            return tm_err_sys(err, "cannot replace the existing entry");
        }
        exists = false;
    }

    if (hardlink) {
        char target[PATH_MAX];
        if (clean_name(hardlink, target, sizeof(target)) < 0 || !*target)
            return tm_err_set(err, EPERM, "hard link to \"%s\", outside the tree", hardlink);
        const char *tbase;
        _cleanup_close_ int tfd = open_parent(ap->root_fd, target, &tbase, err);
        if (tfd < 0)
            return tm_err_prefix(err, "hard link target %s", target);
        if (fstatat(tfd, tbase, &st, AT_SYMLINK_NOFOLLOW) < 0)
            return tm_err_sys(err, "hard link target %s", target);
        if (S_ISDIR(st.st_mode))
            return tm_err_set(err, EPERM, "hard link to the directory %s", target);
        if (linkat(tfd, tbase, pfd, base, 0) < 0)
            return tm_err_sys(err, "cannot link to %s", target);
        return 0;
    }

    _cleanup_close_ int fd = -1;
    bool symlink = false;
    switch (type) {
    case AE_IFDIR:
        if (!exists && mkdirat(pfd, base, 0700) < 0)
            return tm_err_sys(err, "cannot make the directory");
        fd = openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        break;
    case AE_IFREG:
        fd = openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
            return tm_err_sys(err, "cannot create the file");
        ap->budget->bytes += (uint64_t)size;
        if ((r = write_data(a, fd, size, err)) < 0)
            return r;
        break;
    case AE_IFLNK: {
        const char *target = archive_entry_symlink(e);
        if (!target || !*target)
            return tm_err_set(err, EINVAL, "a symbolic link to nothing");
        if (symlinkat(target, pfd, base) < 0)
            return tm_err_sys(err, "cannot make the symbolic link");
        fd = openat(pfd, base, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        symlink = true;
        break;
    }
    case AE_IFIFO:
        if (mknodat(pfd, base, S_IFIFO | 0600, 0) < 0)
            return tm_err_sys(err, "cannot make the FIFO");
        fd = openat(pfd, base, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        break;
    }
    if (fd < 0)
        return tm_err_sys(err, "cannot open what was made");
    if (ap->plain)
        return 0;
    return set_meta(fd, e, symlink, &ap->dropped_xattrs, err);
}

static int apply(struct applier *ap, int fd, enum oci_compression comp, tm_err *err)
{
    struct archive *a = archive_read_new();
    if (!a)
        return tm_err_set(err, ENOMEM, "out of memory");
    if (comp == OCI_GZIP || comp == OCI_ANY)
        archive_read_support_filter_gzip(a);
    if (comp == OCI_ZSTD || comp == OCI_ANY)
        archive_read_support_filter_zstd(a);
    archive_read_support_format_tar(a);
    int r = 0;
    if (lseek(fd, 0, SEEK_SET) < 0)
        r = tm_err_sys(err, "%s: cannot seek", ap->what);
    else if (archive_read_open_fd(a, fd, 256 * 1024) != ARCHIVE_OK)
        r = tm_err_set(err, EINVAL, "%s: not a tar archive: %s", ap->what, archive_error_string(a));
    mode_t old_umask = umask(0);
    struct archive_entry *e;
    char path[PATH_MAX];
    while (r == 0) {
        if (gos_interrupted) { /* SIGINT/SIGTERM/SIGHUP: the caller removes what was unpacked */
            r = tm_err_set(err, EINTR, "interrupted");
            break;
        }
        int ar = archive_read_next_header(a, &e);
        if (ar == ARCHIVE_EOF)
            break;
        if (ar != ARCHIVE_OK && ar != ARCHIVE_WARN) {
            r = tm_err_set(err, EINVAL, "%s: bad or truncated archive: %s", ap->what, archive_error_string(a));
            break;
        }
        const char *raw = archive_entry_pathname(e);
        int cr = clean_name(raw, path, sizeof(path));
        if (cr == -ENAMETOOLONG)
            r = tm_err_set(err, ENAMETOOLONG, "%s: entry %.200s...: name too long", ap->what, raw);
        else if (cr < 0)
            r = tm_err_set(err, EPERM, "%s: entry %s: leaves the tree (an absolute name or \"..\")", ap->what,
                           raw ? raw : "(no name)");
        else if (ap->budget->max_path && strlen(path) > ap->budget->max_path)
            r = tm_err_set(err, ENAMETOOLONG,
                           "%s: entry %.200s...: its path in the unpacked tree would be longer than %d bytes", ap->what,
                           raw, PATH_MAX - 1);
        else if ((r = apply_entry(ap, a, e, path, err)) < 0)
            tm_err_prefix(err, "%s: entry %s", ap->what, raw);
    }
    umask(old_umask);
    archive_read_free(a);
    set_clear(&ap->made);
    return r;
}

int oci_apply_layer(int root_fd, int fd, enum oci_compression comp, const char *what, struct oci_budget *budget,
                    tm_err *err)
{
    struct applier ap = {.root_fd = root_fd, .what = what, .budget = budget};
    int r = apply(&ap, fd, comp, err);
    if (r == 0 && ap.dropped_xattrs)
        fprintf(stderr,
                "trustme-guestos: %s: left out %u extended attributes other than user.* and "
                "security.capability\n",
                what, ap.dropped_xattrs);
    return r;
}

int oci_unpack_archive(int dir_fd, int fd, const char *what, struct oci_budget *budget, tm_err *err)
{
    struct applier ap = {.root_fd = dir_fd, .plain = true, .what = what, .budget = budget};
    return apply(&ap, fd, OCI_PLAIN, err);
}
