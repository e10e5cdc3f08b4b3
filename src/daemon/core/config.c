/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>

#include "cleanup.h"
#include "jsonutil.h"
#include "uuid.h"

static const char *const top_keys[] = {"name",         "guestos",  "rootfs",          "init",           "args",
                                       "env",          "hostname", "memory_limit_mb", "pids_limit",     "cpus",
                                       "data_size_mb", "devices",  "capabilities",    "user_namespace", "autostart",
                                       "token",        "network",  "control",         "config_version", "keystore",
                                       "vtpm",         NULL};

const char *rootfs_type_name(enum rootfs_type t)
{
    switch (t) {
    case ROOTFS_DIR: return "dir";
    case ROOTFS_SQUASHFS: return "squashfs";
    case ROOTFS_EROFS: return "erofs";
    case ROOTFS_AUTO: break;
    }
    return "auto";
}

bool config_name_valid(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > CONFIG_NAME_MAX || !isalnum((unsigned char)name[0]))
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)name[i]) && !strchr("_.-", name[i]))
            return false;
    /* A name that looks like a UUID would make "trustme start X" ambiguous. */
    return !tm_uuid_valid(name);
}

static bool hostname_valid(const char *h)
{
    size_t len = strlen(h);
    if (len == 0 || len > CONFIG_HOSTNAME_MAX || h[0] == '-' || h[0] == '.')
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)h[i]) && h[i] != '-' && h[i] != '.')
            return false;
    return true;
}

/* An absolute path in canonical form: no ".", "..", or empty components, no trailing slash.
 * Canonical, so that two spellings of one path cannot pass a comparison as different. */
bool config_clean_abs_path(const char *p)
{
    if (p[0] != '/')
        return false;
    if (p[1] == '\0')
        return true; /* "/" itself */
    for (const char *s = p + 1;; s++) {
        const char *e = strchrnul(s, '/');
        size_t n = (size_t)(e - s);
        if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
            return false;
        if (!*e)
            return true;
        s = e;
    }
}

/* "0-3,5,7-8": each number < 1024, ranges ascending. */
static bool cpuset_valid(const char *s)
{
    if (!*s)
        return false;
    while (*s) {
        char *end;
        if (!isdigit((unsigned char)*s))
            return false;
        unsigned long a = strtoul(s, &end, 10), b = a;
        s = end;
        if (*s == '-') {
            s++;
            if (!isdigit((unsigned char)*s))
                return false;
            b = strtoul(s, &end, 10);
            s = end;
        }
        if (a >= 1024 || b >= 1024 || b < a)
            return false;
        if (*s == ',')
            s++;
        else if (*s)
            return false;
    }
    return s[-1] != ',';
}

/* "guestos": {"name": "busybox", "version": 3}: the GuestOS to run, optionally pinned. */
static int parse_guestos(json_t *root, struct container_config *cfg, tm_err *err)
{
    static const char *const keys[] = {"name", "version", NULL};
    json_t *obj;
    const char *name;
    int64_t v;
    int r = tm_json_get_object(root, "$", "guestos", false, 8, &obj, err);
    if (r <= 0)
        return r;
    if ((r = tm_json_check_keys(obj, "$.guestos", keys, err)) < 0 ||
        (r = tm_json_get_string(obj, "$.guestos", "name", true, 256, &name, err)) < 0)
        return r;
    if (!config_name_valid(name))
        return tm_err_set(err, EINVAL, "$.guestos.name: \"%s\" is not a valid GuestOS name", name);
    snprintf(cfg->guestos, sizeof(cfg->guestos), "%s", name);
    if ((r = tm_json_get_int(obj, "$.guestos", "version", false, 1, CONFIG_VERSION_MAX, &v, err)) < 0)
        return r;
    cfg->guestos_version = r ? (uint64_t)v : 0;
    return 0;
}

