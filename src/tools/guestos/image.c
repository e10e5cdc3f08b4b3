/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Images: built by the distribution's tools, then hashed from the finished file. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "guestos.h"

/* Reproducible images, so that a rebuild of the same tree can be checked byte by byte:
 * every owner root (the tree may have been unpacked as any user; an imported OCI image keeps the
 * owners its layers gave, keep_owners), every timestamp 0, and
 * (erofs only, squashfs has none) a file system UUID derived from seed instead of a random one.
 * lz4: fast to decompress, which matters more on a device than the last percent of size. */
static int make_squashfs(const char *source, const char *image, bool keep_owners, tm_err *err)
{
    const char *argv[] = {"mksquashfs",
                          source,
                          image,
                          "-noappend",
                          "-quiet",
                          "-no-progress",
                          "-comp",
                          "lz4",
                          "-reproducible",
                          "-mkfs-time",
                          "0",
                          "-all-time",
                          "0",
                          keep_owners ? NULL : "-all-root",
                          NULL};
    return gos_run(argv, true, err);
}

static int make_erofs(const char *source, const char *image, const char *seed, bool keep_owners, tm_err *err)
{
    uint8_t d[32];
    tm_sha256(seed, strlen(seed), d);
    d[6] = (uint8_t)((d[6] & 0x0f) | 0x40); /* shaped like a v4 UUID: what blkid expects */
    d[8] = (uint8_t)((d[8] & 0x3f) | 0x80);
    char uuid[40];
    snprintf(uuid, sizeof(uuid), "-U%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", d[0], d[1],
             d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11], d[12], d[13], d[14], d[15]);
    const char *argv[] = {"mkfs.erofs", "-zlz4", "-T0", uuid, "--quiet", image, source, NULL, NULL};
    if (!keep_owners) {
        memmove(&argv[3], &argv[2], 5 * sizeof(argv[0]));
        argv[2] = "--all-root";
    }
    return gos_run(argv, true, err);
}

int gos_make_image(const char *source, const char *image_path, enum gos_fs fs, const char *seed, bool keep_owners,
                   tm_err *err)
{
    int r = fs == GOS_EROFS ? make_erofs(source, image_path, seed, keep_owners, err)
                            : make_squashfs(source, image_path, keep_owners, err);
    if (r < 0)
        return r;
    /* The tools leave the mode to our umask; a GuestOS is read by trustmed, whoever built it. */
    if (chmod(image_path, 0644) < 0)
        return tm_err_sys(err, "chmod %s", image_path);
    return 0;
}

int gos_hash_fd(int fd, char hex[TM_SHA256_HEX_LEN + 1], uint64_t *ret_size, tm_err *err)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return tm_err_sys(err, "fstat");
    if (!S_ISREG(st.st_mode))
        return tm_err_set(err, EINVAL, "not a regular file");
    uint8_t d[32];
    uint64_t n;
    int r = tm_sha256_fd(fd, d, &n, NULL, NULL, err);
    if (r < 0)
        return r;
    /* A size that is not what was hashed would make the daemon refuse the image. */
    if (n != (uint64_t)st.st_size)
        return tm_err_set(err, EIO, "changed while it was hashed (%llu bytes read, %lld before)", (unsigned long long)n,
                          (long long)st.st_size);
    tm_hex(d, sizeof(d), hex);
    *ret_size = n;
    return 0;
}

int gos_hash_file(const char *path, char hex[TM_SHA256_HEX_LEN + 1], uint64_t *ret_size, tm_err *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return tm_err_sys(err, "cannot open %s", path);
    int r = gos_hash_fd(fd, hex, ret_size, err);
    return r < 0 ? tm_err_prefix(err, "%s", path) : 0;
}
