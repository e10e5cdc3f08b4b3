#include "device.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "fileio.h"
#include "jsonutil.h"
#include "storage_dmcrypt.h"

#define DEVICE_CONFIG_MAX (1024 * 1024)

const char *storage_backend_name(enum storage_backend b)
{
    return b == STORAGE_DMCRYPT ? "dm-crypt" : "fscrypt";
}

static int parse_storage(json_object *root, struct device_config *cfg, tm_err *err)
{
    static const char *const keys[] = {"backend", NULL};
    json_object *st;
    const char *backend;
    int r = tm_json_get_object(root, "$", "storage", false, 16, &st, err);
    if (r <= 0)
        return r;
    if ((r = tm_json_check_keys(st, "$.storage", keys, err)) < 0 ||
        (r = tm_json_get_string(st, "$.storage", "backend", false, 16, &backend, err)) < 0)
        return r;
    if (r == 0 || strcmp(backend, "fscrypt") == 0)
        cfg->storage_backend = STORAGE_FSCRYPT;
    else if (strcmp(backend, "dm-crypt") == 0)
        cfg->storage_backend = STORAGE_DMCRYPT;
    else
        return tm_err_set(err, EINVAL, "$.storage.backend: must be \"fscrypt\" or \"dm-crypt\", got \"%s\"",
                          backend);
    return 0;
}

int device_config_load(const char *data_dir, struct device_config *ret, tm_err *err)
{
    static const char *const keys[] = {"storage", NULL};
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/device.json", data_dir);
    struct device_config cfg = {.storage_backend = STORAGE_FSCRYPT};
    _cleanup_free_ char *data = NULL;
    size_t len;
    int r = read_file(path, DEVICE_CONFIG_MAX, &data, &len, err);
    if (r < 0 && err->code == ENOENT) {
        *ret = cfg;
        return 0;
    }
    if (r < 0)
        return r;
    json_object *root;
    if ((r = tm_json_parse_object(data, len, &root, err)) < 0)
        return tm_err_prefix(err, "%s", path);
    if ((r = tm_json_check_keys(root, "$", keys, err)) == 0)
        r = parse_storage(root, &cfg, err);
    json_object_put(root);
    if (r < 0)
        return tm_err_prefix(err, "%s", path);
    if (cfg.storage_backend == STORAGE_DMCRYPT && (r = dmcrypt_available(err)) < 0)
        return tm_err_prefix(err, "%s selects the dm-crypt storage backend, but", path);
    *ret = cfg;
    return 0;
}
