/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "device.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "cleanup.h"
#include "crypto.h"
#include "fileio.h"
#include "jsonutil.h"

#define DEVICE_CONFIG_MAX (1024 * 1024)

const char *storage_backend_name(enum storage_backend b)
{
    return b == STORAGE_DMCRYPT ? "dm-crypt" : "fscrypt";
}

static int parse_storage(json_t *root, struct device_config *cfg, tm_err *err)
{
    static const char *const keys[] = {"backend", NULL};
    json_t *st;
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
        return tm_err_set(err, EINVAL, "$.storage.backend: must be \"fscrypt\" or \"dm-crypt\", got \"%s\"", backend);
    return 0;
}

/* A path to a PEM file: canonical and absolute (the file itself is read when needed). */
static int pem_path(const char *path, const char *value, char **ret, tm_err *err)
{
    if (value[0] != '/' || strstr(value, "/../") || strstr(value, "/./") || strstr(value, "//") ||
        (strlen(value) >= 3 && strcmp(value + strlen(value) - 3, "/..") == 0))
        return tm_err_set(err, EINVAL, "%s: \"%s\" must be a canonical absolute path", path, value);
    if (!(*ret = strdup(value)))
        return tm_err_set(err, ENOMEM, "out of memory");
    return 0;
}

static int get_pem_path(json_t *obj, const char *path, const char *key, char **ret, tm_err *err)
{
    const char *v;
    char sub[TM_JSON_PATH_MAX];
    int r = tm_json_get_string(obj, path, key, false, PATH_MAX - 1, &v, err);
    if (r <= 0)
        return r;
    tm_json_path_key(sub, path, key);
    return pem_path(sub, v, ret, err);
}

static int get_pem_list(json_t *obj, const char *path, const char *key, char **out, size_t max, size_t *n, tm_err *err)
{
    json_t *arr;
    char sub[TM_JSON_PATH_MAX], item[TM_JSON_PATH_MAX];
    int r = tm_json_get_array(obj, path, key, false, max, &arr, err);
    if (r <= 0)
        return r;
    tm_json_path_key(sub, path, key);
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const char *v;
        tm_json_path_index(item, sub, i);
        if ((r = tm_json_expect_string(json_array_get(arr, i), item, PATH_MAX - 1, &v, err)) < 0 ||
            (r = pem_path(item, v, &out[*n], err)) < 0)
            return r;
        (*n)++;
    }
    return 0;
}

