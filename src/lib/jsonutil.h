/* Strict JSON reading on top of json-c: every error names the JSON path it is about
 * ("$.devices[1].major: expected an integer"). Getters return 1 if the key was present,
 * 0 if it was absent and optional, or a negative errno with err filled. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "error.h"

#define TM_JSON_PATH_MAX 256

/* Parse a whole document that must be a JSON object; trailing bytes are an error. */
int tm_json_parse_object(const char *data, size_t len, json_object **ret, tm_err *err);
/* Reject any key of obj not listed in allowed (NULL-terminated). */
int tm_json_check_keys(json_object *obj, const char *path, const char *const *allowed, tm_err *err);
int tm_json_get_string(json_object *obj, const char *path, const char *key, bool required,
                       size_t max_len, const char **ret, tm_err *err);
int tm_json_get_int(json_object *obj, const char *path, const char *key, bool required, int64_t min,
                    int64_t max, int64_t *ret, tm_err *err);
int tm_json_get_bool(json_object *obj, const char *path, const char *key, bool required, bool *ret,
                     tm_err *err);
/* Type-checked access to an array or object member (max_items bounds arrays and objects). */
int tm_json_get_array(json_object *obj, const char *path, const char *key, bool required,
                      size_t max_items, json_object **ret, tm_err *err);
int tm_json_get_object(json_object *obj, const char *path, const char *key, bool required,
                       size_t max_items, json_object **ret, tm_err *err);
/* Check that v is a string without NUL bytes of at most max_len bytes. */
int tm_json_expect_string(json_object *v, const char *path, size_t max_len, const char **ret,
                          tm_err *err);
void tm_json_path_key(char *out, const char *path, const char *key);
void tm_json_path_index(char *out, const char *path, size_t index);
const char *tm_json_type_name(json_object *v);
