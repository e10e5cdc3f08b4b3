/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Strict JSON reading: what jansson refuses (with line and column) and what jsonutil adds
 * (NUL bytes, depth, keys per object, with the JSON path); the getters: presence (1 / 0 /
 * error), types, ranges, lengths, and the path in every message. */
#include "unit.h"

#include <errno.h>
#include <stdlib.h>

#include "jsonutil.h"

static json_t *obj(const char *text)
{
    json_t *o;
    tm_err err = {0};
    int r = tm_json_parse_object(text, strlen(text), &o, &err);
    if (r < 0)
        print_error("%s: %s\n", text, err.msg);
    assert_int_equal(r, 0);
    return o;
}

/* --- tm_json_parse_object --- */

static int parse(const char *text, size_t len, tm_err *err)
{
    json_t *o = NULL;
    int r = tm_json_parse_object(text, len, &o, err);
    if (r == 0) {
        assert_non_null(o);
        json_decref(o);
    } else {
        assert_null(o); /* ret is written only on success */
    }
    return r;
}

static void parse_accepts_object_with_whitespace(void **state)
{
    (void)state;
    tm_err err = {0};
    assert_int_equal(parse(" \n{\"a\": [1, {\"b\": null}]} \r\n\t", 29, &err), 0);
}

static void parse_rejects_non_objects(void **state)
{
    (void)state;
    static const char *const docs[] = {"[]", "\"s\"", "[{}]", "\"{}\""};
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        tm_err err = {0};
        assert_int_equal(parse(docs[i], strlen(docs[i]), &err), -EINVAL);
        assert_err_at(&err, "$");
        assert_err_contains(&err, "expected an object");
    }
}

static void parse_rejects_bare_scalars(void **state)
{
    (void)state;
    static const char *const docs[] = {"1", "-1.5", "0", "null", "true"};
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        tm_err err = {0};
        assert_int_equal(parse(docs[i], strlen(docs[i]), &err), -EINVAL);
        assert_err_at(&err, "$");
        assert_err_contains(&err, "expected an object");
    }
}

static void parse_rejects_trailing_data(void **state)
{
    (void)state;
    static const char *const docs[] = {"{} x", "{}{}", "{} []", "{}\n}"};
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        tm_err err = {0};
        assert_int_equal(parse(docs[i], strlen(docs[i]), &err), -EINVAL);
        assert_err_at(&err, "$");
        assert_err_contains(&err, "unexpected data after the JSON value");
    }
    tm_err err = {0};
    const char *late = "{\"a\":1}\n\ngarbage";
    assert_int_equal(parse(late, strlen(late), &err), -EINVAL);
    assert_err_contains(&err, "at line 3, column");
}

static void parse_reads_only_len_bytes(void **state)
{
    (void)state;
    tm_err err = {0};
    assert_int_equal(parse("{}garbage", 2, &err), 0);
}

static void parse_rejects_nul_byte(void **state)
{
    (void)state;
    tm_err err = {0};
    assert_int_equal(parse("{}\0", 3, &err), -EINVAL);
    assert_err_contains(&err, "NUL byte at byte 2");
    /* Raw, inside a string: jansson alone would stop reading there. */
    assert_int_equal(parse("{\"a\":\"x\0y\"}", 11, &err), -EINVAL);
    assert_err_contains(&err, "NUL byte at byte 7");
}

