#include "jsonutil.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cleanup.h"
#include "json_strict.h"

void tm_json_path_key(char *out, const char *path, const char *key)
{
    snprintf(out, TM_JSON_PATH_MAX, "%s.%s", path, key);
}

void tm_json_path_index(char *out, const char *path, size_t index)
{
    snprintf(out, TM_JSON_PATH_MAX, "%s[%zu]", path, index);
}

const char *tm_json_type_name(json_object *v)
{
    switch (json_object_get_type(v)) {
    case json_type_null: return "null";
    case json_type_boolean: return "a boolean";
    case json_type_double: return "a number with a fraction";
    case json_type_int: return "an integer";
    case json_type_object: return "an object";
    case json_type_array: return "an array";
    case json_type_string: return "a string";
    }
    return "an unknown type";
}

int tm_json_parse_object(const char *data, size_t len, json_object **ret, tm_err *err)
{
    if (len > INT32_MAX)
        return tm_err_set(err, EFBIG, "$: document too large");
    if (memchr(data, '\0', len))
        return tm_err_set(err, EINVAL, "$: document contains a NUL byte");
    int r = tm_json_strict_check(data, len, err);
    if (r < 0)
        return r;
    json_tokener *tok = json_tokener_new();
    if (!tok)
        return tm_err_set(err, ENOMEM, "out of memory");
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    json_object *obj = json_tokener_parse_ex(tok, data, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t offset = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (!obj || jerr != json_tokener_success) {
        json_object_put(obj);
        if (jerr == json_tokener_continue)
            return tm_err_set(err, EINVAL, "$: document ends in the middle of a value");
        return tm_err_set(err, EINVAL, "$: invalid JSON at byte %zu: %s", offset,
                          json_tokener_error_desc(jerr));
    }
    for (size_t i = offset; i < len; i++) {
        if (!strchr(" \t\r\n", data[i])) {
            json_object_put(obj);
            return tm_err_set(err, EINVAL, "$: unexpected data after the JSON object at byte %zu", i);
        }
    }
    if (!json_object_is_type(obj, json_type_object)) {
        r = tm_err_set(err, EINVAL, "$: expected an object, got %s", tm_json_type_name(obj));
        json_object_put(obj);
        return r;
    }
    *ret = obj;
    return 0;
}

int tm_json_check_keys(json_object *obj, const char *path, const char *const *allowed, tm_err *err)
{
    json_object_object_foreach(obj, key, val)
    {
        (void)val;
        bool known = false;
        for (const char *const *a = allowed; *a && !known; a++)
            known = strcmp(*a, key) == 0;
        if (!known)
            return tm_err_set(err, EINVAL, "%s.%s: unknown key", path, key);
    }
    return 0;
}

/* Look up key; 1 = found, 0 = absent and optional, <0 = absent and required. */
static int lookup(json_object *obj, const char *path, const char *key, bool required,
                  json_object **ret, tm_err *err)
{
    if (!json_object_object_get_ex(obj, key, ret)) {
        if (required)
            return tm_err_set(err, EINVAL, "%s.%s: required key is missing", path, key);
        return 0;
    }
    return 1;
}

int tm_json_expect_string(json_object *v, const char *path, size_t max_len, const char **ret,
                          tm_err *err)
{
    if (!json_object_is_type(v, json_type_string))
        return tm_err_set(err, EINVAL, "%s: expected a string, got %s", path, tm_json_type_name(v));
    const char *s = json_object_get_string(v);
    size_t len = (size_t)json_object_get_string_len(v);
    if (strlen(s) != len)
        return tm_err_set(err, EINVAL, "%s: string contains a NUL character", path);
    if (len > max_len)
        return tm_err_set(err, EINVAL, "%s: string longer than %zu bytes", path, max_len);
    *ret = s;
    return 0;
}

int tm_json_get_string(json_object *obj, const char *path, const char *key, bool required,
                       size_t max_len, const char **ret, tm_err *err)
{
    json_object *v;
    int r = lookup(obj, path, key, required, &v, err);
    if (r <= 0)
        return r;
    char p[TM_JSON_PATH_MAX];
    tm_json_path_key(p, path, key);
    r = tm_json_expect_string(v, p, max_len, ret, err);
    return r < 0 ? r : 1;
}

int tm_json_get_int(json_object *obj, const char *path, const char *key, bool required, int64_t min,
                    int64_t max, int64_t *ret, tm_err *err)
{
    json_object *v;
    int r = lookup(obj, path, key, required, &v, err);
    if (r <= 0)
        return r;
    if (!json_object_is_type(v, json_type_int))
        return tm_err_set(err, EINVAL, "%s.%s: expected an integer, got %s", path, key,
                          tm_json_type_name(v));
    /* Integers beyond int64 never get here: tm_json_strict_check refuses them. */
    int64_t x = json_object_get_int64(v);
    if (x < min || x > max)
        return tm_err_set(err, ERANGE, "%s.%s: %s out of range (allowed %lld..%lld)", path, key,
                          json_object_to_json_string(v), (long long)min, (long long)max);
    *ret = x;
    return 1;
}

int tm_json_get_bool(json_object *obj, const char *path, const char *key, bool required, bool *ret,
                     tm_err *err)
{
    json_object *v;
    int r = lookup(obj, path, key, required, &v, err);
    if (r <= 0)
        return r;
    if (!json_object_is_type(v, json_type_boolean))
        return tm_err_set(err, EINVAL, "%s.%s: expected true or false, got %s", path, key,
                          tm_json_type_name(v));
    *ret = json_object_get_boolean(v);
    return 1;
}

static int get_container(json_object *obj, const char *path, const char *key, bool required,
                         size_t max_items, json_type type, json_object **ret, tm_err *err)
{
    json_object *v;
    int r = lookup(obj, path, key, required, &v, err);
    if (r <= 0)
        return r;
    if (!json_object_is_type(v, type))
        return tm_err_set(err, EINVAL, "%s.%s: expected %s, got %s", path, key,
                          type == json_type_array ? "an array" : "an object", tm_json_type_name(v));
    size_t n = type == json_type_array ? json_object_array_length(v)
                                       : (size_t)json_object_object_length(v);
    if (n > max_items)
        return tm_err_set(err, EINVAL, "%s.%s: more than %zu entries", path, key, max_items);
    *ret = v;
    return 1;
}

int tm_json_get_array(json_object *obj, const char *path, const char *key, bool required,
                      size_t max_items, json_object **ret, tm_err *err)
{
    return get_container(obj, path, key, required, max_items, json_type_array, ret, err);
}

int tm_json_get_object(json_object *obj, const char *path, const char *key, bool required,
                       size_t max_items, json_object **ret, tm_err *err)
{
    return get_container(obj, path, key, required, max_items, json_type_object, ret, err);
}
