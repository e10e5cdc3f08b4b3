#include "refvalues.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "fileio.h"
#include "json_cleanup.h"
#include "jsonutil.h"

static int parse_hex32(const char *hex, uint8_t out[32])
{
    if (strlen(hex) != 64)
        return -EINVAL;
    for (size_t i = 0; i < 64; i++) {
        char c = hex[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return -EINVAL;
        out[i / 2] = (uint8_t)(i % 2 ? out[i / 2] | d : d << 4);
    }
    return 0;
}

static int cmp_value(const void *a, const void *b)
{
    const struct refvalue *x = a, *y = b;
    int c = strcmp(x->type, y->type);
    return c ? c : memcmp(x->sha256, y->sha256, 32);
}

static int parse_value(json_object *o, const char *path, struct refvalue *v, tm_err *err)
{
    static const char *const keys[] = {"type", "name", "sha256", NULL};
    if (!json_object_is_type(o, json_type_object))
        return tm_err_set(err, EINVAL, "%s: expected an object, got %s", path,
                          tm_json_type_name(o));
    const char *type, *name, *hex;
    int r = tm_json_check_keys(o, path, keys, err);
    if (r < 0 || (r = tm_json_get_string(o, path, "type", true, TM_EVENT_TYPE_MAX, &type, err)) < 0 ||
        (r = tm_json_get_string(o, path, "name", true, TM_EVENT_NAME_MAX, &name, err)) < 0 ||
        (r = tm_json_get_string(o, path, "sha256", true, 64, &hex, err)) < 0)
        return r;
    /* The same rules as for a measured event: a value that no event can match is an error. */
    tm_err e = {0};
    if (tm_event_check(0, type, name, 32, &e) < 0)
        return tm_err_set(err, EINVAL, "%s: %s", path, e.msg);
    if (parse_hex32(hex, v->sha256) < 0)
        return tm_err_set(err, EINVAL, "%s.sha256: expected 64 lower-case hex digits", path);
    snprintf(v->type, sizeof(v->type), "%s", type);
    snprintf(v->name, sizeof(v->name), "%s", name);
    return 0;
}

int refvalues_parse(const char *json, size_t len, struct refvalues **ret, tm_err *err)
{
    static const char *const keys[] = {"format", "version", "values", NULL};
    if (len > REFVALUES_JSON_MAX)
        return tm_err_set(err, EFBIG, "$: %zu bytes, at most %d", len, REFVALUES_JSON_MAX);
    _cleanup_json_ json_object *root = NULL;
    int r = tm_json_parse_object(json, len, &root, err);
    if (r < 0 || (r = tm_json_check_keys(root, "$", keys, err)) < 0)
        return r;
    const char *format;
    int64_t version;
    json_object *values;
    if ((r = tm_json_get_string(root, "$", "format", true, 64, &format, err)) < 0)
        return r;
    if (strcmp(format, REFVALUES_FORMAT) != 0)
        return tm_err_set(err, EINVAL, "$.format: \"%s\", expected \"%s\"", format,
                          REFVALUES_FORMAT);
    if ((r = tm_json_get_int(root, "$", "version", true, REFVALUES_VERSION, REFVALUES_VERSION,
                             &version, err)) < 0 ||
        (r = tm_json_get_array(root, "$", "values", true, REFVALUES_MAX, &values, err)) < 0)
        return r;
    struct refvalues *out = calloc(1, sizeof(*out));
    _cleanup_(refvalues_freep) struct refvalues *rv = out;
    size_t n = json_object_array_length(values);
    if (!rv || (n && !(rv->v = calloc(n, sizeof(*rv->v)))))
        return tm_err_set(err, ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        char path[TM_JSON_PATH_MAX];
        tm_json_path_index(path, "$.values", i);
        if ((r = parse_value(json_object_array_get_idx(values, i), path, &rv->v[i], err)) < 0)
            return r;
    }
    rv->n = n;
    if (n)
        qsort(rv->v, n, sizeof(*rv->v), cmp_value);
    *ret = steal_ptr(rv);
    return 0;
}

void refvalues_free(struct refvalues *r)
{
    if (!r)
        return;
    free(r->v);
    free(r);
}

bool refvalues_contains(const struct refvalues *r, const char *type, const uint8_t sha256[32])
{
    struct refvalue key = {0};
    if (strlen(type) >= sizeof(key.type))
        return false;
    strcpy(key.type, type);
    memcpy(key.sha256, sha256, 32);
    return r->n && bsearch(&key, r->v, r->n, sizeof(*r->v), cmp_value) != NULL;
}

int refvalues_read_files(const char *path, struct refvalues_files *ret, tm_err *err)
{
    char p[4096];
    if (strlen(path) + sizeof(".chain.pem") > sizeof(p))
        return tm_err_set(err, ENAMETOOLONG, "%s: path too long", path);
    struct refvalues_files f = {0};
    int r = read_file(path, REFVALUES_JSON_MAX, &f.json, &f.json_len, err);
    snprintf(p, sizeof(p), "%s.sig", path);
    if (r >= 0)
        r = read_file(p, REFVALUES_SIG_MAX, &f.sig, &f.sig_len, err);
    snprintf(p, sizeof(p), "%s.chain.pem", path);
    if (r >= 0)
        r = read_file(p, VERIFY_PEM_MAX, &f.chain_pem, &f.chain_len, err);
    if (r < 0) {
        refvalues_files_done(&f);
        return r;
    }
    *ret = f;
    return 0;
}

void refvalues_files_done(struct refvalues_files *f)
{
    free(f->json);
    free(f->sig);
    free(f->chain_pem);
    *f = (struct refvalues_files){0};
}

int refvalues_load(const struct refvalues_files *f, const char *anchors_pem, size_t anchors_len,
                   const char *crls_pem, size_t crls_len, time_t at, struct refvalues **ret,
                   tm_err *err)
{
    struct verify_request rq = {
        .data = (const uint8_t *)f->json, .data_len = f->json_len,
        .sig = (const uint8_t *)f->sig, .sig_len = f->sig_len,
        .chain_pem = f->chain_pem, .chain_len = f->chain_len,
        .anchors_pem = anchors_pem, .anchors_len = anchors_len,
        .crls_pem = crls_pem, .crls_len = crls_len,
        .eku = "codeSigning", .time = at,
    };
    struct verify_result res;
    int r = verify_signed(&rq, &res, err);
    if (r < 0)
        return tm_err_prefix(err, "signature");
    _cleanup_(refvalues_freep) struct refvalues *rv = NULL;
    if ((r = refvalues_parse(f->json, f->json_len, &rv, err)) < 0)
        return r;
    rv->signature_verified = true;
    snprintf(rv->signer, sizeof(rv->signer), "%s", res.leaf_subject);
    *ret = steal_ptr(rv);
    return 0;
}
