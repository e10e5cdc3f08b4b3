/* The device config: <data-dir>/device.json, settings of the whole device rather than of one
 * container (docs/CONFIG.md "Device config"). Absent means every default. */
#pragma once

#include "error.h"

enum storage_backend {
    STORAGE_FSCRYPT = 0, /* fscrypt v2 on the container's ext4 data image (the default) */
    STORAGE_DMCRYPT = 1, /* dm-crypt + dm-integrity (LUKS2) under it: needs device-mapper */
};

struct device_config {
    enum storage_backend storage_backend;
};

const char *storage_backend_name(enum storage_backend b);
/* Read <data_dir>/device.json strictly (unknown keys, wrong types: an error naming the path)
 * and check that this kernel can do what it asks. */
int device_config_load(const char *data_dir, struct device_config *ret, tm_err *err);
