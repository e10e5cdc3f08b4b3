#include "guestos_owner.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cleanup.h"
#include "fileio.h"
#include "json_cleanup.h"
#include "jsonutil.h"

#define OWNERS_MAX (1024 * 1024)

static void owners_path(struct daemon *d, char *out, size_t size)
{
    snprintf(out, size, "%s/trust/guestos-owners.json", d->data_dir);
}

/* The record, or an empty object when there is none yet. */
static int owners_load(struct daemon *d, json_object **ret, tm_err *err)
{
    char path[PATH_MAX];
    owners_path(d, path, sizeof(path));
    _cleanup_free_ char *data = NULL;
    size_t len;
    tm_err e = {0};
    int r = read_file(path, OWNERS_MAX, &data, &len, &e);
    if (r < 0 && e.code == ENOENT) {
        *ret = json_object_new_object();
        return *ret ? 0 : tm_err_set(err, ENOMEM, "out of memory");
    }
    if (r < 0) {
        *err = e;
        return r;
    }
    if ((r = tm_json_parse_object(data, len, ret, err)) < 0)
        return tm_err_prefix(err, "%s", path);
    json_object_object_foreach(*ret, name, value) {
        if (!json_object_is_type(value, json_type_string) ||
            json_object_get_string_len(value) != 64) {
            json_object_put(*ret);
            return tm_err_set(err, EINVAL, "%s: $.%s is not a CA's SHA-256", path, name);
        }
    }
    return 0;
}

int guestos_owner_lookup(struct daemon *d, const char *name, char ret[65], bool *ret_bound,
                         tm_err *err)
{
    ret[0] = '\0';
    *ret_bound = false;
    for (size_t i = 0; i < d->device.n_guestos_owners; i++)
        if (strcmp(d->device.guestos_owners[i].name, name) == 0) {
            memcpy(ret, d->device.guestos_owners[i].ca_sha256, 65);
            *ret_bound = true;
            return 0;
        }
    _cleanup_json_ json_object *o = NULL;
    int r = owners_load(d, &o, err);
    if (r < 0)
        return r;
    json_object *v;
    if (json_object_object_get_ex(o, name, &v))
        snprintf(ret, 65, "%s", json_object_get_string(v));
    return 0;
}

int guestos_owner_record(struct daemon *d, const char *name, const char *ca, tm_err *err)
{
    _cleanup_json_ json_object *o = NULL;
    int r = owners_load(d, &o, err);
    if (r < 0)
        return r;
    json_object *v;
    if (json_object_object_get_ex(o, name, &v) && strcmp(json_object_get_string(v), ca) == 0)
        return 0;
    json_object_object_add(o, name, json_object_new_string(ca));
    char dir[PATH_MAX], path[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/trust", d->data_dir);
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return tm_err_sys(err, "cannot create %s", dir);
    owners_path(d, path, sizeof(path));
    const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    return write_file_atomic(path, text, strlen(text), 0600, err);
}