static void parse_rejects_escaped_nul(void **state)
{
    (void)state;
    /* \u0000 in a value: refused with the value's path; in a key: by jansson, with a position. */
    static const struct {
        const char *doc, *path;
    } bad[] = {
        {"{\"k\":\"a\\u0000b\"}", "$.k"},
        {"{\"a\":{\"b\":[\"ok\",\"\\u0000\"]}}", "$.a.b[1]"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tm_err err = {0};
        assert_int_equal(parse(bad[i].doc, strlen(bad[i].doc), &err), -EINVAL);
        assert_err_at(&err, bad[i].path);
        assert_err_contains(&err, "NUL character");
    }
    tm_err err = {0};
    const char *key = "{\"a\\u0000b\":1}";
    assert_int_equal(parse(key, strlen(key), &err), -EINVAL);
    assert_err_at(&err, "$");
    assert_err_contains(&err, "NUL character in a key at line 1, column");
}

static void parse_rejects_duplicate_keys(void **state)
{
    (void)state;
    /* Keys are compared after decoding: "\u0061" is "a". The error says where and which key. */
    static const struct {
        const char *doc, *where, *key;
    } bad[] = {
        {"{\"a\":1,\"a\":2}", "line 1, column 10", "'\"a\"'"},
        {"{\"a\":1,\"\\u0061\":2}", "line 1, column 15", "'\"\\u0061\"'"},
        {"{\"x\":{\"b\":1,\n \"b\":{}}}", "line 2, column 4", "'\"b\"'"},
        {"{\"l\":[{},{\"c\":1,\"c\":1}]}", "line 1, column 19", "'\"c\"'"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tm_err err = {0};
        assert_int_equal(parse(bad[i].doc, strlen(bad[i].doc), &err), -EINVAL);
        assert_err_at(&err, "$");
        assert_err_contains(&err, "key appears more than once");
        assert_err_contains(&err, bad[i].where);
        assert_err_contains(&err, bad[i].key);
    }
    /* The same key in two objects is fine. */
    tm_err err = {0};
    const char *apart = "{\"a\":{\"a\":1},\"b\":{\"a\":1}}";
    assert_int_equal(parse(apart, strlen(apart), &err), 0);
}

/* Nested n levels below the top-level object: {"a":[[...[]...]]} */
static char *nested(int n)
{
    char *doc = malloc((size_t)n * 2 + 16);
    assert_non_null(doc);
    char *p = doc + sprintf(doc, "{\"a\":");
    for (int i = 0; i < n; i++)
        *p++ = '[';
    for (int i = 0; i < n; i++)
        *p++ = ']';
    strcpy(p, "}");
    return doc;
}

static void parse_limits_depth(void **state)
{
    (void)state;
    tm_err err = {0};
    /* The top-level object is depth 0; an empty array may sit at TM_JSON_MAX_DEPTH. */
    char *ok = nested(TM_JSON_MAX_DEPTH);
    assert_int_equal(parse(ok, strlen(ok), &err), 0);
    free(ok);
    char *deep = nested(TM_JSON_MAX_DEPTH + 1);
    assert_int_equal(parse(deep, strlen(deep), &err), -EINVAL);
    assert_err_contains(&err, "nested too deeply");
    assert_true(strncmp(err.msg, "$.a[0][0]", 9) == 0);
    free(deep);
    /* Far beyond: jansson's own limit (2048) answers first, without recursing further. */
    char *deeper = nested(100000);
    assert_int_equal(parse(deeper, strlen(deeper), &err), -EINVAL);
    assert_err_at(&err, "$");
    free(deeper);
}

static void parse_limits_keys_per_object(void **state)
{
    (void)state;
    char *doc = malloc(16 * (TM_JSON_MAX_KEYS + 1) + 16);
    assert_non_null(doc);
    char *p = doc + sprintf(doc, "{\"o\":{");
    for (int i = 0; i < TM_JSON_MAX_KEYS; i++)
        p += sprintf(p, "%s\"k%d\":0", i ? "," : "", i);
    strcpy(p, "}}");
    tm_err err = {0};
    assert_int_equal(parse(doc, strlen(doc), &err), 0);
    strcpy(p, ",\"one-more\":0}}");
    assert_int_equal(parse(doc, strlen(doc), &err), -EINVAL);
    assert_err_at(&err, "$.o");
    assert_err_contains(&err, "too many keys");
    free(doc);
}

static void parse_rejects_number_forms(void **state)
{
    (void)state;
    static const char *const docs[] = {"{\"a\":1.}",  "{\"a\":.5}",       "{\"a\":-}",    "{\"a\":1e}",   "{\"a\":+1}",
                                       "{\"a\":NaN}", "{\"a\":Infinity}", "{\"a\":0x10}", "{\"a\":1e400}"};
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        tm_err err = {0};
        int r = parse(docs[i], strlen(docs[i]), &err);
        if (r == 0)
            print_error("accepted: %s\n", docs[i]);
        assert_int_equal(r, -EINVAL);
        assert_err_contains(&err, "at line 1, column");
    }
}

static void parse_rejects_truncated(void **state)
{
    (void)state;
    static const char *const docs[] = {"{", "{\"a\"", "{\"a\":", "{\"a\":\"x", "{\"a\":[1,"};
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        tm_err err = {0};
        assert_int_equal(parse(docs[i], strlen(docs[i]), &err), -EINVAL);
        assert_err_contains(&err, "ends in the middle");
    }
}

