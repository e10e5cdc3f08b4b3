/* The dm-crypt storage backend (docs/STORAGE.md): LUKS2 with dm-integrity under the ext4 data
 * volume, through libcryptsetup. Only for kernels with device-mapper. */
#pragma once

#include "error.h"

/* 0 if this kernel has device-mapper (with dm-crypt) and trustmed was built with libcryptsetup;
 * else -ENODEV / -EOPNOTSUPP with the reason. */
int dmcrypt_available(tm_err *err);
