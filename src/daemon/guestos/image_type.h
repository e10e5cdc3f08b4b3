/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Which file system a GuestOS image holds, by its superblock (image_type.c): checked at install
 * (guestos_install.c) and again at every mount (modules/images.c). */
#pragma once

#include "error.h"
#include "guestos.h"

/* Check the file system type guestos.json declares for an image against the image's own magic
 * (read from fd): a squashfs image declared ext4 would only fail at a start, with a kernel error
 * that names neither. label names the GuestOS ("busybox-3"). -EINVAL with a sentence. */
int image_check_fs_type(int fd, const struct guestos_mount *m, const char *label, tm_err *err);