static void parse_rejects_empty(void **state)
{
    (void)state;
    tm_err err = {0};
    assert_int_equal(parse("", 0, &err), -EINVAL);
    assert_err_at(&err, "$");
    assert_int_equal(parse("   ", 3, &err), -EINVAL);
}

static void parse_reports_line_and_column(void **state)
{
    (void)state;
    tm_err err = {0};
    assert_int_equal(parse("{\"a\":1,}", 8, &err), -EINVAL);
    assert_err_contains(&err, "$: invalid JSON at line 1, column 8 (string or '}' expected");
    const char *multi = "{\n  \"a\": 1,\n  \"b\": tru\n}";
    assert_int_equal(parse(multi, strlen(multi), &err), -EINVAL);
    assert_err_contains(&err, "at line 3, column");
}

static void parse_rejects_lenient_syntax(void **state)
{
    (void)state;
    static const char *const docs[] = {"{a:1}", "{\"a\":01}", "{\"a\":1,}", "{\"a\":[1,]}", "{\"a\":'x'}"};
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        tm_err err = {0};
        int r = parse(docs[i], strlen(docs[i]), &err);
        if (r == 0)
            print_error("accepted: %s\n", docs[i]);
        assert_int_equal(r, -EINVAL);
    }
}

static void parse_rejects_invalid_utf8(void **state)
{
    (void)state;
    /* Overlong '/', a UTF-16 surrogate, a stray 0xFF, a lone continuation byte, a cut sequence,
     * above U+10FFFF, an overlong 3-byte form; in values, nested values and keys. */
    static const struct {
        const char *doc, *path;
    } bad[] = {
        {"{\"env\":[\"A=\xc0\xaf\"]}", "$.env[0]"},
        {"{\"a\":{\"b\":\"\xed\xa0\x80\"}}", "$.a.b"},
        {"{\"args\":[\"ok\",\"x\xffy\"]}", "$.args[1]"},
        {"{\"a\":\"\x80\"}", "$.a"},
        {"{\"a\":\"\xe2\x82\"}", "$.a"},
        {"{\"a\":\"\xf4\x90\x80\x80\"}", "$.a"},
        {"{\"a\":\"\xe0\x80\xaf\"}", "$.a"},
        {"{\"k\xc1\xbf\":1}", "$"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tm_err err = {0};
        int r = parse(bad[i].doc, strlen(bad[i].doc), &err);
        if (r == 0)
            print_error("accepted #%zu\n", i);
        assert_int_equal(r, -EINVAL);
        /* jansson reports the position, not the JSON path (bad[i].path) */
        assert_err_at(&err, "$");
        assert_err_contains(&err, "invalid UTF-8 at line 1, column");
    }
    /* Well-formed multi-byte text stays accepted: 2, 3 and 4 byte forms, the edges. */
    static const char *const good[] = {"{\"a\":\"\xc3\xa4\xe2\x82\xac\xf0\x9f\x98\x80\"}",
                                       "{\"\xc2\x80\":\"\xed\x9f\xbf\xee\x80\x80\xf4\x8f\xbf\xbf\"}"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        tm_err err = {0};
        assert_int_equal(parse(good[i], strlen(good[i]), &err), 0);
    }
}

static void parse_rejects_single_quoted_keys(void **state)
{
    (void)state;
    /* Not JSON (RFC 8259): another tool reading the same signed file would refuse it. */
    tm_err err = {0};
    assert_int_equal(parse("{'a':1}", 7, &err), -EINVAL);
    assert_err_at(&err, "$");
}

/* --- getters --- */

static void string_present(void **state)
{
    (void)state;
    json_t *o = obj("{\"k\":\"value\"}");
    const char *s = NULL;
    tm_err err = {0};
    assert_int_equal(tm_json_get_string(o, "$.x", "k", true, 5, &s, &err), 1);
    assert_string_equal(s, "value");
    json_decref(o);
}

static void string_absent_optional(void **state)
{
    (void)state;
    json_t *o = obj("{}");
    const char *s = "untouched";
    tm_err err = {0};
    assert_int_equal(tm_json_get_string(o, "$", "k", false, 5, &s, &err), 0);
    assert_string_equal(s, "untouched");
    json_decref(o);
}

static void string_absent_required(void **state)
{
    (void)state;
    json_t *o = obj("{\"other\":1}");
    const char *s;
    tm_err err = {0};
    assert_int_equal(tm_json_get_string(o, "$.x", "k", true, 5, &s, &err), -EINVAL);
    assert_err_at(&err, "$.x.k");
    assert_err_contains(&err, "required");
    json_decref(o);
}

static void string_wrong_types(void **state)
{
    (void)state;
    static const struct {
        const char *doc, *type;
    } cases[] = {
        {"{\"k\":1}", "an integer"},   {"{\"k\":1.5}", "a number with a fraction"},
        {"{\"k\":true}", "a boolean"}, {"{\"k\":null}", "null"},
        {"{\"k\":[]}", "an array"},    {"{\"k\":{}}", "an object"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *o = obj(cases[i].doc);
        const char *s;
        tm_err err = {0};
        assert_int_equal(tm_json_get_string(o, "$", "k", true, 99, &s, &err), -EINVAL);
        assert_err_at(&err, "$.k");
        assert_err_contains(&err, cases[i].type);
        json_decref(o);
    }
}

static void string_with_nul(void **state)
{
    (void)state;
    /* A parsed document cannot hold one (parse_rejects_escaped_nul); a value built in memory can. */
    json_t *o = json_object();
    json_object_set_new(o, "k", json_stringn("a\0b", 3));
    const char *s;
    tm_err err = {0};
    assert_int_equal(tm_json_get_string(o, "$", "k", true, 99, &s, &err), -EINVAL);
    assert_err_at(&err, "$.k");
    assert_err_contains(&err, "NUL");
    json_decref(o);
}

static void string_length_limit_is_inclusive(void **state)
{
    (void)state;
    json_t *o = obj("{\"k\":\"12345\"}");
    const char *s;
    tm_err err = {0};
    assert_int_equal(tm_json_get_string(o, "$", "k", true, 5, &s, &err), 1);
    assert_int_equal(tm_json_get_string(o, "$", "k", true, 4, &s, &err), -EINVAL);
    assert_err_at(&err, "$.k");
    json_decref(o);
}

static void string_length_counts_bytes(void **state)
{
    (void)state;
    json_t *o = obj("{\"k\":\"\\u00e4\\u00e4\"}"); /* two characters, four bytes */
    const char *s;
    tm_err err = {0};
    assert_int_equal(tm_json_get_string(o, "$", "k", true, 3, &s, &err), -EINVAL);
    assert_int_equal(tm_json_get_string(o, "$", "k", true, 4, &s, &err), 1);
    json_decref(o);
}

static void int_bounds_are_inclusive(void **state)
{
    (void)state;
    json_t *o = obj("{\"lo\":-5,\"hi\":10}");
    int64_t v;
    tm_err err = {0};
    assert_int_equal(tm_json_get_int(o, "$", "lo", true, -5, 10, &v, &err), 1);
    assert_int_equal(v, -5);
    assert_int_equal(tm_json_get_int(o, "$", "hi", true, -5, 10, &v, &err), 1);
    assert_int_equal(v, 10);
    json_decref(o);
}

static void int_out_of_range(void **state)
{
    (void)state;
    json_t *o = obj("{\"lo\":-6,\"hi\":11}");
    int64_t v = 77;
    tm_err err = {0};
    assert_int_equal(tm_json_get_int(o, "$.n", "lo", true, -5, 10, &v, &err), -ERANGE);
    assert_err_at(&err, "$.n.lo");
    assert_err_contains(&err, "-5..10");
    assert_int_equal(tm_json_get_int(o, "$.n", "hi", true, -5, 10, &v, &err), -ERANGE);
    assert_int_equal(v, 77);
    json_decref(o);
}

static void int_extremes(void **state)
{
    (void)state;
    json_t *o = obj("{\"max\":9223372036854775807,\"min\":-9223372036854775808}");
    int64_t v;
    tm_err err = {0};
    assert_int_equal(tm_json_get_int(o, "$", "max", true, INT64_MIN, INT64_MAX, &v, &err), 1);
    assert_true(v == INT64_MAX);
    assert_int_equal(tm_json_get_int(o, "$", "min", true, INT64_MIN, INT64_MAX, &v, &err), 1);
    assert_true(v == INT64_MIN);
    json_decref(o);
}

static void int_beyond_int64_is_out_of_range(void **state)
{
    (void)state;
    /* Not representable as int64. json-c would saturate these at INT64_MAX/INT64_MIN without
     * saying so, so they are refused at the parsing boundary, where the digits still exist. */
    static const char *const docs[] = {"{\"k\":9223372036854775808}", "{\"k\":99999999999999999999}",
                                       "{\"k\":-9223372036854775809}"};
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        tm_err err = {0};
        assert_int_equal(parse(docs[i], strlen(docs[i]), &err), -EINVAL);
        assert_err_contains(&err, "integer out of range");
    }
    /* The limits themselves are fine. */
    static const char *const ok[] = {"{\"k\":9223372036854775807}", "{\"k\":-9223372036854775808}"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        tm_err err = {0};
        assert_int_equal(parse(ok[i], strlen(ok[i]), &err), 0);
    }
}

static void int_wrong_types(void **state)
{
    (void)state;
    static const char *const docs[] = {"{\"k\":\"1\"}", "{\"k\":1.0}",  "{\"k\":1e2}",
                                       "{\"k\":true}",  "{\"k\":null}", "{\"k\":[1]}"};
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        json_t *o = obj(docs[i]);
        int64_t v;
        tm_err err = {0};
        assert_int_equal(tm_json_get_int(o, "$", "k", true, 0, 100, &v, &err), -EINVAL);
        assert_err_at(&err, "$.k");
        assert_err_contains(&err, "expected an integer");
        json_decref(o);
    }
}

