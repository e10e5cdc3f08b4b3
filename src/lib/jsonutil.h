/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Strict JSON reading on top of jansson: every error names the JSON path it is about
 * ("$.devices[1].major: expected an integer"), or, for a document jansson refuses, the line and
 * column. Getters return 1 if the key was present, 0 if it was absent and optional, or a negative
 * errno with err filled. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "error.h"

#define TM_JSON_PATH_MAX 256
/* Nesting and object size bounds of tm_json_parse_object (jansson's own depth limit is 2048). */
#define TM_JSON_MAX_DEPTH 32
#define TM_JSON_MAX_KEYS 512 /* more than any config object may have (env: 256) */

/* Parse a whole document that must be a JSON object; trailing bytes are an error. Duplicate
 * keys, invalid UTF-8, control characters and \u0000 in strings, integers beyond int64 and every
 * non-RFC 8259 form are refused by jansson itself; see jsonutil.c for the checks added here. */
int tm_json_parse_object(const char *data, size_t len, json_t **ret, tm_err *err);
/* Reject any key of obj not listed in allowed (NULL-terminated). */
int tm_json_check_keys(json_t *obj, const char *path, const char *const *allowed, tm_err *err);
int tm_json_get_string(json_t *obj, const char *path, const char *key, bool required, size_t max_len, const char **ret,
                       tm_err *err);
int tm_json_get_int(json_t *obj, const char *path, const char *key, bool required, int64_t min, int64_t max,
                    int64_t *ret, tm_err *err);
int tm_json_get_bool(json_t *obj, const char *path, const char *key, bool required, bool *ret, tm_err *err);
/* Type-checked access to an array or object member (max_items bounds arrays and objects). */
int tm_json_get_array(json_t *obj, const char *path, const char *key, bool required, size_t max_items, json_t **ret,
                      tm_err *err);
int tm_json_get_object(json_t *obj, const char *path, const char *key, bool required, size_t max_items, json_t **ret,
                       tm_err *err);
/* Check that v is a string without NUL bytes of at most max_len bytes. */
int tm_json_expect_string(json_t *v, const char *path, size_t max_len, const char **ret, tm_err *err);
void tm_json_path_key(char *out, const char *path, const char *key);
void tm_json_path_index(char *out, const char *path, size_t index);
const char *tm_json_type_name(const json_t *v);

/* A JSON string of text that may not be valid UTF-8 (a log detail cut at a byte limit, a name
 * from a file): jansson refuses such strings, so each byte that is not part of a well-formed
 * UTF-8 sequence becomes '?'. NULL only when out of memory. */
json_t *tm_json_text(const char *s);
