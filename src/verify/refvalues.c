/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "refvalues.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cleanup.h"
#include "crypto.h"
#include "fileio.h"
#include "hex.h"
#include "json_cleanup.h"
#include "jsonutil.h"

static int cmp_value(const void *a, const void *b)
{
    const struct refvalue *x = a, *y = b;
    int c = strcmp(x->type, y->type);
    return c ? c : memcmp(x->sha256, y->sha256, 32);
}

static int parse_value(json_t *o, const char *path, struct refvalue *v, tm_err *err)
{
    static const char *const keys[] = {"type", "name", "sha256", NULL};
    if (!json_is_object(o))
        return tm_err_set(err, EINVAL, "%s: expected an object, got %s", path, tm_json_type_name(o));
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
    if (tm_hex_decode_str(hex, v->sha256, 32, 0, NULL) < 0)
        return tm_err_set(err, EINVAL, "%s.sha256: expected 64 lower-case hex digits", path);
    snprintf(v->type, sizeof(v->type), "%s", type);
    snprintf(v->name, sizeof(v->name), "%s", name);
    return 0;
}

/* YYYY-MM-DDTHH:MM:SSZ, UTC: one spelling per moment, so that a signed file means one thing. */
static int parse_time(json_t *root, const char *key, time_t *ret, tm_err *err)
{
    const char *s;
    int r = tm_json_get_string(root, "$", key, true, 20, &s, err);
    if (r < 0)
        return r;
    struct tm tm = {0};
    char *end = strlen(s) == 20 ? strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm) : NULL;
    char again[32];
    time_t t = end && !*end ? timegm(&tm) : (time_t)-1;
    struct tm back;
    if (t == (time_t)-1 || !gmtime_r(&t, &back) || strftime(again, sizeof(again), "%Y-%m-%dT%H:%M:%SZ", &back) != 20 ||
        strcmp(again, s))
        return tm_err_set(err, EINVAL, "$.%s: \"%.20s\" is not a time YYYY-MM-DDTHH:MM:SSZ (UTC)", key, s);
    *ret = t;
    return 0;
}

static int parse_pcrs(json_t *root, struct refvalues *rv, tm_err *err)
{
    json_t *pcrs;
    int r = tm_json_get_array(root, "$", "pcrs", true, REFVALUES_PCRS, &pcrs, err);
    if (r < 0)
        return r;
    size_t n = json_array_size(pcrs);
    if (n == 0)
        return tm_err_set(err, EINVAL, "$.pcrs: at least one PCR");
    uint32_t mask = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(pcrs, i);
        int64_t idx = json_is_integer(v) ? json_integer_value(v) : -1;
        if (idx < 0 || idx > TM_PCR_MAX)
            return tm_err_set(err, EINVAL, "$.pcrs[%zu]: expected a PCR index 0..%d", i, TM_PCR_MAX);
        if (mask & (1u << idx))
            return tm_err_set(err, EINVAL, "$.pcrs[%zu]: PCR %lld given twice", i, (long long)idx);
        mask |= 1u << idx;
    }
    for (uint32_t i = 0; i <= TM_PCR_MAX; i++)
        if (mask & (1u << i))
            rv->pcrs[rv->npcrs++] = i;
    return 0;
}

static int parse_required(json_t *root, struct refvalues *rv, tm_err *err)
{
    static const char *const keys[] = {"type", "name", NULL};
    json_t *req;
    int r = tm_json_get_array(root, "$", "required", true, REFVALUES_REQUIRED_MAX, &req, err);
    if (r < 0)
        return r;
    size_t n = json_array_size(req);
    if (n && !(rv->required = calloc(n, sizeof(*rv->required))))
        return tm_err_set(err, ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        char path[TM_JSON_PATH_MAX];
        tm_json_path_index(path, "$.required", i);
        json_t *o = json_array_get(req, i);
        const char *type, *name;
        if (!json_is_object(o))
            return tm_err_set(err, EINVAL, "%s: expected an object, got %s", path, tm_json_type_name(o));
        if ((r = tm_json_check_keys(o, path, keys, err)) < 0 ||
            (r = tm_json_get_string(o, path, "type", true, TM_EVENT_TYPE_MAX, &type, err)) < 0 ||
            (r = tm_json_get_string(o, path, "name", true, TM_EVENT_NAME_MAX, &name, err)) < 0)
            return r;
        tm_err e = {0};
        if (tm_event_check(0, type, name, 32, &e) < 0)
            return tm_err_set(err, EINVAL, "%s: %s", path, e.msg);
        snprintf(rv->required[i].type, sizeof(rv->required[i].type), "%s", type);
        snprintf(rv->required[i].name, sizeof(rv->required[i].name), "%s", name);
    }
    rv->n_required = n;
    return 0;
}