static void int_absent(void **state)
{
    (void)state;
    json_t *o = obj("{}");
    int64_t v = 3;
    tm_err err = {0};
    assert_int_equal(tm_json_get_int(o, "$", "k", false, 0, 9, &v, &err), 0);
    assert_int_equal(v, 3);
    assert_int_equal(tm_json_get_int(o, "$", "k", true, 0, 9, &v, &err), -EINVAL);
    assert_err_at(&err, "$.k");
    json_decref(o);
}

static void bool_values(void **state)
{
    (void)state;
    json_t *o = obj("{\"t\":true,\"f\":false}");
    bool b = false;
    tm_err err = {0};
    assert_int_equal(tm_json_get_bool(o, "$", "t", true, &b, &err), 1);
    assert_true(b);
    assert_int_equal(tm_json_get_bool(o, "$", "f", true, &b, &err), 1);
    assert_false(b);
    json_decref(o);
}

static void bool_wrong_types(void **state)
{
    (void)state;
    static const char *const docs[] = {"{\"k\":1}", "{\"k\":0}", "{\"k\":\"true\"}", "{\"k\":null}"};
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        json_t *o = obj(docs[i]);
        bool b = true;
        tm_err err = {0};
        assert_int_equal(tm_json_get_bool(o, "$", "k", true, &b, &err), -EINVAL);
        assert_err_at(&err, "$.k");
        assert_true(b);
        json_decref(o);
    }
}

