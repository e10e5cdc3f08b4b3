/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Which file system a GuestOS image holds, by its superblock (image_type.h). */
#include "image_type.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

/* What the image's superblock says it is: squashfs (magic "hsqs" at 0), erofs (0xE0F5E1E2 at
 * 1024), ext2/3/4 (0xEF53 at 1024 + 56); NULL for anything else. */
static const char *image_magic_type(int fd)
{
    uint8_t b[4];
    if (pread(fd, b, 4, 0) == 4 && memcmp(b, "hsqs", 4) == 0)
        return "squashfs";
    if (pread(fd, b, 4, 1024) == 4 && (b[0] | b[1] << 8 | b[2] << 16 | (uint32_t)b[3] << 24) == 0xE0F5E1E2u)
        return "erofs";
    if (pread(fd, b, 2, 1024 + 56) == 2 && (b[0] | b[1] << 8) == 0xEF53)
        return "ext4";
    return NULL;
}

int image_check_fs_type(int fd, const struct guestos_mount *m, const char *label, tm_err *err)
{
    const char *found = image_magic_type(fd);
    if (found && strcmp(found, m->fs_type) == 0)
        return 0;
    if (!found)
        return tm_err_set(err, EINVAL,
                          "image %s of %s is not a squashfs, erofs or ext4 file system, "
                          "but guestos.json says fs_type \"%s\"",
                          m->image, label, m->fs_type);
    return tm_err_set(err, EINVAL, "image %s of %s is a %s image, but guestos.json says fs_type \"%s\"", m->image,
                      label, found, m->fs_type);
}
