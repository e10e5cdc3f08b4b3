/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "jsonutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "json_cleanup.h"

void tm_json_path_key(char *out, const char *path, const char *key)
{
    snprintf(out, TM_JSON_PATH_MAX, "%s.%s", path, key);
}

void tm_json_path_index(char *out, const char *path, size_t index)
{
    snprintf(out, TM_JSON_PATH_MAX, "%s[%zu]", path, index);
}

const char *tm_json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_NULL: return "null";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_REAL: return "a number with a fraction";
    case JSON_INTEGER: return "an integer";
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    }
    return "an unknown type";
}

/* What jansson's error code means for a user, in the words the checks used before jansson. */
static const char *parse_problem(const json_error_t *je)
{
    switch (json_error_code(je)) {
    case json_error_premature_end_of_input: return "document ends in the middle of a value";
    case json_error_end_of_input_expected: return "unexpected data after the JSON value";
    case json_error_invalid_utf8: return "invalid UTF-8";
    case json_error_null_byte_in_key: return "NUL character in a key";
    case json_error_duplicate_key: return "key appears more than once";
    case json_error_numeric_overflow:
        return strstr(je->text, "integer") ? "integer out of range" : "number out of range";
    case json_error_out_of_memory: return "out of memory";
    default: return "invalid JSON";
    }
}

/* What jansson does not check itself: nesting (jansson allows 2048 levels, no config has more
 * than a few), keys per object, and a NUL in a string value (let through by JSON_ALLOW_NUL so
 * that the error can name the value's JSON path). A value at depth TM_JSON_MAX_DEPTH may still be
 * an empty array or object, as the scanner that ran before jansson allowed. */
static int check_bounds(json_t *v, int depth, const char *path, tm_err *err)
{
    if (json_is_string(v) && strlen(json_string_value(v)) != json_string_length(v))
        return tm_err_set(err, EINVAL, "%s: string contains a NUL character", path);
    if (!json_is_object(v) && !json_is_array(v))
        return 0;
    size_t n = json_is_object(v) ? json_object_size(v) : json_array_size(v);
    if (n > 0 && depth >= TM_JSON_MAX_DEPTH)
        return tm_err_set(err, EINVAL, "%s: nested too deeply (more than %d levels)", path, TM_JSON_MAX_DEPTH);
    char p[TM_JSON_PATH_MAX];
    if (json_is_object(v)) {
        if (n > TM_JSON_MAX_KEYS)
            return tm_err_set(err, EINVAL, "%s: too many keys (more than %d)", path, TM_JSON_MAX_KEYS);
        const char *key;
        json_t *member;
        json_object_foreach(v, key, member)
        {
            tm_json_path_key(p, path, key);
            int r = check_bounds(member, depth + 1, p, err);
            if (r < 0)
                return r;
        }
        return 0;
    }
    size_t i;
    json_t *item;
    json_array_foreach(v, i, item)
    {
        tm_json_path_index(p, path, i);
        int r = check_bounds(item, depth + 1, p, err);
        if (r < 0)
            return r;
    }
    return 0;
}

/* Checks here and in jansson, which replaced json-c and a scanner of our own (json_strict.c):
 * - jansson (json_loadb): duplicate keys (JSON_REJECT_DUPLICATES, keys compared after decoding,
 *   so "a" and "\u0061" are one key), invalid UTF-8 (overlong forms, surrogates, above U+10FFFF;
 *   always on), control characters in strings, unpaired \u surrogates, \u0000 in a key, number
 *   forms (leading zeros, "1.", "-", exponents without digits, NaN, Infinity), integers beyond
 *   int64 ("too big integer" rather than json-c's saturation), reals that overflow, single
 *   quotes and every other non-RFC 8259 syntax, data after the value (the EOF check:
 *   JSON_DISABLE_EOF_CHECK not given). Its errors carry line and column, not a JSON path.
 * - here: a NUL byte anywhere in the bytes (jansson's reader takes it for the end of the input
 *   and would report trailing data), the document size, \u0000 in a string value, the nesting
 *   depth and keys per object (check_bounds, which names the JSON path), and that the document is
 *   an object. */
int tm_json_parse_object(const char *data, size_t len, json_t **ret, tm_err *err)
{
    if (len > INT32_MAX)
        return tm_err_set(err, EFBIG, "$: document too large");
    const char *nul = memchr(data, '\0', len);
    if (nul)
        return tm_err_set(err, EINVAL, "$: document contains a NUL byte at byte %zu", (size_t)(nul - data));
    json_error_t je;
    /* JSON_DECODE_ANY: a bare scalar gets "expected an object" below, not a syntax error. */
    _cleanup_json_ json_t *obj = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL | JSON_DECODE_ANY, &je);
    if (!obj) {
        if (json_error_code(&je) == json_error_out_of_memory)
            return tm_err_set(err, ENOMEM, "out of memory");
        return tm_err_set(err, EINVAL, "$: %s at line %d, column %d (%s)", parse_problem(&je), je.line, je.column,
                          je.text);
    }
    int r;
    if (!json_is_object(obj))
        r = tm_err_set(err, EINVAL, "$: expected an object, got %s", tm_json_type_name(obj));
    else
        r = check_bounds(obj, 0, "$", err);
    if (r < 0)
        return r;
    *ret = steal_ptr(obj);
    return 0;
}

int tm_json_check_keys(json_t *obj, const char *path, const char *const *allowed, tm_err *err)
{
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val)
    {
        bool known = false;
        for (const char *const *a = allowed; *a && !known; a++)
            known = strcmp(*a, key) == 0;
        if (!known)
            return tm_err_set(err, EINVAL, "%s.%s: unknown key", path, key);
    }
    return 0;
}