static void array_and_object_types(void **state)
{
    (void)state;
    json_t *o = obj("{\"a\":[1,2],\"o\":{\"x\":1}}"), *v;
    tm_err err = {0};
    assert_int_equal(tm_json_get_array(o, "$", "a", true, 2, &v, &err), 1);
    assert_int_equal(json_array_size(v), 2);
    assert_int_equal(tm_json_get_object(o, "$", "o", true, 1, &v, &err), 1);
    assert_int_equal(tm_json_get_array(o, "$", "o", true, 9, &v, &err), -EINVAL);
    assert_err_at(&err, "$.o");
    assert_err_contains(&err, "expected an array, got an object");
    assert_int_equal(tm_json_get_object(o, "$", "a", true, 9, &v, &err), -EINVAL);
    assert_err_at(&err, "$.a");
    assert_err_contains(&err, "expected an object, got an array");
    json_decref(o);
}

static void item_limits_are_inclusive(void **state)
{
    (void)state;
    json_t *o = obj("{\"a\":[1,2,3],\"o\":{\"x\":1,\"y\":2}}"), *v;
    tm_err err = {0};
    assert_int_equal(tm_json_get_array(o, "$", "a", true, 3, &v, &err), 1);
    assert_int_equal(tm_json_get_array(o, "$", "a", true, 2, &v, &err), -EINVAL);
    assert_err_at(&err, "$.a");
    assert_int_equal(tm_json_get_object(o, "$", "o", true, 2, &v, &err), 1);
    assert_int_equal(tm_json_get_object(o, "$", "o", true, 1, &v, &err), -EINVAL);
    assert_err_at(&err, "$.o");
    json_decref(o);
}