static int parse_rootfs(json_t *root, struct container_config *cfg, tm_err *err)
{
    static const char *const keys[] = {"path", "type", NULL};
    json_t *obj;
    int r = tm_json_get_object(root, "$", "rootfs", false, 8, &obj, err);
    if (r < 0)
        return r;
    if (r == 0 && !cfg->guestos[0])
        return tm_err_set(err, EINVAL, "$: \"guestos\" is required (or, for development, \"rootfs\")");
    if (r == 0)
        return 0;
    if (cfg->guestos[0])
        return tm_err_set(err, EINVAL, "$: give \"guestos\" or \"rootfs\", not both");
    if ((r = tm_json_check_keys(obj, "$.rootfs", keys, err)) < 0)
        return r;
    const char *path, *type = NULL;
    if ((r = tm_json_get_string(obj, "$.rootfs", "path", true, PATH_MAX - 1, &path, err)) < 0)
        return r;
    if (!config_clean_abs_path(path))
        return tm_err_set(err, EINVAL,
                          "$.rootfs.path: must be an absolute path without . or .. "
                          "components, got \"%s\"",
                          path);
    snprintf(cfg->rootfs, sizeof(cfg->rootfs), "%s", path);
    if ((r = tm_json_get_string(obj, "$.rootfs", "type", false, 16, &type, err)) < 0)
        return r;
    cfg->rootfs_type = ROOTFS_AUTO;
    if (type) {
        static const enum rootfs_type types[] = {ROOTFS_AUTO, ROOTFS_DIR, ROOTFS_SQUASHFS, ROOTFS_EROFS};
        bool found = false;
        for (size_t i = 0; i < ARRAY_SIZE(types) && !found; i++)
            if (strcmp(type, rootfs_type_name(types[i])) == 0) {
                cfg->rootfs_type = types[i];
                found = true;
            }
        if (!found)
            return tm_err_set(err, EINVAL,
                              "$.rootfs.type: must be \"auto\", \"dir\", "
                              "\"squashfs\" or \"erofs\", got \"%s\"",
                              type);
    }
    return 0;
}

int config_parse_strv(json_t *root, const char *path, const char *key, size_t max, char ***ret, size_t *ret_n,
                      tm_err *err)
{
    json_t *arr;
    int r = tm_json_get_array(root, path, key, false, max, &arr, err);
    if (r < 0)
        return r;
    size_t n = r ? json_array_size(arr) : 0;
    char **v = calloc(n + 1, sizeof(char *));
    if (!v)
        return tm_err_set(err, ENOMEM, "out of memory");
    *ret = v;
    *ret_n = 0;
    char sub[TM_JSON_PATH_MAX];
    tm_json_path_key(sub, path, key);
    for (size_t i = 0; i < n; i++) {
        char item[TM_JSON_PATH_MAX];
        const char *s;
        tm_json_path_index(item, sub, i);
        if ((r = tm_json_expect_string(json_array_get(arr, i), item, CONFIG_ARG_MAX, &s, err)) < 0)
            return r;
        if (!(v[i] = strdup(s)))
            return tm_err_set(err, ENOMEM, "out of memory");
        (*ret_n)++;
    }
    return 0;
}

int config_parse_env(json_t *root, const char *path, char ***ret, size_t *ret_n, tm_err *err)
{
    json_t *obj;
    int r = tm_json_get_object(root, path, "env", false, CONFIG_MAX_ENV, &obj, err);
    if (r < 0)
        return r;
    size_t n = r ? (size_t)json_object_size(obj) : 0;
    char **env = calloc(n + 1, sizeof(char *));
    if (!env)
        return tm_err_set(err, ENOMEM, "out of memory");
    *ret = env;
    *ret_n = 0;
    if (!n)
        return 0;
    char sub[TM_JSON_PATH_MAX];
    tm_json_path_key(sub, path, "env");
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val)
    {
        char item[TM_JSON_PATH_MAX];
        tm_json_path_key(item, sub, key);
        bool ok = (isalpha((unsigned char)key[0]) || key[0] == '_') && strlen(key) <= 256;
        for (const char *k = key; ok && *k; k++)
            ok = isalnum((unsigned char)*k) || *k == '_';
        if (!ok)
            return tm_err_set(err, EINVAL,
                              "%s: variable names are letters, digits and _ and do "
                              "not start with a digit",
                              item);
        const char *s;
        if ((r = tm_json_expect_string(val, item, CONFIG_ARG_MAX, &s, err)) < 0)
            return r;
        if (asprintf(&env[*ret_n], "%s=%s", key, s) < 0) {
            env[*ret_n] = NULL;
            return tm_err_set(err, ENOMEM, "out of memory");
        }
        (*ret_n)++;
    }
    return 0;
}

