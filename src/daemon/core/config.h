/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Container configuration: strict JSON parsing (docs/CONFIG.md). The parser is pure: it checks
 * syntax, types and ranges; checks against the host (does the rootfs exist?) happen in create. */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config_net.h"
#include "error.h"

#define CONFIG_NAME_MAX 63
#define CONFIG_HOSTNAME_MAX 64
#define CONFIG_MAX_ARGS 256
#define CONFIG_MAX_ENV 256
#define CONFIG_MAX_DEVICES 64
#define CONFIG_ARG_MAX 4096
#define CONFIG_DEVICE_PATH_MAX 128

enum rootfs_type { ROOTFS_AUTO = 0, ROOTFS_DIR, ROOTFS_SQUASHFS, ROOTFS_EROFS };

#define DEV_WILDCARD UINT32_MAX

struct device_rule {
    char type; /* 'c' or 'b' */
    uint32_t major, minor; /* DEV_WILDCARD for "any" (built-in rules only) */
    char access[4]; /* subset of "rwm" */
    char path[CONFIG_DEVICE_PATH_MAX]; /* node to create under /dev, "" for rule-only entries */
};

enum token_kind { TOKEN_KIND_NONE = 0, TOKEN_KIND_SOFT = 1, TOKEN_KIND_PKCS11 = 2 };

/* Which token unlocks the container's encrypted data (docs/STORAGE.md). */
struct token_config {
    enum token_kind kind;
    uint64_t kdf_n; /* soft: scrypt N, 0 = the daemon's default */
    char module[PATH_MAX]; /* pkcs11: the module's absolute path */
    char label[33]; /* pkcs11: token label, or "" */
    char serial[17]; /* pkcs11: token serial, or "" */
};

#define CONFIG_VERSION_MAX (1LL << 53)

struct container_config {
    char name[CONFIG_NAME_MAX + 1];
    char guestos[CONFIG_NAME_MAX + 1]; /* the GuestOS it runs, "" for a development rootfs */
    uint64_t guestos_version; /* pinned version, 0 = the newest installed */
    char rootfs[PATH_MAX]; /* development only: an unsigned root file system */
    enum rootfs_type rootfs_type;
    /* init and args: the config's; what it leaves out is the GuestOS's, filled in at every start
     * (guestos_apply) from the version that start runs. */
    char init[PATH_MAX];
    bool init_set, args_set;
    char **args; /* argv[1..], NULL-terminated */
    size_t nargs;
    char **env; /* KEY=VALUE, NULL-terminated */
    size_t nenv;
    char **guest_env; /* the GuestOS's environment, below the config's */
    size_t nguest_env;
    /* The GuestOS's working directory ("" for "/") and init's user (guest_user: uid/gid set),
     * filled in at every start like guest_env (an imported OCI image's WorkingDir and User). */
    char guest_working_dir[PATH_MAX];
    bool guest_user;
    uint32_t guest_uid, guest_gid;
    char hostname[CONFIG_HOSTNAME_MAX + 1];
    uint64_t memory_limit_mb; /* 0: no limit */
    uint32_t pids_limit; /* 0: no limit */
    char cpus[128]; /* cpuset list, "" for all */
    uint64_t data_size_mb; /* 0: no persistent volume (tmpfs upper) */
    struct device_rule *devices;
    size_t ndevices;
    uint64_t caps_keep; /* bit n = keep capability n beyond the default */
    bool user_namespace;
    bool vtpm; /* a virtual TPM of its own (docs/VTPM.md) */
    bool autostart;
    bool keystore; /* a keystore service and /run/trustme/keystore.sock inside (docs/KEYSTORE.md) */
    struct token_config token;
    struct net_config net; /* docs/NETWORK.md */
    enum control_role control; /* the control socket it gets inside */
    uint64_t config_version; /* 0: none; signed updates must raise it */
};

#define CONFIG_DEFAULT_MEMORY_MB 1024
#define CONFIG_DEFAULT_PIDS 4096
#define CONFIG_DEFAULT_DATA_MB 64

int config_parse(const char *json, size_t len, struct container_config **ret, tm_err *err);
void config_free(struct container_config *cfg);
bool config_name_valid(const char *name);
/* An absolute path in canonical form (no ".", "..", empty components or trailing '/'). */
bool config_clean_abs_path(const char *p);

/* Shared with the GuestOS config (guestos_config.c). Both set *ret even on failure (to an array
 * the caller frees), NULL-terminated: an array of strings at key, and "env" as KEY=VALUE. */
struct json_t;
int config_parse_strv(struct json_t *root, const char *path, const char *key, size_t max, char ***ret, size_t *ret_n,
                      tm_err *err);
int config_parse_env(struct json_t *root, const char *path, char ***ret, size_t *ret_n, tm_err *err);
void config_free_strv(char **v);
const char *rootfs_type_name(enum rootfs_type t);
const char *token_kind_name(enum token_kind k);
