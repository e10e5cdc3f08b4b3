/* SPDX-License-Identifier: GPL-2.0-or-later */
/* guestos_config_parse() on arbitrary bytes: no crash, no leak, and the properties trustmed relies
 * on when it opens images by name in the GuestOS directory and mounts them (docs/GUESTOS.md). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "guestos_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const struct guestos_config *g)
{
    if (!config_name_valid(g->name) || g->version < 1 || g->version > CONFIG_VERSION_MAX || !g->architecture[0] ||
        !config_clean_abs_path(g->init))
        abort();
    if (!g->args || g->args[g->nargs] || !g->env || g->env[g->nenv])
        abort();
    for (size_t i = 0; i < g->nenv; i++)
        if (!strchr(g->env[i], '='))
            abort();
    /* exactly one mount at "/", the first, of an image kind */
    if (g->nmounts < 1 || g->nmounts > GUESTOS_MOUNTS_MAX || g->root != 0 ||
        strcmp(g->mounts[0].mount_point, "/") != 0 ||
        (g->mounts[0].kind != GMOUNT_SHARED && g->mounts[0].kind != GMOUNT_OVERLAY))
        abort();
    for (size_t i = 0; i < g->nmounts; i++) {
        const struct guestos_mount *m = &g->mounts[i];
        if (!config_clean_abs_path(m->mount_point) || (i > 0 && strcmp(m->mount_point, "/") == 0))
            abort();
        if (i > 0 && m->kind == GMOUNT_OVERLAY)
            abort();
        bool image = m->kind == GMOUNT_SHARED || m->kind == GMOUNT_OVERLAY;
        if (image != (m->image[0] != '\0'))
            abort();
        if (image) {
            /* a plain file name: opened with openat() in the GuestOS directory */
            if (!guestos_image_name_valid(m->image) || strchr(m->image, '/') || m->image[0] == '.' ||
                strcmp(m->image, "guestos.json") == 0 || strncmp(m->image, "guestos.json.", 13) == 0 || m->size == 0 ||
                m->size > INT64_MAX)
                abort();
            if (strcmp(m->fs_type, "squashfs") != 0 && strcmp(m->fs_type, "erofs") != 0 &&
                strcmp(m->fs_type, "ext4") != 0)
                abort();
        } else if (m->fs_type[0] || m->size) {
            abort();
        }
        if (m->kind == GMOUNT_TMPFS ? m->size_mb < 1 || m->size_mb > (1u << 20) : m->size_mb != 0)
            abort();
        for (size_t j = 0; j < i; j++)
            if (strcmp(g->mounts[j].mount_point, m->mount_point) == 0 ||
                (image && strcmp(g->mounts[j].image, m->image) == 0))
                abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct guestos_config *g = NULL;
    tm_err err = {0};
    int r = guestos_config_parse((const char *)data, size, &g, &err);
    if (r == 0) {
        check(g);
        guestos_config_free(g);
    } else if (g || err.code != -r || (err.msg[0] != '$' && strncmp(err.msg, "guestos.json is larger", 22) != 0)) {
        /* ret untouched on failure, and every error names its JSON path (or the size limit) */
        abort();
    }
    return 0;
}