/* trust.guestos_owners: {"NAME": "<SHA-256 of a GuestOS Signing CA, 64 lower-case hex>"} */
static int parse_owners(json_t *t, struct device_config *cfg, tm_err *err)
{
    json_t *o;
    int r = tm_json_get_object(t, "$.trust", "guestos_owners", false, DEVICE_MAX_CAS, &o, err);
    if (r <= 0)
        return r;
    const char *name;
    json_t *value;
    json_object_foreach(o, name, value)
    {
        char path[TM_JSON_PATH_MAX];
        const char *hex;
        tm_json_path_key(path, "$.trust.guestos_owners", name);
        if (!config_name_valid(name))
            return tm_err_set(err, EINVAL, "%s: not a valid GuestOS name", path);
        if ((r = tm_json_expect_string(value, path, 64, &hex, err)) < 0)
            return r;
        bool ok = strlen(hex) == 64;
        for (size_t i = 0; ok && i < 64; i++)
            ok = (hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f');
        if (!ok)
            return tm_err_set(err, EINVAL,
                              "%s: must be the CA certificate's SHA-256, 64 lower-case "
                              "hex digits (as trustme ca register prints it)",
                              path);
        if (cfg->n_guestos_owners == DEVICE_MAX_CAS)
            return tm_err_set(err, E2BIG, "$.trust.guestos_owners: at most %d names", DEVICE_MAX_CAS);
        snprintf(cfg->guestos_owners[cfg->n_guestos_owners].name, CONFIG_NAME_MAX + 1, "%s", name);
        memcpy(cfg->guestos_owners[cfg->n_guestos_owners++].ca_sha256, hex, 65);
    }
    return 0;
}

static int parse_trust(json_t *root, struct device_config *cfg, tm_err *err)
{
    static const char *const keys[] = {
        "software_signing_root", "general_root", "local_root", "guestos_cas", "crls", "guestos_owners", NULL};
    json_t *t;
    int r = tm_json_get_object(root, "$", "trust", false, 16, &t, err);
    if (r <= 0)
        return r;
    if ((r = tm_json_check_keys(t, "$.trust", keys, err)) < 0 ||
        (r = get_pem_path(t, "$.trust", "software_signing_root", &cfg->software_root, err)) < 0 ||
        (r = get_pem_path(t, "$.trust", "general_root", &cfg->general_root, err)) < 0 ||
        (r = get_pem_path(t, "$.trust", "local_root", &cfg->local_root, err)) < 0 ||
        (r = get_pem_list(t, "$.trust", "guestos_cas", cfg->guestos_cas, DEVICE_MAX_CAS, &cfg->n_guestos_cas, err)) <
            0 ||
        (r = get_pem_list(t, "$.trust", "crls", cfg->crls, DEVICE_MAX_CRLS, &cfg->n_crls, err)) < 0 ||
        (r = parse_owners(t, cfg, err)) < 0)
        return r;
    return 0;
}

static int parse_policy(json_t *root, struct device_config *cfg, tm_err *err)
{
    static const char *const keys[] = {"allow_locally_signed", "allow_unsigned", "signed_configs",
                                       "allow_privileged",     "require_vtpm",   NULL};
    json_t *p;
    int r = tm_json_get_object(root, "$", "policy", false, 16, &p, err);
    if (r <= 0)
        return r;
    if ((r = tm_json_check_keys(p, "$.policy", keys, err)) < 0 ||
        (r = tm_json_get_bool(p, "$.policy", "allow_locally_signed", false, &cfg->allow_locally_signed, err)) < 0 ||
        (r = tm_json_get_bool(p, "$.policy", "allow_unsigned", false, &cfg->allow_unsigned, err)) < 0 ||
        (r = tm_json_get_bool(p, "$.policy", "signed_configs", false, &cfg->signed_configs, err)) < 0 ||
        (r = tm_json_get_bool(p, "$.policy", "allow_privileged", false, &cfg->allow_privileged, err)) < 0 ||
        (r = tm_json_get_bool(p, "$.policy", "require_vtpm", false, &cfg->require_vtpm, err)) < 0)
        return r;
    return 0;
}

static int parse_names(json_t *root, struct device_config *cfg, tm_err *err)
{
    const char *v;
    int r = tm_json_get_string(root, "$", "architecture", false, DEVICE_ARCH_MAX, &v, err);
    if (r < 0)
        return r;
    if (r > 0) {
        if (!v[0] || strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789_") != strlen(v))
            return tm_err_set(err, EINVAL,
                              "$.architecture: \"%s\" is not a machine name like "
                              "\"x86_64\"",
                              v);
        snprintf(cfg->architecture, sizeof(cfg->architecture), "%s", v);
    }
    if ((r = tm_json_get_string(root, "$", "core_guestos", false, CONFIG_NAME_MAX, &v, err)) < 0)
        return r;
    if (r > 0) {
        if (!config_name_valid(v))
            return tm_err_set(err, EINVAL, "$.core_guestos: \"%s\" is not a valid GuestOS name", v);
        snprintf(cfg->core_guestos, sizeof(cfg->core_guestos), "%s", v);
    }
    return 0;
}

static int parse_tpm(json_t *root, struct device_config *cfg, tm_err *err)
{
    static const char *const keys[] = {"tcti",       "boot_pcr",         "runtime_pcr", "attest_address",
                                       "boot_chain", "require_hardware", NULL};
    json_t *t;
    const char *v;
    int64_t n;
    int r = tm_json_get_object(root, "$", "tpm", false, 16, &t, err);
    if (r <= 0)
        return r;
    if ((r = tm_json_check_keys(t, "$.tpm", keys, err)) < 0 ||
        (r = tm_json_get_string(t, "$.tpm", "tcti", false, DEVICE_TCTI_MAX, &v, err)) < 0)
        return r;
    if (r > 0) {
        if (!v[0] || strchr(v, '\n'))
            return tm_err_set(err, EINVAL,
                              "$.tpm.tcti: give a TCTI string like "
                              "\"device:/dev/tpmrm0\" or \"embedded\"");
        snprintf(cfg->tpm_tcti, sizeof(cfg->tpm_tcti), "%s", v);
    }
    if ((r = tm_json_get_int(t, "$.tpm", "boot_pcr", false, 0, 23, &n, err)) < 0)
        return r;
    if (r > 0)
        cfg->boot_pcr = (unsigned)n;
    if ((r = tm_json_get_int(t, "$.tpm", "runtime_pcr", false, 0, 23, &n, err)) < 0)
        return r;
    if (r > 0)
        cfg->runtime_pcr = (unsigned)n;
    if (cfg->boot_pcr == cfg->runtime_pcr)
        return tm_err_set(err, EINVAL, "$.tpm: boot_pcr and runtime_pcr must differ (both %u)", cfg->boot_pcr);
    if ((r = tm_json_get_string(t, "$.tpm", "attest_address", false, DEVICE_ADDRESS_MAX, &v, err)) < 0)
        return r;
    if (r > 0) {
        const char *colon = strrchr(v, ':');
        if (!colon || colon == v || !colon[1] || strspn(colon + 1, "0123456789") != strlen(colon + 1))
            return tm_err_set(err, EINVAL, "$.tpm.attest_address: \"%s\" is not HOST:PORT", v);
        snprintf(cfg->attest_address, sizeof(cfg->attest_address), "%s", v);
    }
    if ((r = tm_json_get_string(t, "$.tpm", "boot_chain", false, 16, &v, err)) < 0)
        return r;
    if (r > 0) {
        if (strcmp(v, "self") == 0)
            cfg->boot_chain = BOOT_CHAIN_SELF;
        else if (strcmp(v, "ima") == 0)
            cfg->boot_chain = BOOT_CHAIN_IMA;
        else
            return tm_err_set(err, EINVAL,
                              "$.tpm.boot_chain: \"%s\" is neither \"self\" nor "
                              "\"ima\"",
                              v);
    }
    r = tm_json_get_bool(t, "$.tpm", "require_hardware", false, &cfg->tpm_require_hardware, err);
    return r < 0 ? r : 0;
}

static int parse_pin(json_t *root, struct device_config *cfg, tm_err *err)
{
    static const char *const keys[] = {"min_length", "allow_trivial", NULL};
    json_t *p;
    int64_t n;
    int r = tm_json_get_object(root, "$", "pin", false, 8, &p, err);
    if (r <= 0)
        return r;
    if ((r = tm_json_check_keys(p, "$.pin", keys, err)) < 0 ||
        (r = tm_json_get_int(p, "$.pin", "min_length", false, 4, 64, &n, err)) < 0)
        return r;
    if (r > 0)
        cfg->pin_min_length = (unsigned)n;
    r = tm_json_get_bool(p, "$.pin", "allow_trivial", false, &cfg->pin_allow_trivial, err);
    return r < 0 ? r : 0;
}

static int parse_management(json_t *root, struct device_config *cfg, tm_err *err)
{
    const char *v;
    int r = tm_json_get_string(root, "$", "core_container", false, CONFIG_NAME_MAX, &v, err);
    if (r < 0)
        return r;
    if (r > 0) {
        if (!config_name_valid(v))
            return tm_err_set(err, EINVAL, "$.core_container: \"%s\" is not a valid container name", v);
        snprintf(cfg->core_container, sizeof(cfg->core_container), "%s", v);
    }
    if ((r = tm_json_get_bool(root, "$", "admin_socket_in_root", false, &cfg->admin_socket_in_root, err)) < 0)
        return r;
    if (!cfg->admin_socket_in_root && !cfg->core_container[0])
        return tm_err_set(err, EINVAL,
                          "$.admin_socket_in_root: false needs a core_container, "
                          "through which the device is then managed");
    return 0;
}

/* "migrate": {"address": "HOST:PORT", "max_bundle_mb": N} (docs/CONFIG.md) */
static int parse_migrate(json_t *root, struct device_config *cfg, tm_err *err)
{
    static const char *const keys[] = {"address", "max_bundle_mb", NULL};
    json_t *m;
    const char *v;
    int64_t n;
    int r = tm_json_get_object(root, "$", "migrate", false, 8, &m, err);
    if (r <= 0)
        return r;
    if ((r = tm_json_check_keys(m, "$.migrate", keys, err)) < 0 ||
        (r = tm_json_get_string(m, "$.migrate", "address", false, DEVICE_ADDRESS_MAX, &v, err)) < 0)
        return r;
    if (r > 0) {
        const char *colon = strrchr(v, ':');
        if (!colon || colon == v || !colon[1] || strspn(colon + 1, "0123456789") != strlen(colon + 1))
            return tm_err_set(err, EINVAL, "$.migrate.address: \"%s\" is not HOST:PORT", v);
        snprintf(cfg->migrate_address, sizeof(cfg->migrate_address), "%s", v);
    }
    if ((r = tm_json_get_int(m, "$.migrate", "max_bundle_mb", false, 1, 1 << 24, &n, err)) < 0)
        return r;
    if (r > 0)
        cfg->migrate_max_bundle = (uint64_t)n << 20;
    return 0;
}

/* "audit": {"max_file_kb": 1024, "max_file_age_days": 30, "keep_files": 10} */
static int parse_audit(json_t *root, struct device_config *cfg, tm_err *err)
{
    static const char *const keys[] = {"max_file_kb", "max_file_age_days", "keep_files", NULL};
    json_t *a;
    int64_t n;
    int r = tm_json_get_object(root, "$", "audit", false, 8, &a, err);
    if (r <= 0)
        return r;
    if ((r = tm_json_check_keys(a, "$.audit", keys, err)) < 0 ||
        (r = tm_json_get_int(a, "$.audit", "max_file_kb", false, 1, 1 << 30, &n, err)) < 0)
        return r;
    if (r > 0)
        cfg->audit_rotation.max_bytes = (uint64_t)n * 1024;
    if ((r = tm_json_get_int(a, "$.audit", "max_file_age_days", false, 1, 36500, &n, err)) < 0)
        return r;
    if (r > 0)
        cfg->audit_rotation.max_age_s = (uint64_t)n * 86400;
    if ((r = tm_json_get_int(a, "$.audit", "keep_files", false, 1, 10000, &n, err)) < 0)
        return r;
    if (r > 0)
        cfg->audit_rotation.keep = (unsigned)n;
    return 0;
}

void device_config_clear(struct device_config *cfg)
{
    free(cfg->software_root);
    free(cfg->general_root);
    free(cfg->local_root);
    for (size_t i = 0; i < cfg->n_guestos_cas; i++)
        free(cfg->guestos_cas[i]);
    for (size_t i = 0; i < cfg->n_crls; i++)
        free(cfg->crls[i]);
    config_net_device_clear(&cfg->net);
    memset(cfg, 0, sizeof(*cfg));
}

static void set_defaults(struct device_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->storage_backend = STORAGE_FSCRYPT;
    struct utsname u;
    snprintf(cfg->architecture, sizeof(cfg->architecture), "%s", uname(&u) == 0 ? u.machine : "unknown");
    snprintf(cfg->core_guestos, sizeof(cfg->core_guestos), "trustme-core");
    snprintf(cfg->tpm_tcti, sizeof(cfg->tpm_tcti), "embedded");
    cfg->boot_pcr = 12;
    cfg->runtime_pcr = 11;
    snprintf(cfg->attest_address, sizeof(cfg->attest_address), "127.0.0.1:9505");
    cfg->admin_socket_in_root = true;
    cfg->migrate_max_bundle = (uint64_t)64 << 30;
    cfg->pin_min_length = 4;
    cfg->audit_rotation.keep = 10;
    tm_sha256("", 0, cfg->sha256);
}

int device_config_load(const char *data_dir, struct device_config *ret, tm_err *err)
{
    static const char *const keys[] = {
        "storage",        "architecture",         "core_guestos", "trust", "policy",  "tpm", "network",
        "core_container", "admin_socket_in_root", "pin",          "audit", "migrate", NULL};
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/device.json", data_dir);
    struct device_config cfg;
    set_defaults(&cfg);
    _cleanup_free_ char *data = NULL;
    size_t len;
    int r = read_file(path, DEVICE_CONFIG_MAX, &data, &len, err);
    if (r < 0 && err->code == ENOENT) {
        if ((r = config_net_device_parse(NULL, &cfg.net, err)) < 0) /* the defaults */
            return r;
        *ret = cfg;
        return 0;
    }
    if (r < 0)
        return r;
    tm_sha256(data, len, cfg.sha256);
    json_t *root;
    if ((r = tm_json_parse_object(data, len, &root, err)) < 0)
        return tm_err_prefix(err, "%s", path);
    if ((r = tm_json_check_keys(root, "$", keys, err)) == 0 && (r = parse_storage(root, &cfg, err)) == 0 &&
        (r = parse_names(root, &cfg, err)) == 0 && (r = parse_trust(root, &cfg, err)) == 0 &&
        (r = parse_policy(root, &cfg, err)) == 0 && (r = parse_tpm(root, &cfg, err)) == 0 &&
        (r = parse_pin(root, &cfg, err)) == 0 && (r = parse_management(root, &cfg, err)) == 0 &&
        (r = parse_audit(root, &cfg, err)) == 0 && (r = parse_migrate(root, &cfg, err)) == 0)
        r = config_net_device_parse(root, &cfg.net, err);
    json_decref(root);
    if (r < 0)
        tm_err_prefix(err, "%s", path);
    if (r < 0) {
        device_config_clear(&cfg);
        return r;
    }
    *ret = cfg;
    return 0;
}
