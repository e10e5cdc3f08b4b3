/* SPDX-License-Identifier: GPL-2.0-or-later */
/* guestos.json, the signed description of a GuestOS (docs/GUESTOS.md). The parser is pure and
 * strict like the container config's: every error names its JSON path. */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "error.h"

#define GUESTOS_JSON_MAX (64 * 1024)
#define GUESTOS_MOUNTS_MAX 16
#define GUESTOS_IMAGE_NAME_MAX 64
#define GUESTOS_DESC_MAX 256
#define GUESTOS_ARCH_MAX 31
#define GUESTOS_TMPFS_DEFAULT_MB 64

enum guestos_mount_kind {
    GMOUNT_SHARED, /* read-only image, shared by all containers of the GuestOS */
    GMOUNT_OVERLAY, /* read-only image + writable upper layer on the container's data volume */
    GMOUNT_DATA, /* a per-container directory on the data volume */
    GMOUNT_TMPFS, /* memory */
};

struct guestos_mount {
    enum guestos_mount_kind kind;
    char mount_point[PATH_MAX];
    char image[GUESTOS_IMAGE_NAME_MAX + 1]; /* shared, overlay */
    char fs_type[16]; /* "squashfs", "erofs" or "ext4" */
    uint64_t size; /* bytes */
    uint8_t sha256[32];
    uint64_t size_mb; /* tmpfs */
};

struct guestos_config {
    char name[CONFIG_NAME_MAX + 1];
    uint64_t version;
    char architecture[GUESTOS_ARCH_MAX + 1];
    char init[PATH_MAX];
    char **args;
    size_t nargs;
    char **env;
    size_t nenv;
    char description[GUESTOS_DESC_MAX + 1];
    char working_dir[PATH_MAX]; /* "" when not given */
    bool has_user;
    uint32_t uid, gid;
    size_t nports; /* "ports": hints only, checked and counted */
    struct guestos_mount mounts[GUESTOS_MOUNTS_MAX];
    size_t nmounts;
    size_t root; /* index of the mount at "/" */
};

int guestos_config_parse(const char *json, size_t len, struct guestos_config **ret, tm_err *err);
void guestos_config_free(struct guestos_config *g);
const char *guestos_mount_kind_name(enum guestos_mount_kind k);
bool guestos_image_name_valid(const char *name);