static void check_keys(void **state)
{
    (void)state;
    static const char *const allowed[] = {"a", "b", NULL};
    json_t *good = obj("{\"a\":1,\"b\":2}"), *empty = obj("{}");
    json_t *bad = obj("{\"a\":1,\"c\":2}");
    tm_err err = {0};
    assert_int_equal(tm_json_check_keys(good, "$", allowed, &err), 0);
    assert_int_equal(tm_json_check_keys(empty, "$", allowed, &err), 0);
    assert_int_equal(tm_json_check_keys(bad, "$.x[0]", allowed, &err), -EINVAL);
    assert_err_at(&err, "$.x[0].c");
    assert_err_contains(&err, "unknown key");
    json_decref(good);
    json_decref(empty);
    json_decref(bad);
}

static void check_keys_is_case_sensitive(void **state)
{
    (void)state;
    static const char *const allowed[] = {"name", NULL};
    json_t *o = obj("{\"Name\":1}");
    tm_err err = {0};
    assert_int_equal(tm_json_check_keys(o, "$", allowed, &err), -EINVAL);
    json_decref(o);
}

static void errors_without_err_object(void **state)
{
    (void)state;
    json_t *o = obj("{\"k\":1}");
    const char *s;
    assert_int_equal(tm_json_get_string(o, "$", "k", true, 9, &s, NULL), -EINVAL);
    json_decref(o);
}

static void path_helpers(void **state)
{
    (void)state;
    char out[TM_JSON_PATH_MAX];
    tm_json_path_key(out, "$.env", "HOME");
    assert_string_equal(out, "$.env.HOME");
    tm_json_path_index(out, "$.devices", 12);
    assert_string_equal(out, "$.devices[12]");
}

