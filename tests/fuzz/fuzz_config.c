/* SPDX-License-Identifier: GPL-2.0-or-later */
/* config_parse() on arbitrary bytes: no crash, no leak, and the properties callers rely on. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const struct container_config *cfg)
{
    if (!config_name_valid(cfg->name) || !cfg->hostname[0] || cfg->init[0] != '/' || cfg->rootfs[0] != '/')
        abort();
    if (!cfg->args || cfg->args[cfg->nargs] || !cfg->env || cfg->env[cfg->nenv])
        abort();
    for (size_t i = 0; i < cfg->nenv; i++)
        if (!strchr(cfg->env[i], '='))
            abort();
    for (size_t i = 0; i < cfg->ndevices; i++)
        if (strncmp(cfg->devices[i].path, "/dev/", 5) != 0 || !cfg->devices[i].access[0])
            abort();
    if (cfg->memory_limit_mb > (1u << 24) || cfg->data_size_mb > (1u << 24))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct container_config *cfg = NULL;
    tm_err err = {0};
    int r = config_parse((const char *)data, size, &cfg, &err);
    if (r == 0) {
        check(cfg);
        config_free(cfg);
    } else if (cfg || err.msg[0] != '$') {
        /* ret untouched on failure, and every error names its JSON path */
        abort();
    }
    return 0;
}
