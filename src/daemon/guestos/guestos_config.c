/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "guestos_config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "hex.h"
#include "jsonutil.h"

static const char *const kind_names[] = {
    [GMOUNT_SHARED] = "shared", [GMOUNT_OVERLAY] = "overlay", [GMOUNT_DATA] = "data", [GMOUNT_TMPFS] = "tmpfs"};
static const char *const fs_types[] = {"squashfs", "erofs", "ext4"};

const char *guestos_mount_kind_name(enum guestos_mount_kind k)
{
    return k < ARRAY_SIZE(kind_names) ? kind_names[k] : "?";
}

/* A plain file name in the GuestOS directory: no '/', no "..", no hidden files. */
bool guestos_image_name_valid(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > GUESTOS_IMAGE_NAME_MAX || !isalnum((unsigned char)name[0]))
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)name[i]) && !strchr("._-", name[i]))
            return false;
    /* The signed files, and the store's own record (guestos.h), are not images. */
    return strcmp(name, "guestos.json") != 0 && strncmp(name, "guestos.json.", 13) != 0 &&
           strcmp(name, "install.json") != 0;
}

static int parse_image(json_t *m, const char *path, struct guestos_mount *gm, tm_err *err)
{
    const char *s;
    int64_t n;
    int r = tm_json_get_string(m, path, "image", true, GUESTOS_IMAGE_NAME_MAX, &s, err);
    if (r < 0)
        return r;
    if (!guestos_image_name_valid(s))
        return tm_err_set(err, EINVAL,
                          "%s.image: \"%s\" is not a plain file name (1-%d letters, "
                          "digits, '.', '_', '-', starting with a letter or digit)",
                          path, s, GUESTOS_IMAGE_NAME_MAX);
    snprintf(gm->image, sizeof(gm->image), "%s", s);
    if ((r = tm_json_get_string(m, path, "fs_type", true, 16, &s, err)) < 0)
        return r;
    bool ok = false;
    for (size_t i = 0; i < ARRAY_SIZE(fs_types) && !ok; i++)
        ok = strcmp(s, fs_types[i]) == 0;
    if (!ok)
        return tm_err_set(err, EINVAL,
                          "%s.fs_type: must be \"squashfs\", \"erofs\" or \"ext4\", "
                          "got \"%s\"",
                          path, s);
    snprintf(gm->fs_type, sizeof(gm->fs_type), "%s", s);
    if ((r = tm_json_get_int(m, path, "size", true, 1, INT64_MAX, &n, err)) < 0)
        return r;
    gm->size = (uint64_t)n;
    if ((r = tm_json_get_string(m, path, "sha256", true, 64, &s, err)) < 0)
        return r;
    if (tm_hex_decode_str(s, gm->sha256, 32, 0, NULL) < 0)
        return tm_err_set(err, EINVAL, "%s.sha256: must be 64 lower-case hex digits", path);
    return 0;
}

static int parse_mount(json_t *m, const char *path, struct guestos_mount *gm, tm_err *err)
{
    static const char *const image_keys[] = {"mount_point", "kind", "image", "fs_type", "size", "sha256", NULL};
    static const char *const tmpfs_keys[] = {"mount_point", "kind", "size_mb", NULL};
    static const char *const data_keys[] = {"mount_point", "kind", NULL};
    if (!json_is_object(m))
        return tm_err_set(err, EINVAL, "%s: expected an object, got %s", path, tm_json_type_name(m));
    const char *s;
    int r = tm_json_get_string(m, path, "kind", true, 16, &s, err);
    if (r < 0)
        return r;
    size_t k = 0;
    while (k < ARRAY_SIZE(kind_names) && strcmp(s, kind_names[k]) != 0)
        k++;
    if (k == ARRAY_SIZE(kind_names))
        return tm_err_set(err, EINVAL,
                          "%s.kind: must be \"shared\", \"overlay\", \"data\" or "
                          "\"tmpfs\", got \"%s\"",
                          path, s);
    gm->kind = (enum guestos_mount_kind)k;
    const char *const *keys = gm->kind == GMOUNT_TMPFS ? tmpfs_keys : gm->kind == GMOUNT_DATA ? data_keys : image_keys;
    if ((r = tm_json_check_keys(m, path, keys, err)) < 0 ||
        (r = tm_json_get_string(m, path, "mount_point", true, PATH_MAX - 1, &s, err)) < 0)
        return r;
    if (!config_clean_abs_path(s))
        return tm_err_set(err, EINVAL,
                          "%s.mount_point: must be an absolute path without . or .. "
                          "components, got \"%s\"",
                          path, s);
    snprintf(gm->mount_point, sizeof(gm->mount_point), "%s", s);
    if (gm->kind == GMOUNT_SHARED || gm->kind == GMOUNT_OVERLAY)
        return parse_image(m, path, gm, err);
    if (gm->kind == GMOUNT_TMPFS) {
        int64_t n;
        gm->size_mb = GUESTOS_TMPFS_DEFAULT_MB;
        if ((r = tm_json_get_int(m, path, "size_mb", false, 1, 1 << 20, &n, err)) < 0)
            return r;
        if (r)
            gm->size_mb = (uint64_t)n;
    }
    return 0;
}