static void path_is_bounded(void **state)
{
    (void)state;
    char key[600];
    memset(key, 'k', sizeof(key) - 1);
    key[sizeof(key) - 1] = '\0';
    char out[TM_JSON_PATH_MAX + 16];
    memset(out, 'X', sizeof(out));
    tm_json_path_key(out, "$", key);
    assert_int_equal(strlen(out), TM_JSON_PATH_MAX - 1);
    assert_int_equal(out[TM_JSON_PATH_MAX], 'X'); /* nothing written beyond the limit */
}

static void type_names(void **state)
{
    (void)state;
    json_t *o = obj("{\"i\":1,\"d\":1.5,\"s\":\"x\",\"b\":false,\"a\":[],\"o\":{},\"n\":null}");
    static const struct {
        const char *key, *name;
    } cases[] = {{"i", "an integer"}, {"d", "a number with a fraction"},
                 {"s", "a string"},   {"b", "a boolean"},
                 {"a", "an array"},   {"o", "an object"},
                 {"n", "null"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_string_equal(tm_json_type_name(json_object_get(o, cases[i].key)), cases[i].name);
    json_decref(o);
}

static void json_text_replaces_invalid_utf8(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"plain", "plain"},         {"\xc3\xa4 \xf0\x9f\x98\x80", "\xc3\xa4 \xf0\x9f\x98\x80"},
        {"cut \xe2\x82", "cut ??"}, {"x\xffy\xc0\xafz", "x?y??z"},
        {"\xed\xa0\x80", "???"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *v = tm_json_text(cases[i].in);
        assert_non_null(v);
        assert_string_equal(json_string_value(v), cases[i].out);
        json_decref(v);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_accepts_object_with_whitespace),
        cmocka_unit_test(parse_rejects_non_objects),
        cmocka_unit_test(parse_rejects_bare_scalars),
        cmocka_unit_test(parse_rejects_trailing_data),
        cmocka_unit_test(parse_reads_only_len_bytes),
        cmocka_unit_test(parse_rejects_nul_byte),
        cmocka_unit_test(parse_rejects_truncated),
        cmocka_unit_test(parse_rejects_empty),
        cmocka_unit_test(parse_reports_line_and_column),
        cmocka_unit_test(parse_rejects_escaped_nul),
        cmocka_unit_test(parse_rejects_duplicate_keys),
        cmocka_unit_test(parse_limits_depth),
        cmocka_unit_test(parse_limits_keys_per_object),
        cmocka_unit_test(parse_rejects_number_forms),
        cmocka_unit_test(json_text_replaces_invalid_utf8),
        cmocka_unit_test(parse_rejects_lenient_syntax),
        cmocka_unit_test(parse_rejects_single_quoted_keys),
        cmocka_unit_test(parse_rejects_invalid_utf8),
        cmocka_unit_test(string_present),
        cmocka_unit_test(string_absent_optional),
        cmocka_unit_test(string_absent_required),
        cmocka_unit_test(string_wrong_types),
        cmocka_unit_test(string_with_nul),
        cmocka_unit_test(string_length_limit_is_inclusive),
        cmocka_unit_test(string_length_counts_bytes),
        cmocka_unit_test(int_bounds_are_inclusive),
        cmocka_unit_test(int_out_of_range),
        cmocka_unit_test(int_extremes),
        cmocka_unit_test(int_beyond_int64_is_out_of_range),
        cmocka_unit_test(int_wrong_types),
        cmocka_unit_test(int_absent),
        cmocka_unit_test(bool_values),
        cmocka_unit_test(bool_wrong_types),
        cmocka_unit_test(array_and_object_types),
        cmocka_unit_test(item_limits_are_inclusive),
        cmocka_unit_test(check_keys),
        cmocka_unit_test(check_keys_is_case_sensitive),
        cmocka_unit_test(errors_without_err_object),
        cmocka_unit_test(path_helpers),
        cmocka_unit_test(path_is_bounded),
        cmocka_unit_test(type_names),
    };
    return cmocka_run_group_tests_name("jsonutil", tests, NULL, NULL);
}
