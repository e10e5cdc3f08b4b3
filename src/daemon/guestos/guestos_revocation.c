/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "guestos_revocation.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "crypto.h"
#include "fileio.h"
#include "log.h"
#include "service.h"
#include "trust.h"

#define REFRESH_MS 5000
#define FILE_MAX (1024 * 1024)
#define SIG_MAX (16 * 1024)
#define CHAIN_MAX (256 * 1024)

struct check_op {
    struct check_op *next;
    struct daemon *d;
    char name[CONFIG_NAME_MAX + 1];
    uint64_t version;
    uint8_t key[32];
    char *json, *sig, *chain;
    size_t json_len, sig_len, chain_len;
    revocation_done_fn fn; /* NULL: a background re-check */
    void *userdata;
};

static struct check_op *ops;
static uint8_t last_key[32];
static bool have_last_key;
static tm_source *timer;

static void op_free(struct check_op *op)
{
    for (struct check_op **p = &ops; *p; p = &(*p)->next)
        if (*p == op) {
            *p = op->next;
            break;
        }
    free(op->json);
    free(op->sig);
    free(op->chain);
    free(op);
}

static void hash_file(struct tm_sha256_ctx *h, const char *path)
{
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    tm_err err = {0};
    /* The path and whether it could be read count too: a CRL that vanished changes the key. */
    tm_sha256_update(h, path, strlen(path) + 1);
    if (read_file(path, FILE_MAX, &data, &len, &err) < 0) {
        tm_sha256_update(h, &err.code, sizeof(err.code));
        return;
    }
    tm_sha256_update(h, &len, sizeof(len));
    tm_sha256_update(h, data, len);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* SHA-256 over everything a verification depends on besides the GuestOS itself: the CRLs, the
 * anchors and the registered CAs (device.json's and <data>/trust/cas/, in name order). */
static void current_key(struct daemon *d, uint8_t out[32])
{
    struct tm_sha256_ctx h;
    tm_sha256_init(&h);
    const struct device_config *dev = &d->device;
    for (size_t i = 0; i < dev->n_crls; i++)
        hash_file(&h, dev->crls[i]);
    for (size_t i = 0; i < dev->n_guestos_cas; i++)
        hash_file(&h, dev->guestos_cas[i]);
    const char *roots[] = {dev->software_root, dev->general_root, dev->local_root};
    for (size_t i = 0; i < ARRAY_SIZE(roots); i++)
        if (roots[i])
            hash_file(&h, roots[i]);
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/trust/cas", d->data_dir);
    _cleanup_(closedirp) DIR *dd = opendir(dir);
    char *names[256];
    size_t n = 0;
    struct dirent *de;
    while (dd && (de = readdir(dd)) && n < ARRAY_SIZE(names))
        if (de->d_name[0] != '.' && (names[n] = strdup(de->d_name)))
            n++;
    qsort(names, n, sizeof(names[0]), cmp_str);
    for (size_t i = 0; i < n; i++) {
        char path[PATH_MAX + 300];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        hash_file(&h, path);
        free(names[i]);
    }
    tm_sha256_final(&h, out);
}

static struct guestos *find_exact(struct daemon *d, const char *name, uint64_t version)
{
    return guestos_find(d, name, version);
}

static void on_verified(struct daemon *d, const struct trust_result *res, const tm_err *err, void *userdata)
{
    struct check_op *op = userdata;
    struct guestos *g = find_exact(d, op->name, op->version);
    tm_err e = {0};
    if (!g) {
        tm_err_set(&e, ENOENT, "GuestOS %s-%llu was removed meanwhile", op->name, (unsigned long long)op->version);
    } else {
        bool was = g->revoked;
        memcpy(g->checked_under, op->key, 32);
        g->checked = true;
        g->revoked = false;
        g->revoked_why[0] = '\0';
        /* An unknown revocation status (ENODATA: a CRL missing from the files, expired, not a
         * CRL) counts as a revocation: otherwise emptying or replacing the CRL files would let
         * a revoked GuestOS start again. */
        if (err && (err->code == EKEYREVOKED || err->code == ENOKEY || err->code == ENODATA)) {
            g->revoked = true;
            snprintf(g->revoked_why, sizeof(g->revoked_why), "GuestOS %s-%llu is revoked: %s", op->name,
                     (unsigned long long)op->version,
                     err->code == EKEYREVOKED ? "a certificate of its signer's chain is revoked"
                     : err->code == ENODATA   ? "the revocation status of its signer's chain "
                                                "cannot be checked against the CRLs"
                                              : "no registered GuestOS Signing CA vouches for its "
                                                "signer any more");
            tm_err_set(&e, err->code, "%s (%s)", g->revoked_why, err->msg);
            if (!was) {
                log_error("%s", e.msg);
                daemon_audit(d, "guestos.revoked", "fail", NULL, "trustmed", "%s", e.msg);
            }
        } else if (err) {
            log_warn("GuestOS %s-%llu: its signature no longer verifies, but not for a revocation "
                     "(it still starts; new installs need a valid chain): %s",
                     op->name, (unsigned long long)op->version, err->msg);
        } else if (was) {
            log_info("GuestOS %s-%llu is no longer revoked", op->name, (unsigned long long)op->version);
        }
    }
    revocation_done_fn fn = op->fn;
    void *ud = op->userdata;
    op_free(op);
    if (fn)
        fn(d, e.code ? &e : NULL, ud);
}

static int read_member(const char *dir, const char *name, size_t max, bool optional, char **ret, size_t *ret_len,
                       tm_err *err)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    tm_err e = {0};
    int r = read_file(path, max, ret, ret_len, &e);
    if (r < 0 && optional && e.code == ENOENT) {
        *ret = NULL;
        *ret_len = 0;
        return 0;
    }
    if (r < 0)
        *err = e;
    return r;
}

static int start_check(struct daemon *d, const struct guestos *g, const uint8_t key[32], revocation_done_fn fn,
                       void *userdata, tm_err *err)
{
    struct check_op *op = calloc(1, sizeof(*op));
    if (!op)
        return tm_err_set(err, ENOMEM, "out of memory");
    *op = (struct check_op){.d = d, .version = g->cfg->version, .fn = fn, .userdata = userdata};
    snprintf(op->name, sizeof(op->name), "%s", g->cfg->name);
    memcpy(op->key, key, 32);
    op->next = ops;
    ops = op;
    int r = read_member(g->dir, "guestos.json", GUESTOS_JSON_MAX, false, &op->json, &op->json_len, err);
    if (r == 0)
        r = read_member(g->dir, "guestos.json.sig", SIG_MAX, false, &op->sig, &op->sig_len, err);
    if (r == 0)
        r = read_member(g->dir, "guestos.json.chain.pem", CHAIN_MAX, false, &op->chain, &op->chain_len, err);
    bool core = strcmp(g->cfg->name, d->device.core_guestos) == 0;
    if (r == 0)
        r = trust_verify(d, op->json, op->json_len, op->sig, op->sig_len, op->chain, op->chain_len,
                         core ? CHAIN_SOFTWARE : CHAIN_GUESTOS, g->trust == TRUST_LOCAL, on_verified, op, err);
    if (r < 0) {
        op_free(op);
        return tm_err_prefix(err, "re-checking the signature of %s-%llu", g->cfg->name,
                             (unsigned long long)g->cfg->version);
    }
    return 0;
}

int revocation_check(struct daemon *d, struct guestos *g, revocation_done_fn fn, void *userdata, tm_err *err)
{
    if (g->trust == TRUST_UNSIGNED)
        return 1; /* nothing was signed: the policy check at start decides */
    uint8_t key[32];
    current_key(d, key);
    if (g->checked && memcmp(g->checked_under, key, 32) == 0) {
        if (g->revoked)
            return tm_err_set(err, EKEYREVOKED, "%s", g->revoked_why);
        return 1;
    }
    int r = start_check(d, g, key, fn, userdata, err);
    return r < 0 ? r : 0;
}

static void on_timer(tm_source *src, void *userdata)
{
    struct daemon *d = userdata;
    timer = NULL;
    revocation_refresh(d, false);
}

void revocation_refresh(struct daemon *d, bool force)
{
    uint8_t key[32];
    current_key(d, key);
    if (force || !have_last_key || memcmp(key, last_key, 32) != 0) {
        memcpy(last_key, key, 32);
        have_last_key = true;
        for (struct guestos *g = d->guestos; g; g = g->next) {
            if (g->trust == TRUST_UNSIGNED)
                continue;
            tm_err err = {0};
            if (start_check(d, g, key, NULL, NULL, &err) < 0)
                log_warn("%s", err.msg);
        }
    }
    if (!timer)
        timer = tm_loop_timer(d->loop, REFRESH_MS, on_timer, d);
}

void revocation_forget(struct daemon *d, void *userdata)
{
    for (struct check_op *op = ops, *next; op; op = next) {
        next = op->next;
        if (op->fn && op->userdata == userdata) {
            /* The re-check itself goes on: only its caller is gone. */
            op->fn = NULL;
            op->userdata = NULL;
        }
    }
}

void revocation_stop(struct daemon *d)
{
    tm_source_free(timer);
    timer = NULL;
    while (ops) {
        trust_forget(d, ops);
        op_free(ops);
    }
}

/* A new scd: installed GuestOSes against the current CRLs. */
static void revocation_on_scd_ready(struct daemon *d)
{
    revocation_refresh(d, true);
}

const struct service_events revocation_service_events = {
    .name = "revocation",
    .scd_ready = revocation_on_scd_ready,
};