static int parse_device(json_t *v, const char *path, struct device_rule *d, tm_err *err)
{
    static const char *const keys[] = {"path", "type", "major", "minor", "access", NULL};
    if (!json_is_object(v))
        return tm_err_set(err, EINVAL, "%s: expected an object, got %s", path, tm_json_type_name(v));
    int r;
    if ((r = tm_json_check_keys(v, path, keys, err)) < 0)
        return r;
    const char *p, *type, *access = "rwm";
    int64_t major, minor;
    if ((r = tm_json_get_string(v, path, "path", true, CONFIG_DEVICE_PATH_MAX - 1, &p, err)) < 0 ||
        (r = tm_json_get_string(v, path, "type", true, 1, &type, err)) < 0 ||
        (r = tm_json_get_int(v, path, "major", true, 0, 4095, &major, err)) < 0 ||
        (r = tm_json_get_int(v, path, "minor", true, 0, 1048575, &minor, err)) < 0 ||
        (r = tm_json_get_string(v, path, "access", false, 3, &access, err)) < 0)
        return r;
    if (strncmp(p, "/dev/", 5) != 0 || !config_clean_abs_path(p) || strlen(p) == 5)
        return tm_err_set(err, EINVAL, "%s.path: must be a path below /dev/, got \"%s\"", path, p);
    if (strcmp(type, "c") != 0 && strcmp(type, "b") != 0)
        return tm_err_set(err, EINVAL, "%s.type: must be \"c\" or \"b\", got \"%s\"", path, type);
    bool ok = *access != '\0';
    for (const char *a = access; ok && *a; a++)
        ok = strchr("rwm", *a) && !strchr(a + 1, *a);
    if (!ok)
        return tm_err_set(err, EINVAL,
                          "%s.access: must be letters of \"rwm\", each at most once, "
                          "got \"%s\"",
                          path, access);
    snprintf(d->path, sizeof(d->path), "%s", p);
    d->type = type[0];
    d->major = (uint32_t)major;
    d->minor = (uint32_t)minor;
    snprintf(d->access, sizeof(d->access), "%s", access);
    return 0;
}

static int parse_devices(json_t *root, struct container_config *cfg, tm_err *err)
{
    json_t *arr;
    int r = tm_json_get_array(root, "$", "devices", false, CONFIG_MAX_DEVICES, &arr, err);
    if (r <= 0)
        return r;
    size_t n = json_array_size(arr);
    cfg->devices = calloc(n ? n : 1, sizeof(*cfg->devices));
    if (!cfg->devices)
        return tm_err_set(err, ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        char path[TM_JSON_PATH_MAX];
        tm_json_path_index(path, "$.devices", i);
        if ((r = parse_device(json_array_get(arr, i), path, &cfg->devices[i], err)) < 0)
            return r;
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfg->devices[j].path, cfg->devices[i].path) == 0)
                return tm_err_set(err, EINVAL, "%s.path: \"%s\" is listed twice", path, cfg->devices[i].path);
        cfg->ndevices++;
    }
    return 0;
}

