/* guestos.json. The signature covers its raw bytes, so its form is fixed: json-c's pretty
 * printer, keys in the order of docs/GUESTOS.md (json-c keeps insertion order), '/' unescaped. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "cleanup.h"
#include "fileio.h"
#include "guestos.h"

static void json_putp(json_object **o) { json_object_put(*o); }
#define _cleanup_json_ _cleanup_(json_putp)

/* json-c fails only to allocate; rather than checking every call, a builder counts failures in
 * *ok and the document is refused at the end. val is consumed either way. */
static void put(json_object *obj, const char *key, json_object *val, bool *ok)
{
    if (!obj || !val || json_object_object_add(obj, key, val) < 0) {
        json_object_put(val);
        *ok = false;
    }
}

static void push(json_object *arr, json_object *val, bool *ok)
{
    if (!arr || !val || json_object_array_add(arr, val) < 0) {
        json_object_put(val);
        *ok = false;
    }
}

static json_object *mount_json(const struct gos_mount *m, bool *ok)
{
    json_object *o = json_object_new_object();
    bool has_image = m->kind == GOS_SHARED || m->kind == GOS_OVERLAY;
    if (has_image)
        put(o, "image", json_object_new_string(m->image), ok);
    put(o, "mount_point", json_object_new_string(m->mount_point), ok);
    if (has_image)
        put(o, "fs_type", json_object_new_string(gos_fs_name(m->fs)), ok);
    put(o, "kind", json_object_new_string(gos_kind_name(m->kind)), ok);
    if (has_image) {
        put(o, "size", json_object_new_int64((int64_t)m->size), ok);
        put(o, "sha256", json_object_new_string(m->sha256), ok);
    }
    if (m->kind == GOS_TMPFS && m->size_mb)
        put(o, "size_mb", json_object_new_int64(m->size_mb), ok);
    return o;
}

static json_object *env_json(const struct gos_spec *spec, bool *ok)
{
    json_object *env = json_object_new_object();
    for (size_t i = 0; i < spec->n_env; i++) {
        const char *eq = strchr(spec->env[i], '=');
        _cleanup_free_ char *key = strndup(spec->env[i], (size_t)(eq - spec->env[i]));
        if (!key)
            *ok = false;
        else
            put(env, key, json_object_new_string(eq + 1), ok);
    }
    return env;
}

static json_object *manifest_json(const struct gos_spec *spec, bool *ok)
{
    json_object *root = json_object_new_object();
    put(root, "name", json_object_new_string(spec->name), ok);
    put(root, "version", json_object_new_int64((int64_t)spec->version), ok);
    put(root, "architecture", json_object_new_string(spec->architecture), ok);
    put(root, "init", json_object_new_string(spec->init), ok);
    if (spec->n_args) {
        json_object *args = json_object_new_array();
        for (size_t i = 0; i < spec->n_args; i++)
            push(args, json_object_new_string(spec->args[i]), ok);
        put(root, "args", args, ok);
    }
    if (spec->n_env)
        put(root, "env", env_json(spec, ok), ok);
    if (spec->description)
        put(root, "description", json_object_new_string(spec->description), ok);
    json_object *mounts = json_object_new_array();
    for (size_t i = 0; i < spec->n_mounts; i++)
        push(mounts, mount_json(&spec->mounts[i], ok), ok);
    put(root, "mounts", mounts, ok);
    return root;
}

int gos_manifest_write(const struct gos_spec *spec, const char *path, tm_err *err)
{
    bool ok = true;
    _cleanup_json_ json_object *root = manifest_json(spec, &ok);
    if (!root || !ok)
        return tm_err_set(err, ENOMEM, "out of memory building guestos.json");
    size_t len;
    const char *text = json_object_to_json_string_length(
        root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    if (!text)
        return tm_err_set(err, ENOMEM, "out of memory printing guestos.json");
    if (len + 1 > GOS_JSON_MAX)
        return tm_err_set(err, EFBIG, "guestos.json would be %zu bytes, trustmed reads at most %d",
                          len + 1, GOS_JSON_MAX);
    _cleanup_free_ char *doc = malloc(len + 2);
    if (!doc)
        return tm_err_set(err, ENOMEM, "out of memory printing guestos.json");
    memcpy(doc, text, len);
    doc[len++] = '\n';
    return write_file_atomic(path, doc, len, 0644, err);
}
