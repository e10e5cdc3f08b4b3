/* SPDX-License-Identifier: GPL-2.0-or-later */
/* GuestOS images in the setup process: each one opened once, hashed on that fd (or found to be the
 * very inode verified at an earlier start, unchanged: image_cache.h), and the same fd attached to
 * the loop device — no window between the check and the use (docs/GUESTOS.md). */
#pragma once

#include "guestos.h"
#include "module.h"

/* A detached read-only mount of the image of m (a mount of ctx->guestos), after its size and
 * SHA-256 were checked. A mismatch is -EBADMSG: "image NAME of GUESTOS corrupted". */
int image_mount_verified(const struct start_ctx *ctx, const struct guestos_mount *m, unsigned attrs, tm_err *err);
/* The GuestOS's mounts after the one at "/", into the assembled root. data is the directory on
 * the data volume (a tmpfs with data_size_mb 0) that holds per-container directories. */
int images_mount_rest(struct start_ctx *ctx, const char *data, tm_err *err);