static int parse_caps(json_t *root, struct container_config *cfg, tm_err *err)
{
    json_t *arr;
    int r = tm_json_get_array(root, "$", "capabilities", false, 64, &arr, err);
    if (r <= 0)
        return r;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        char path[TM_JSON_PATH_MAX], lower[64];
        const char *s;
        tm_json_path_index(path, "$.capabilities", i);
        if ((r = tm_json_expect_string(json_array_get(arr, i), path, 40, &s, err)) < 0)
            return r;
        bool ok = strncmp(s, "CAP_", 4) == 0 && s[4];
        for (size_t k = 0; ok && s[k]; k++)
            ok = isupper((unsigned char)s[k]) || s[k] == '_';
        cap_value_t cap;
        if (ok) {
            for (size_t k = 0; k <= strlen(s); k++)
                lower[k] = (char)tolower((unsigned char)s[k]);
            ok = cap_from_name(lower, &cap) == 0 && cap >= 0 && cap < 64;
        }
        if (!ok)
            return tm_err_set(err, EINVAL,
                              "%s: \"%s\" is not a capability name such as "
                              "\"CAP_NET_RAW\"",
                              path, s);
        cfg->caps_keep |= 1ULL << cap;
    }
    return 0;
}

const char *token_kind_name(enum token_kind k)
{
    switch (k) {
    case TOKEN_KIND_SOFT: return "soft";
    case TOKEN_KIND_PKCS11: return "pkcs11";
    case TOKEN_KIND_NONE: break;
    }
    return "none";
}

/* "token": "none" | {"type": "soft", "kdf_n": N} | {"type": "pkcs11", "module": ..., "label": ...}
 * Absent means a soft token: data at rest is encrypted unless the config says otherwise. A tmpfs
 * data volume (data_size_mb 0) never reaches the disk, so there is nothing to encrypt. */
static int parse_token(json_t *root, struct container_config *cfg, tm_err *err)
{
    struct token_config *t = &cfg->token;
    json_t *v;
    if (!(v = json_object_get(root, "token"))) {
        t->kind = cfg->data_size_mb ? TOKEN_KIND_SOFT : TOKEN_KIND_NONE;
        return 0;
    }
    if (!json_is_string(v) && cfg->data_size_mb == 0)
        return tm_err_set(err, EINVAL,
                          "$.token: a tmpfs data volume (data_size_mb 0) is not "
                          "stored, so it cannot be encrypted; remove \"token\" or give a size");
    if (json_is_string(v)) {
        if (strcmp(json_string_value(v), "none") != 0)
            return tm_err_set(err, EINVAL,
                              "$.token: a string must be \"none\"; a token is an "
                              "object such as {\"type\": \"soft\"}");
        t->kind = TOKEN_KIND_NONE;
        return 0;
    }
    if (!json_is_object(v))
        return tm_err_set(err, EINVAL, "$.token: expected \"none\" or an object, got %s", tm_json_type_name(v));
    static const char *const keys[] = {"type", "kdf_n", "module", "label", "serial", NULL};
    int r;
    const char *type, *s;
    if ((r = tm_json_check_keys(v, "$.token", keys, err)) < 0 ||
        (r = tm_json_get_string(v, "$.token", "type", true, 16, &type, err)) < 0)
        return r;
    if (strcmp(type, "soft") == 0) {
        t->kind = TOKEN_KIND_SOFT;
        int64_t n = 0;
        if ((r = tm_json_get_int(v, "$.token", "kdf_n", false, 1024, 1 << 20, &n, err)) < 0)
            return r;
        if (r && (n & (n - 1)))
            return tm_err_set(err, EINVAL, "$.token.kdf_n: must be a power of two");
        t->kdf_n = (uint64_t)n;
        static const char *const pkcs11_only[] = {"module", "label", "serial"};
        for (size_t i = 0; i < ARRAY_SIZE(pkcs11_only); i++)
            if ((json_object_get(v, pkcs11_only[i]) != NULL))
                return tm_err_set(err, EINVAL, "$.token.%s: only for \"type\": \"pkcs11\"", pkcs11_only[i]);
        return 0;
    }
    if (strcmp(type, "pkcs11") != 0)
        return tm_err_set(err, EINVAL, "$.token.type: must be \"soft\" or \"pkcs11\", got \"%s\"", type);
    t->kind = TOKEN_KIND_PKCS11;
    if ((json_object_get(v, "kdf_n") != NULL))
        return tm_err_set(err, EINVAL, "$.token.kdf_n: only for \"type\": \"soft\"");
    if ((r = tm_json_get_string(v, "$.token", "module", true, PATH_MAX - 1, &s, err)) < 0)
        return r;
    if (!config_clean_abs_path(s))
        return tm_err_set(err, EINVAL, "$.token.module: must be an absolute path, got \"%s\"", s);
    snprintf(t->module, sizeof(t->module), "%s", s);
    int has_label, has_serial;
    if ((has_label = tm_json_get_string(v, "$.token", "label", false, 32, &s, err)) < 0)
        return has_label;
    if (has_label)
        snprintf(t->label, sizeof(t->label), "%s", s);
    if ((has_serial = tm_json_get_string(v, "$.token", "serial", false, 16, &s, err)) < 0)
        return has_serial;
    if (has_serial)
        snprintf(t->serial, sizeof(t->serial), "%s", s);
    if (!has_label && !has_serial)
        return tm_err_set(err, EINVAL, "$.token: a PKCS#11 token needs \"label\" or \"serial\"");
    return 0;
}

