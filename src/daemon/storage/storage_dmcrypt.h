/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The dm-crypt storage backend (docs/STORAGE.md): the data image is a LUKS2 volume with
 * dm-integrity (AES-256-XTS + HMAC-SHA256 per sector), opened through libcryptsetup with the
 * container's data key; ext4 goes on the mapped device. Only for kernels with device-mapper.
 *
 * libcryptsetup (and its libcrypto) is loaded with dlopen() in the setup process only, when the
 * backend is in use: trustmed itself stays free of both. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "error.h"
#include "secmem.h"

/* 0 if this kernel has device-mapper and libcryptsetup can be loaded; else -ENODEV / -ELIBACC
 * with the reason. */
int dmcrypt_available(tm_err *err);
/* The mapped device's name for a container: trustme-<uuid>. */
void dmcrypt_name(const char *uuid, char *out, size_t size);
/* Setup process: open the LUKS2 volume on loopdev as /dev/mapper/<name> with key (64 bytes).
 * fresh: format it first and write every sector once, so that dm-integrity's tags are valid
 * (progress goes to sync_fd); the caller then makes the file system. */
int dmcrypt_open(const char *loopdev, const char *name, const struct secret *key, bool fresh, int sync_fd, tm_err *err);
/* trustmed, after the container's last process is gone: remove the mapped devices (deferred:
 * the kernel completes it once nothing holds them). Never blocks on I/O. */
void dmcrypt_remove(const char *name);
