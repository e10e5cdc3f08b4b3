/* SPDX-License-Identifier: GPL-2.0-or-later */
/* guestos.json. The signature covers its raw bytes as written, so the form only has to be
 * stable for one version of this tool (reproducible builds): jansson indenting by two spaces
 * ("key": value), keys in the order of docs/GUESTOS.md (jansson keeps insertion order), '/'
 * unescaped. Before jansson, json-c wrote an empty array as "[\n  ]" where jansson writes "[]";
 * files signed then verify as they are. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cleanup.h"
#include "fileio.h"
#include "guestos.h"
#include "json_cleanup.h"

/* jansson fails only to allocate (or on a string that is not UTF-8); rather than checking every
 * call, a builder counts failures in *ok and the document is refused at the end. val is consumed
 * either way (jansson's _new functions take it even when they fail). */
static void put(json_t *obj, const char *key, json_t *val, bool *ok)
{
    if (!obj) {
        json_decref(val);
        *ok = false;
    } else if (json_object_set_new(obj, key, val) < 0) {
        *ok = false;
    }
}

static void push(json_t *arr, json_t *val, bool *ok)
{
    if (!arr) {
        json_decref(val);
        *ok = false;
    } else if (json_array_append_new(arr, val) < 0) {
        *ok = false;
    }
}

static json_t *mount_json(const struct gos_mount *m, bool *ok)
{
    json_t *o = json_object();
    bool has_image = m->kind == GOS_SHARED || m->kind == GOS_OVERLAY;
    if (has_image)
        put(o, "image", json_string(m->image), ok);
    put(o, "mount_point", json_string(m->mount_point), ok);
    if (has_image)
        put(o, "fs_type", json_string(gos_fs_name(m->fs)), ok);
    put(o, "kind", json_string(gos_kind_name(m->kind)), ok);
    if (has_image) {
        put(o, "size", json_integer((int64_t)m->size), ok);
        put(o, "sha256", json_string(m->sha256), ok);
    }
    if (m->kind == GOS_TMPFS && m->size_mb)
        put(o, "size_mb", json_integer(m->size_mb), ok);
    return o;
}

static json_t *env_json(const struct gos_spec *spec, bool *ok)
{
    json_t *env = json_object();
    for (size_t i = 0; i < spec->n_env; i++) {
        const char *eq = strchr(spec->env[i], '=');
        _cleanup_free_ char *key = strndup(spec->env[i], (size_t)(eq - spec->env[i]));
        if (!key)
            *ok = false;
        else
            put(env, key, json_string(eq + 1), ok);
    }
    return env;
}

static json_t *manifest_json(const struct gos_spec *spec, bool *ok)
{
    json_t *root = json_object();
    put(root, "name", json_string(spec->name), ok);
    put(root, "version", json_integer((int64_t)spec->version), ok);
    put(root, "architecture", json_string(spec->architecture), ok);
    put(root, "init", json_string(spec->init), ok);
    if (spec->n_args) {
        json_t *args = json_array();
        for (size_t i = 0; i < spec->n_args; i++)
            push(args, json_string(spec->args[i]), ok);
        put(root, "args", args, ok);
    }
    if (spec->n_env)
        put(root, "env", env_json(spec, ok), ok);
    if (spec->description)
        put(root, "description", json_string(spec->description), ok);
    if (spec->working_dir)
        put(root, "working_dir", json_string(spec->working_dir), ok);
    if (spec->has_user) {
        json_t *user = json_object();
        put(user, "uid", json_integer(spec->uid), ok);
        put(user, "gid", json_integer(spec->gid), ok);
        put(root, "user", user, ok);
    }
    if (spec->n_ports) {
        json_t *ports = json_array();
        for (size_t i = 0; i < spec->n_ports; i++)
            push(ports, json_string(spec->ports[i]), ok);
        put(root, "ports", ports, ok);
    }
    if (spec->oci_manifest || spec->oci_config) {
        json_t *oci = json_object();
        if (spec->oci_manifest)
            put(oci, "manifest", json_string(spec->oci_manifest), ok);
        put(oci, "config", json_string(spec->oci_config), ok);
        put(root, "oci", oci, ok);
    }
    json_t *mounts = json_array();
    for (size_t i = 0; i < spec->n_mounts; i++)
        push(mounts, mount_json(&spec->mounts[i], ok), ok);
    put(root, "mounts", mounts, ok);
    return root;
}

int gos_manifest_write(const struct gos_spec *spec, const char *path, tm_err *err)
{
    bool ok = true;
    _cleanup_json_ json_t *root = manifest_json(spec, &ok);
    if (!root || !ok)
        return tm_err_set(err, ENOMEM, "out of memory building guestos.json");
    _cleanup_free_ char *text = json_dumps(root, JSON_PRETTY_FLAGS);
    if (!text)
        return tm_err_set(err, ENOMEM, "out of memory printing guestos.json");
    size_t len = strlen(text);
    if (len + 1 > GOS_JSON_MAX)
        return tm_err_set(err, EFBIG, "guestos.json would be %zu bytes, trustmed reads at most %d", len + 1,
                          GOS_JSON_MAX);
    _cleanup_free_ char *doc = malloc(len + 2);
    if (!doc)
        return tm_err_set(err, ENOMEM, "out of memory printing guestos.json");
    memcpy(doc, text, len);
    doc[len++] = '\n';
    return write_file_atomic(path, doc, len, 0644, err);
}