/* Look up key; 1 = found, 0 = absent and optional, <0 = absent and required. */
static int lookup(json_t *obj, const char *path, const char *key, bool required, json_t **ret, tm_err *err)
{
    *ret = json_object_get(obj, key);
    if (!*ret) {
        if (required)
            return tm_err_set(err, EINVAL, "%s.%s: required key is missing", path, key);
        return 0;
    }
    return 1;
}

int tm_json_expect_string(json_t *v, const char *path, size_t max_len, const char **ret, tm_err *err)
{
    if (!json_is_string(v))
        return tm_err_set(err, EINVAL, "%s: expected a string, got %s", path, tm_json_type_name(v));
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    /* Parsed documents cannot hold a NUL (no JSON_ALLOW_NUL), but a value built in memory
     * (json_stringn) can, and the callers take the result as a C string. */
    if (strlen(s) != len)
        return tm_err_set(err, EINVAL, "%s: string contains a NUL character", path);
    if (len > max_len)
        return tm_err_set(err, EINVAL, "%s: string longer than %zu bytes", path, max_len);
    *ret = s;
    return 0;
}

int tm_json_get_string(json_t *obj, const char *path, const char *key, bool required, size_t max_len, const char **ret,
                       tm_err *err)
{
    json_t *v;
    int r = lookup(obj, path, key, required, &v, err);
    if (r <= 0)
        return r;
    char p[TM_JSON_PATH_MAX];
    tm_json_path_key(p, path, key);
    r = tm_json_expect_string(v, p, max_len, ret, err);
    return r < 0 ? r : 1;
}

int tm_json_get_int(json_t *obj, const char *path, const char *key, bool required, int64_t min, int64_t max,
                    int64_t *ret, tm_err *err)
{
    json_t *v;
    int r = lookup(obj, path, key, required, &v, err);
    if (r <= 0)
        return r;
    if (!json_is_integer(v))
        return tm_err_set(err, EINVAL, "%s.%s: expected an integer, got %s", path, key, tm_json_type_name(v));
    /* json_int_t is long long (JSON_INTEGER_IS_LONG_LONG); jansson refuses integers beyond it
     * while parsing. */
    int64_t x = (int64_t)json_integer_value(v);
    if (x < min || x > max)
        return tm_err_set(err, ERANGE, "%s.%s: %lld out of range (allowed %lld..%lld)", path, key, (long long)x,
                          (long long)min, (long long)max);
    *ret = x;
    return 1;
}

int tm_json_get_bool(json_t *obj, const char *path, const char *key, bool required, bool *ret, tm_err *err)
{
    json_t *v;
    int r = lookup(obj, path, key, required, &v, err);
    if (r <= 0)
        return r;
    if (!json_is_boolean(v))
        return tm_err_set(err, EINVAL, "%s.%s: expected true or false, got %s", path, key, tm_json_type_name(v));
    *ret = json_is_true(v);
    return 1;
}

static int get_container(json_t *obj, const char *path, const char *key, bool required, size_t max_items,
                         json_type type, json_t **ret, tm_err *err)
{
    json_t *v;
    int r = lookup(obj, path, key, required, &v, err);
    if (r <= 0)
        return r;
    if (json_typeof(v) != type)
        return tm_err_set(err, EINVAL, "%s.%s: expected %s, got %s", path, key,
                          type == JSON_ARRAY ? "an array" : "an object", tm_json_type_name(v));
    size_t n = type == JSON_ARRAY ? json_array_size(v) : json_object_size(v);
    if (n > max_items)
        return tm_err_set(err, EINVAL, "%s.%s: more than %zu entries", path, key, max_items);
    *ret = v;
    return 1;
}

int tm_json_get_array(json_t *obj, const char *path, const char *key, bool required, size_t max_items, json_t **ret,
                      tm_err *err)
{
    return get_container(obj, path, key, required, max_items, JSON_ARRAY, ret, err);
}

int tm_json_get_object(json_t *obj, const char *path, const char *key, bool required, size_t max_items, json_t **ret,
                       tm_err *err)
{
    return get_container(obj, path, key, required, max_items, JSON_OBJECT, ret, err);
}

/* Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlong forms, no surrogates,
 * nothing above U+10FFFF), or 0. */
static size_t utf8_len(const unsigned char *p)
{
    size_t n;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (p[0] < 0x80)
        return 1;
    if (p[0] >= 0xC2 && p[0] <= 0xDF) {
        n = 2;
    } else if (p[0] >= 0xE0 && p[0] <= 0xEF) {
        n = 3;
        if (p[0] == 0xE0)
            lo = 0xA0;
        else if (p[0] == 0xED)
            hi = 0x9F;
    } else if (p[0] >= 0xF0 && p[0] <= 0xF4) {
        n = 4;
        if (p[0] == 0xF0)
            lo = 0x90;
        else if (p[0] == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if (p[1] < lo || p[1] > hi) /* also stops at the terminating NUL */
        return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return n;
}

json_t *tm_json_text(const char *s)
{
    json_t *v = json_string(s);
    if (v || !s)
        return v;
    _cleanup_free_ char *copy = strdup(s);
    if (!copy)
        return NULL;
    for (unsigned char *p = (unsigned char *)copy; *p;) {
        size_t n = utf8_len(p);
        if (n == 0) {
            *p++ = '?';
        } else {
            p += n;
        }
    }
    return json_string(copy);
}
