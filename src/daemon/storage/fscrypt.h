/* SPDX-License-Identifier: GPL-2.0-or-later */
/* fscrypt v2 on a container's data volume, done by trustmed itself so that the raw key never
 * leaves it (docs/STORAGE.md). */
#pragma once

#include <stdint.h>

#include "error.h"
#include "secmem.h"

#define FSCRYPT_DIR "encrypted" /* in the data volume's root: holds the overlay's upper and work */

/* Given the root of a freshly mounted data volume (ext4 with the encrypt feature): add the key
 * to the file system's keyring and make sure FSCRYPT_DIR exists, is encrypted, and under this
 * key. A directory encrypted under another key is an error (EKEYREJECTED), never replaced.
 * The key stays in the kernel until the file system is unmounted, which is when the container's
 * last process is gone: the keyring belongs to the file system, not to a process. */
int fscrypt_unlock(int rootfd, const struct secret *key, tm_err *err);