static int parse(json_t *root, struct container_config *cfg, tm_err *err)
{
    int r;
    const char *s;
    int64_t n;
    if ((r = tm_json_check_keys(root, "$", top_keys, err)) < 0)
        return r;

    if ((r = tm_json_get_string(root, "$", "name", true, 256, &s, err)) < 0)
        return r;
    if (!config_name_valid(s))
        return tm_err_set(err, EINVAL,
                          "$.name: \"%s\" is not a valid name (1-%d letters, digits, "
                          "'_', '.', '-', starting with a letter or digit, not a UUID)",
                          s, CONFIG_NAME_MAX);
    snprintf(cfg->name, sizeof(cfg->name), "%s", s);

    if ((r = parse_guestos(root, cfg, err)) < 0 || (r = parse_rootfs(root, cfg, err)) < 0)
        return r;

    if ((r = tm_json_get_string(root, "$", "init", false, PATH_MAX - 1, &s, err)) < 0)
        return r;
    cfg->init_set = r > 0;
    if (r == 0)
        s = "/sbin/init";
    if (!config_clean_abs_path(s))
        return tm_err_set(err, EINVAL, "$.init: must be an absolute path in the container, got \"%s\"", s);
    snprintf(cfg->init, sizeof(cfg->init), "%s", s);

    cfg->args_set = (json_object_get(root, "args") != NULL);
    if ((r = config_parse_strv(root, "$", "args", CONFIG_MAX_ARGS, &cfg->args, &cfg->nargs, err)) < 0 ||
        (r = config_parse_env(root, "$", &cfg->env, &cfg->nenv, err)) < 0)
        return r;

    if ((r = tm_json_get_string(root, "$", "hostname", false, 256, &s, err)) < 0)
        return r;
    if (r == 0) {
        /* The default is the name, which may hold '_' (not allowed in host names): '-' it is. */
        snprintf(cfg->hostname, sizeof(cfg->hostname), "%s", cfg->name);
        for (char *c = cfg->hostname; *c; c++)
            if (*c == '_')
                *c = '-';
        s = cfg->hostname;
    }
    if (!hostname_valid(s))
        return tm_err_set(err, EINVAL,
                          "$.hostname: \"%s\" is not a valid host name (1-%d letters, "
                          "digits, '-' and '.')",
                          s, CONFIG_HOSTNAME_MAX);
    if (s != cfg->hostname)
        snprintf(cfg->hostname, sizeof(cfg->hostname), "%s", s);

    cfg->memory_limit_mb = CONFIG_DEFAULT_MEMORY_MB;
    if ((r = tm_json_get_int(root, "$", "memory_limit_mb", false, 0, 1 << 24, &n, err)) < 0)
        return r;
    if (r) {
        if (n != 0 && n < 4)
            return tm_err_set(err, ERANGE,
                              "$.memory_limit_mb: %lld is too small (0 for no limit, "
                              "or at least 4)",
                              (long long)n);
        cfg->memory_limit_mb = (uint64_t)n;
    }
    cfg->pids_limit = CONFIG_DEFAULT_PIDS;
    if ((r = tm_json_get_int(root, "$", "pids_limit", false, 0, 4194304, &n, err)) < 0)
        return r;
    if (r)
        cfg->pids_limit = (uint32_t)n;

    if ((r = tm_json_get_string(root, "$", "cpus", false, sizeof(cfg->cpus) - 1, &s, err)) < 0)
        return r;
    if (r) {
        if (!cpuset_valid(s))
            return tm_err_set(err, EINVAL,
                              "$.cpus: \"%s\" is not a CPU list such as \"0\", "
                              "\"0-1\" or \"0,2-3\"",
                              s);
        snprintf(cfg->cpus, sizeof(cfg->cpus), "%s", s);
    }

    /* 0 when absent; a signed config's update must raise it (docs/CONFIG.md). */
    if ((r = tm_json_get_int(root, "$", "config_version", false, 1, 1LL << 53, &n, err)) < 0)
        return r;
    cfg->config_version = r ? (uint64_t)n : 0;

    cfg->data_size_mb = CONFIG_DEFAULT_DATA_MB;
    if ((r = tm_json_get_int(root, "$", "data_size_mb", false, 0, 1 << 24, &n, err)) < 0)
        return r;
    if (r) {
        if (n != 0 && n < 8)
            return tm_err_set(err, ERANGE,
                              "$.data_size_mb: %lld is too small (0 for no persistent "
                              "volume, or at least 8)",
                              (long long)n);
        cfg->data_size_mb = (uint64_t)n;
    }

    if ((r = parse_devices(root, cfg, err)) < 0 || (r = parse_caps(root, cfg, err)) < 0)
        return r;

    cfg->user_namespace = true;
    if ((r = tm_json_get_bool(root, "$", "user_namespace", false, &cfg->user_namespace, err)) < 0)
        return r;
    cfg->autostart = false;
    if ((r = tm_json_get_bool(root, "$", "autostart", false, &cfg->autostart, err)) < 0)
        return r;
    cfg->keystore = false;
    if ((r = tm_json_get_bool(root, "$", "keystore", false, &cfg->keystore, err)) < 0)
        return r;
    cfg->vtpm = false;
    if ((r = tm_json_get_bool(root, "$", "vtpm", false, &cfg->vtpm, err)) < 0)
        return r;
    if ((r = parse_token(root, cfg, err)) < 0)
        return r;
    return config_net_parse(root, &cfg->net, &cfg->control, err);
}

int config_parse(const char *json, size_t len, struct container_config **ret, tm_err *err)
{
    json_t *root;
    int r = tm_json_parse_object(json, len, &root, err);
    if (r < 0)
        return r;
    struct container_config *cfg = calloc(1, sizeof(*cfg));
    if (!cfg) {
        json_decref(root);
        return tm_err_set(err, ENOMEM, "out of memory");
    }
    r = parse(root, cfg, err);
    json_decref(root);
    if (r < 0) {
        config_free(cfg);
        return r;
    }
    *ret = cfg;
    return 0;
}

void config_free_strv(char **v)
{
    for (char **p = v; p && *p; p++)
        free(*p);
    free(v);
}

void config_free(struct container_config *cfg)
{
    if (!cfg)
        return;
    config_free_strv(cfg->args);
    config_free_strv(cfg->env);
    config_free_strv(cfg->guest_env);
    free(cfg->devices);
    free(cfg);
}