/* Data mounts live in one directory each on the data volume, named by the mount point with '/'
 * turned into '_' (images.c): two mount points that differ only there would share it. */
static bool data_dirs_collide(const struct guestos_mount *a, const struct guestos_mount *b)
{
    if (a->kind != GMOUNT_DATA || b->kind != GMOUNT_DATA)
        return false;
    const char *p = a->mount_point, *q = b->mount_point;
    for (; *p && *q; p++, q++)
        if (*p != *q && !((*p == '/' || *p == '_') && (*q == '/' || *q == '_')))
            return false;
    return *p == *q;
}

static int check_mounts(struct guestos_config *g, tm_err *err)
{
    bool have_root = false;
    for (size_t i = 0; i < g->nmounts; i++) {
        const struct guestos_mount *m = &g->mounts[i];
        char path[TM_JSON_PATH_MAX];
        tm_json_path_index(path, "$.mounts", i);
        if (strcmp(m->mount_point, "/") == 0) {
            if (have_root)
                return tm_err_set(err, EINVAL, "%s: a second mount at \"/\"", path);
            if (m->kind != GMOUNT_SHARED && m->kind != GMOUNT_OVERLAY)
                return tm_err_set(err, EINVAL,
                                  "%s: the mount at \"/\" must be of kind \"shared\" "
                                  "or \"overlay\"",
                                  path);
            if (i != 0)
                return tm_err_set(err, EINVAL, "%s: the mount at \"/\" must come first", path);
            have_root = true;
            g->root = i;
        } else if (m->kind == GMOUNT_OVERLAY) {
            return tm_err_set(err, EINVAL, "%s: kind \"overlay\" is only for the mount at \"/\"", path);
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(g->mounts[j].mount_point, m->mount_point) == 0)
                return tm_err_set(err, EINVAL, "%s.mount_point: \"%s\" is mounted twice", path, m->mount_point);
            if (data_dirs_collide(&g->mounts[j], m))
                return tm_err_set(err, EINVAL,
                                  "%s.mount_point: data mounts \"%s\" and \"%s\" would "
                                  "share one directory on the data volume ('/' and '_' are one "
                                  "character there)",
                                  path, g->mounts[j].mount_point, m->mount_point);
            if (m->image[0] && strcmp(g->mounts[j].image, m->image) == 0)
                return tm_err_set(err, EINVAL, "%s.image: \"%s\" is used twice", path, m->image);
        }
    }
    if (!have_root)
        return tm_err_set(err, EINVAL, "$.mounts: none is at \"/\"");
    return 0;
}

/* "80/tcp": what an imported image's ExposedPorts said; nothing is opened for it. */
static bool port_valid(const char *s)
{
    size_t n = strspn(s, "0123456789");
    if (n < 1 || n > 5 || s[0] == '0' || strtoul(s, NULL, 10) > 65535)
        return false;
    return !strcmp(s + n, "/tcp") || !strcmp(s + n, "/udp") || !strcmp(s + n, "/sctp");
}

static bool digest_valid(const char *s)
{
    if (strncmp(s, "sha256:", 7) != 0 || strlen(s) != 7 + 64)
        return false;
    return strspn(s + 7, "0123456789abcdef") == 64;
}

/* The keys an import from an OCI image adds (docs/GUESTOS.md): working_dir, user, ports, oci. */
static int parse_oci_keys(json_t *root, struct guestos_config *g, tm_err *err)
{
    const char *s;
    json_t *obj, *arr = NULL;
    int64_t n;
    int r;
    if ((r = tm_json_get_string(root, "$", "working_dir", false, PATH_MAX - 1, &s, err)) < 0)
        return r;
    if (r) {
        if (!config_clean_abs_path(s))
            return tm_err_set(err, EINVAL, "$.working_dir: must be an absolute path in the container, got \"%s\"", s);
        snprintf(g->working_dir, sizeof(g->working_dir), "%s", s);
    }
    if ((r = tm_json_get_object(root, "$", "user", false, 8, &obj, err)) < 0)
        return r;
    if (r) {
        static const char *const ukeys[] = {"uid", "gid", NULL};
        if ((r = tm_json_check_keys(obj, "$.user", ukeys, err)) < 0 ||
            (r = tm_json_get_int(obj, "$.user", "uid", true, 0, 0xfffffffe, &n, err)) < 0)
            return r;
        g->uid = (uint32_t)n;
        if ((r = tm_json_get_int(obj, "$.user", "gid", true, 0, 0xfffffffe, &n, err)) < 0)
            return r;
        g->gid = (uint32_t)n;
        g->has_user = true;
    }
    if ((r = tm_json_get_array(root, "$", "ports", false, 64, &arr, err)) < 0)
        return r;
    for (size_t i = 0; arr && i < json_array_size(arr); i++) {
        char path[TM_JSON_PATH_MAX];
        tm_json_path_index(path, "$.ports", i);
        if ((r = tm_json_expect_string(json_array_get(arr, i), path, 16, &s, err)) < 0)
            return r;
        if (!port_valid(s))
            return tm_err_set(err, EINVAL, "%s: \"%s\" is not PORT/tcp, PORT/udp or PORT/sctp", path, s);
        g->nports++;
    }
    if ((r = tm_json_get_object(root, "$", "oci", false, 8, &obj, err)) < 0)
        return r;
    if (r) {
        static const char *const okeys[] = {"manifest", "config", NULL};
        static const char *const names[] = {"manifest", "config"};
        if ((r = tm_json_check_keys(obj, "$.oci", okeys, err)) < 0)
            return r;
        for (size_t i = 0; i < 2; i++) {
            if ((r = tm_json_get_string(obj, "$.oci", names[i], i == 1, 80, &s, err)) < 0)
                return r;
            if (r && !digest_valid(s))
                return tm_err_set(err, EINVAL, "$.oci.%s: \"%s\" is not sha256:<64 lower-case hex digits>", names[i],
                                  s);
        }
    }
    return 0;
}