int refvalues_parse(const char *json, size_t len, struct refvalues **ret, tm_err *err)
{
    static const char *const keys[] = {"format", "version",  "rim_version", "not_before", "not_after",
                                       "pcrs",   "required", "values",      NULL};
    if (len > REFVALUES_JSON_MAX)
        return tm_err_set(err, EFBIG, "$: %zu bytes, at most %d", len, REFVALUES_JSON_MAX);
    _cleanup_json_ json_t *root = NULL;
    int r = tm_json_parse_object(json, len, &root, err);
    if (r < 0 || (r = tm_json_check_keys(root, "$", keys, err)) < 0)
        return r;
    const char *format;
    int64_t version;
    json_t *values;
    if ((r = tm_json_get_string(root, "$", "format", true, 64, &format, err)) < 0)
        return r;
    if (strcmp(format, REFVALUES_FORMAT) != 0)
        return tm_err_set(err, EINVAL, "$.format: \"%s\", expected \"%s\"", format, REFVALUES_FORMAT);
    if ((r = tm_json_get_int(root, "$", "version", true, 1, INT64_MAX, &version, err)) < 0)
        return r;
    /* Version 1 had no validity period and no policy: such a file would stay valid until its
     * signer is revoked, and let the device choose what to quote. */
    if (version != REFVALUES_VERSION)
        return tm_err_set(err, EINVAL,
                          "$.version: %lld, expected %d (make the reference values "
                          "again with this trustme-pki rim)",
                          (long long)version, REFVALUES_VERSION);
    int64_t rim_version;
    if ((r = tm_json_get_int(root, "$", "rim_version", true, 1, INT64_MAX, &rim_version, err)) < 0 ||
        (r = tm_json_get_array(root, "$", "values", true, REFVALUES_MAX, &values, err)) < 0)
        return r;
    struct refvalues *out = calloc(1, sizeof(*out));
    _cleanup_(refvalues_freep) struct refvalues *rv = out;
    size_t n = json_array_size(values);
    if (!rv || (n && !(rv->v = calloc(n, sizeof(*rv->v)))))
        return tm_err_set(err, ENOMEM, "out of memory");
    rv->rim_version = (uint64_t)rim_version;
    if ((r = parse_time(root, "not_before", &rv->not_before, err)) < 0 ||
        (r = parse_time(root, "not_after", &rv->not_after, err)) < 0)
        return r;
    if (rv->not_after <= rv->not_before)
        return tm_err_set(err, EINVAL, "$.not_after: not after $.not_before");
    if ((r = parse_pcrs(root, rv, err)) < 0 || (r = parse_required(root, rv, err)) < 0)
        return r;
    for (size_t i = 0; i < n; i++) {
        char path[TM_JSON_PATH_MAX];
        tm_json_path_index(path, "$.values", i);
        if ((r = parse_value(json_array_get(values, i), path, &rv->v[i], err)) < 0)
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
    free(r->required);
    free(r);
}

static int refvalues_copy(const struct refvalues *src, struct refvalues **ret)
{
    _cleanup_(refvalues_freep) struct refvalues *rv = calloc(1, sizeof(*rv));
    if (!rv)
        return -ENOMEM;
    *rv = *src;
    rv->v = NULL;
    rv->required = NULL;
    if ((src->n && !(rv->v = malloc(src->n * sizeof(*rv->v)))) ||
        (src->n_required && !(rv->required = malloc(src->n_required * sizeof(*rv->required))))) {
        rv->n = rv->n_required = 0;
        return -ENOMEM;
    }
    if (src->n)
        memcpy(rv->v, src->v, src->n * sizeof(*rv->v));
    if (src->n_required)
        memcpy(rv->required, src->required, src->n_required * sizeof(*rv->required));
    *ret = steal_ptr(rv);
    return 0;
}

/* REFS.json texts parsed before, by SHA-256 of their exact bytes: the fleet loads a group's
 * reference values for every verdict, and parsing a large list costs more than the checks. A
 * copy of the parsed form is what parsing the same bytes gives; its signature, the signer's chain
 * and its validity period are checked by refvalues_load every time all the same. Locked: the
 * fleet's worker threads share it. */
#define REFVALUES_CACHED 8
static struct {
    uint8_t hash[32];
    struct refvalues *rv;
    uint64_t used;
} parsed[REFVALUES_CACHED];
static uint64_t parsed_tick;
static pthread_mutex_t parsed_lock = PTHREAD_MUTEX_INITIALIZER;

static int refvalues_parse_cached(const char *json, size_t len, struct refvalues **ret, tm_err *err)
{
    uint8_t hash[32];
    tm_sha256(json, len, hash);
    int r = 1;
    pthread_mutex_lock(&parsed_lock);
    for (size_t i = 0; i < REFVALUES_CACHED && r > 0; i++)
        if (parsed[i].rv && memcmp(parsed[i].hash, hash, 32) == 0) {
            parsed[i].used = ++parsed_tick;
            r = refvalues_copy(parsed[i].rv, ret);
        }
    pthread_mutex_unlock(&parsed_lock);
    if (r == -ENOMEM)
        return tm_err_set(err, ENOMEM, "out of memory");
    if (r == 0)
        return 0;
    _cleanup_(refvalues_freep) struct refvalues *rv = NULL;
    struct refvalues *keep = NULL;
    if ((r = refvalues_parse(json, len, &rv, err)) < 0)
        return r;
    if (refvalues_copy(rv, &keep) == 0) {
        pthread_mutex_lock(&parsed_lock);
        size_t slot = 0;
        for (size_t i = 0; i < REFVALUES_CACHED; i++) {
            if (!parsed[i].rv) {
                slot = i;
                break;
            }
            if (parsed[i].used < parsed[slot].used)
                slot = i;
        }
        refvalues_free(parsed[slot].rv);
        memcpy(parsed[slot].hash, hash, 32);
        parsed[slot].rv = keep;
        parsed[slot].used = ++parsed_tick;
        pthread_mutex_unlock(&parsed_lock);
    }
    *ret = steal_ptr(rv);
    return 0;
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

bool refvalues_requires(const struct refvalues *r, const char *type, const char *name)
{
    for (size_t i = 0; i < r->n_required; i++)
        if (strcmp(r->required[i].type, type) == 0 && strcmp(r->required[i].name, name) == 0)
            return true;
    return false;
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

static void format_time(time_t t, char out[21])
{
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(out, 21, "%Y-%m-%dT%H:%M:%SZ", &tm) != 20)
        snprintf(out, 21, "%lld", (long long)t);
}

int refvalues_load(const struct refvalues_files *f, const struct refvalues_trust *t, struct refvalues **ret,
                   tm_err *err)
{
    if (!t->cas || t->cas->n == 0)
        return tm_err_set(err, EINVAL, "no CA may sign reference values (--rim-ca)");
    struct verify_request rq = {
        .data = (const uint8_t *)f->json,
        .data_len = f->json_len,
        .sig = (const uint8_t *)f->sig,
        .sig_len = f->sig_len,
        .chain_pem = f->chain_pem,
        .chain_len = f->chain_len,
        .anchors_pem = t->anchors_pem,
        .anchors_len = t->anchors_len,
        .crls_pem = t->crls_pem,
        .crls_len = t->crls_len,
        .eku = "codeSigning",
        .time = t->at,
        .cache = true, /* the fleet loads a group's reference values for every verdict */
    };
    struct verify_result res;
    int r = verify_signed(&rq, &res, err);
    if (r < 0)
        return tm_err_prefix(err, "signature");
    if (pem_leaf_is_ca(f->chain_pem, f->chain_len) != 0)
        return tm_err_set(err, EKEYREJECTED,
                          "signature: the signer's certificate (%s) is a CA "
                          "certificate (CA:TRUE), not a signer's",
                          res.leaf_subject);
    if (!ca_pins_issued(t->cas, &res))
        return tm_err_set(err, EKEYREJECTED,
                          "signature: the signer (%s) was not issued by a "
                          "CA that signs reference values (--rim-ca): another CA under %s",
                          res.leaf_subject, res.anchor_subject);
    _cleanup_(refvalues_freep) struct refvalues *rv = NULL;
    if ((r = refvalues_parse_cached(f->json, f->json_len, &rv, err)) < 0)
        return r;
    if (rv->rim_version < t->min_version)
        return tm_err_set(err, ESTALE, "version %llu is older than --min-version %llu",
                          (unsigned long long)rv->rim_version, (unsigned long long)t->min_version);
    time_t now = t->at ? t->at : time(NULL);
    char nb[21], na[21];
    format_time(rv->not_before, nb);
    format_time(rv->not_after, na);
    if (now < rv->not_before)
        return tm_err_set(err, EKEYEXPIRED, "version %llu is not valid before %s", (unsigned long long)rv->rim_version,
                          nb);
    if (now >= rv->not_after)
        return tm_err_set(err, EKEYEXPIRED, "version %llu expired at %s", (unsigned long long)rv->rim_version, na);
    rv->signature_verified = true;
    snprintf(rv->signer, sizeof(rv->signer), "%s", res.leaf_subject);
    *ret = steal_ptr(rv);
    return 0;
}
