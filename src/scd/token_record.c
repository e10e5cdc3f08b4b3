/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "token_record.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "cleanup.h"
#include "fileio.h"
#include "fs_err.h"
#include "json_cleanup.h"
#include "jsonutil.h"
#include "uuid.h"

#define RECORD_FILE_MAX 8192
#define RECORD_VERSION 1

static int path_join(char out[PATH_MAX], const char *dir, const char *uuid, const char *suffix, tm_err *err)
{
    if (snprintf(out, PATH_MAX, "%s/%s%s", dir, uuid, suffix) >= PATH_MAX)
        return tm_err_set(err, ENAMETOOLONG, "state directory path too long: %s", dir);
    return 0;
}

int token_paths_init(const struct token_ctx *ctx, const char *uuid, struct token_paths *ret, tm_err *err)
{
    if (!uuid || !tm_uuid_valid(uuid))
        return tm_err_set(err, EINVAL, "not a container UUID: \"%s\"", uuid ? uuid : "(null)");
    if (!ctx->state_dir || ctx->state_dir[0] == '\0')
        return tm_err_set(err, EINVAL, "no state directory given");
    if (snprintf(ret->dir, sizeof(ret->dir), "%s/tokens", ctx->state_dir) >= (int)sizeof(ret->dir))
        return tm_err_set(err, ENAMETOOLONG, "state directory path too long: %s", ctx->state_dir);
    int r;
    if ((r = path_join(ret->record, ret->dir, uuid, ".token", err)) < 0 ||
        (r = path_join(ret->soft, ret->dir, uuid, ".soft", err)) < 0 ||
        (r = path_join(ret->soft_new, ret->dir, uuid, ".soft.new", err)) < 0 ||
        (r = path_join(ret->tries, ret->dir, uuid, ".tries", err)) < 0)
        return r;
    return 0;
}