static int parse(json_t *root, struct guestos_config *g, tm_err *err)
{
    static const char *const keys[] = {"name",        "version", "architecture", "init", "args",   "env", "description",
                                       "working_dir", "user",    "ports",        "oci",  "mounts", NULL};
    const char *s;
    int64_t n;
    json_t *arr;
    int r;
    if ((r = tm_json_check_keys(root, "$", keys, err)) < 0 ||
        (r = tm_json_get_string(root, "$", "name", true, 256, &s, err)) < 0)
        return r;
    if (!config_name_valid(s))
        return tm_err_set(err, EINVAL,
                          "$.name: \"%s\" is not a valid GuestOS name (1-%d letters, "
                          "digits, '_', '.', '-', starting with a letter or digit)",
                          s, CONFIG_NAME_MAX);
    snprintf(g->name, sizeof(g->name), "%s", s);
    if ((r = tm_json_get_int(root, "$", "version", true, 1, CONFIG_VERSION_MAX, &n, err)) < 0)
        return r;
    g->version = (uint64_t)n;
    if ((r = tm_json_get_string(root, "$", "architecture", true, GUESTOS_ARCH_MAX, &s, err)) < 0)
        return r;
    if (!s[0])
        return tm_err_set(err, EINVAL, "$.architecture: must not be empty");
    snprintf(g->architecture, sizeof(g->architecture), "%s", s);
    if ((r = tm_json_get_string(root, "$", "init", false, PATH_MAX - 1, &s, err)) < 0)
        return r;
    if (r == 0)
        s = "/sbin/init";
    if (!config_clean_abs_path(s))
        return tm_err_set(err, EINVAL, "$.init: must be an absolute path in the container, got \"%s\"", s);
    snprintf(g->init, sizeof(g->init), "%s", s);
    if ((r = config_parse_strv(root, "$", "args", CONFIG_MAX_ARGS, &g->args, &g->nargs, err)) < 0 ||
        (r = config_parse_env(root, "$", &g->env, &g->nenv, err)) < 0 ||
        (r = tm_json_get_string(root, "$", "description", false, GUESTOS_DESC_MAX, &s, err)) < 0)
        return r;
    if (r)
        snprintf(g->description, sizeof(g->description), "%s", s);
    if ((r = parse_oci_keys(root, g, err)) < 0)
        return r;
    if ((r = tm_json_get_array(root, "$", "mounts", true, GUESTOS_MOUNTS_MAX, &arr, err)) < 0)
        return r;
    g->nmounts = json_array_size(arr);
    if (g->nmounts == 0)
        return tm_err_set(err, EINVAL, "$.mounts: at least the mount at \"/\" is required");
    for (size_t i = 0; i < g->nmounts; i++) {
        char path[TM_JSON_PATH_MAX];
        tm_json_path_index(path, "$.mounts", i);
        if ((r = parse_mount(json_array_get(arr, i), path, &g->mounts[i], err)) < 0)
            return r;
    }
    return check_mounts(g, err);
}

int guestos_config_parse(const char *json, size_t len, struct guestos_config **ret, tm_err *err)
{
    if (len > GUESTOS_JSON_MAX)
        return tm_err_set(err, EFBIG, "guestos.json is larger than %d bytes", GUESTOS_JSON_MAX);
    json_t *root;
    int r = tm_json_parse_object(json, len, &root, err);
    if (r < 0)
        return r;
    struct guestos_config *g = calloc(1, sizeof(*g));
    if (!g) {
        json_decref(root);
        return tm_err_set(err, ENOMEM, "out of memory");
    }
    r = parse(root, g, err);
    json_decref(root);
    if (r < 0) {
        guestos_config_free(g);
        return r;
    }
    *ret = g;
    return 0;
}

void guestos_config_free(struct guestos_config *g)
{
    if (!g)
        return;
    config_free_strv(g->args);
    config_free_strv(g->env);
    free(g);
}