static int dir_lock(const struct token_paths *p, bool create, int *ret_fd, tm_err *err)
{
    if (create) {
        int r = mkdir_p(p->dir, 0700);
        if (r < 0) {
            errno = -r;
            return tm_err_sys(err, "cannot create %s", p->dir);
        }
    }
    _cleanup_close_ int fd = open(p->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return tm_err_sys(err, "cannot open %s", p->dir);
    while (flock(fd, LOCK_EX) < 0)
        if (errno != EINTR)
            return tm_err_sys(err, "cannot lock %s", p->dir);
    *ret_fd = steal_fd(fd);
    return 0;
}

static int parse_pkcs11(json_t *root, struct token_record *rec, tm_err *err)
{
    static const char *const keys[] = {"module", "label", "serial", NULL};
    json_t *obj;
    const char *module, *label = NULL, *serial = NULL;
    int r = tm_json_get_object(root, "$", "pkcs11", true, 8, &obj, err);
    if (r < 0 || (r = tm_json_check_keys(obj, "$.pkcs11", keys, err)) < 0 ||
        (r = tm_json_get_string(obj, "$.pkcs11", "module", true, PATH_MAX - 1, &module, err)) < 0 ||
        (r = tm_json_get_string(obj, "$.pkcs11", "label", false, P11_LABEL_MAX, &label, err)) < 0 ||
        (r = tm_json_get_string(obj, "$.pkcs11", "serial", false, P11_SERIAL_MAX, &serial, err)) < 0)
        return r;
    if (module[0] != '/')
        return tm_err_set(err, EINVAL, "$.pkcs11.module: must be an absolute path");
    if (!label && !serial)
        return tm_err_set(err, EINVAL, "$.pkcs11: needs \"label\" or \"serial\"");
    snprintf(rec->module, sizeof(rec->module), "%s", module);
    if ((rec->has_label = label != NULL))
        snprintf(rec->label, sizeof(rec->label), "%s", label);
    if ((rec->has_serial = serial != NULL))
        snprintf(rec->serial, sizeof(rec->serial), "%s", serial);
    return 0;
}

static int record_parse(const char *data, size_t len, struct token_record *rec, tm_err *err)
{
    static const char *const keys[] = {"version", "type", "pkcs11", NULL};
    _cleanup_json_ json_t *root = NULL;
    int64_t version;
    const char *type;
    int r = tm_json_parse_object(data, len, &root, err);
    if (r < 0 || (r = tm_json_check_keys(root, "$", keys, err)) < 0 ||
        (r = tm_json_get_int(root, "$", "version", true, 0, INT32_MAX, &version, err)) < 0)
        return r;
    if (version != RECORD_VERSION)
        return tm_err_set(err, EOPNOTSUPP,
                          "$.version: token record version %lld is not "
                          "supported (this build reads version %d)",
                          (long long)version, RECORD_VERSION);
    if ((r = tm_json_get_string(root, "$", "type", true, 16, &type, err)) < 0)
        return r;
    *rec = (struct token_record){0};
    if (strcmp(type, "soft") == 0) {
        rec->type = TOKEN_SOFT;
        if ((json_object_get(root, "pkcs11") != NULL))
            return tm_err_set(err, EINVAL, "$.pkcs11: not allowed for a soft token");
        return 0;
    }
    if (strcmp(type, "pkcs11") == 0) {
        rec->type = TOKEN_PKCS11;
        return parse_pkcs11(root, rec, err);
    }
    return tm_err_set(err, EINVAL, "$.type: must be \"soft\" or \"pkcs11\", got \"%s\"", type);
}

int token_record_load(const char *path, const char *uuid, struct token_record *ret, tm_err *err)
{
    _cleanup_free_ char *data = NULL;
    size_t len;
    int r = fs_err(read_file(path, RECORD_FILE_MAX, &data, &len, err), err);
    if (r == -ENOENT)
        return tm_err_set(err, ENOKEY, "container %s has no token: pair one first", uuid);
    if (r < 0)
        return r;
    return token_record_parse(data, len, path, ret, err);
}

int token_record_parse(const char *data, size_t len, const char *path, struct token_record *ret, tm_err *err)
{
    int r = record_parse(data, len, ret, err);
    if (r < 0)
        return tm_err_prefix(err, "token record %s", path);
    return 0;
}

int token_record_store(const char *path, const struct token_record *rec, tm_err *err)
{
    _cleanup_json_ json_t *root = json_object();
    if (!root)
        return tm_err_set(err, ENOMEM, "out of memory");
    json_object_set_new(root, "version", json_integer(RECORD_VERSION));
    json_object_set_new(root, "type", json_string(token_type_name(rec->type)));
    if (rec->type == TOKEN_PKCS11) {
        json_t *p = json_object();
        if (!p)
            return tm_err_set(err, ENOMEM, "out of memory");
        json_object_set_new(root, "pkcs11", p);
        json_object_set_new(p, "module", json_string(rec->module));
        if (rec->has_label)
            json_object_set_new(p, "label", json_string(rec->label));
        if (rec->has_serial)
            json_object_set_new(p, "serial", json_string(rec->serial));
    }
    _cleanup_free_ char *s = json_dumps(root, JSON_FORMAT_FLAGS);
    size_t len = s ? strlen(s) : 0;
    /* A failed allocation above leaves a member null; read it back rather than trust it. */
    struct token_record check;
    int r;
    if (!s || (r = record_parse(s, len, &check, NULL)) < 0)
        return tm_err_set(err, ENOMEM, "cannot build the token record (out of memory?)");
    return fs_err(write_file_atomic(path, s, len, 0600, err), err);
}

int token_dir_lock(const struct token_paths *p, bool create, int *ret_fd, tm_err *err)
{
    return fs_err(dir_lock(p, create, ret_fd, err), err);
}

void token_record_p11_config(const struct token_record *rec, struct p11_config *ret)
{
    *ret = (struct p11_config){
        .module = rec->module,
        .label = rec->has_label ? rec->label : NULL,
        .serial = rec->has_serial ? rec->serial : NULL,
    };
}
