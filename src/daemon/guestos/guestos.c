/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "guestos.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "crypto.h"
#include "container.h"
#include "fileio.h"
#include "json_cleanup.h"
#include "jsonutil.h"
#include "log.h"

#define RECORD_MAX 4096

static const char *const trust_names[] = {
    [TRUST_SIGNED] = "signed", [TRUST_LOCAL] = "locally-signed", [TRUST_UNSIGNED] = "unsigned"};

const char *trust_level_name(enum trust_level t)
{
    return t < ARRAY_SIZE(trust_names) ? trust_names[t] : "?";
}

const char *guestos_trust_shown(const struct guestos *g)
{
    return g->revoked ? "revoked" : trust_level_name(g->trust);
}

static void store_dir(struct daemon *d, char *out, size_t size)
{
    snprintf(out, size, "%s/guestos", d->data_dir);
}

static void guestos_free(struct guestos *g)
{
    if (g) {
        image_cache_drop(g);
        guestos_config_free(g->cfg);
        free(g);
    }
}

int guestos_write_record(const char *dir, enum trust_level trust, const char *signer, const char *ca_sha256,
                         tm_err *err)
{
    _cleanup_json_ json_t *o = json_object();
    if (!o)
        return tm_err_set(err, ENOMEM, "out of memory");
    json_object_set_new(o, "trust", json_string(trust_level_name(trust)));
    /* A name from the signer's certificate, which no one checked for UTF-8. */
    json_object_set_new(o, "signer", tm_json_text(signer));
    if (ca_sha256[0])
        json_object_set_new(o, "ca_sha256", json_string(ca_sha256));
    json_object_set_new(o, "installed_at", json_integer((int64_t)time(NULL)));
    _cleanup_free_ char *text = json_dumps(o, JSON_FORMAT_FLAGS);
    if (!text)
        return tm_err_set(err, ENOMEM, "out of memory");
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/install.json", dir);
    return write_file_atomic(path, text, strlen(text), 0600, err);
}

static int read_record(const char *dir, struct guestos *g, tm_err *err)
{
    static const char *const keys[] = {"trust", "signer", "installed_at", "ca_sha256", NULL};
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/install.json", dir);
    _cleanup_free_ char *data = NULL;
    size_t len;
    json_t *root;
    const char *trust, *signer, *ca = NULL;
    int64_t at;
    int r = read_file(path, RECORD_MAX, &data, &len, err);
    if (r < 0 || (r = tm_json_parse_object(data, len, &root, err)) < 0)
        return r;
    if ((r = tm_json_check_keys(root, "$", keys, err)) == 0 &&
        (r = tm_json_get_string(root, "$", "trust", true, 32, &trust, err)) > 0 &&
        (r = tm_json_get_string(root, "$", "signer", true, sizeof(g->signer) - 1, &signer, err)) > 0 &&
        (r = tm_json_get_int(root, "$", "installed_at", true, 0, INT64_MAX, &at, err)) > 0 &&
        (r = tm_json_get_string(root, "$", "ca_sha256", false, 64, &ca, err)) >= 0) {
        r = tm_err_set(err, EINVAL, "unknown trust level \"%s\"", trust);
        for (size_t i = 0; i < ARRAY_SIZE(trust_names); i++)
            if (strcmp(trust, trust_names[i]) == 0) {
                g->trust = (enum trust_level)i;
                r = 0;
            }
        snprintf(g->signer, sizeof(g->signer), "%s", signer);
        snprintf(g->ca_sha256, sizeof(g->ca_sha256), "%s", ca ? ca : "");
        g->installed_at = (uint64_t)at;
    }
    json_decref(root);
    return r < 0 ? tm_err_prefix(err, "%s", path) : 0;
}

/* Load one installed GuestOS. Its images are not hashed here: every start does that. */
static int load_one(const char *dir, struct guestos **ret, tm_err *err)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/guestos.json", dir);
    _cleanup_free_ char *json = NULL;
    size_t len;
    struct guestos *g = calloc(1, sizeof(*g));
    if (!g)
        return tm_err_set(err, ENOMEM, "out of memory");
    int r = read_file(path, GUESTOS_JSON_MAX, &json, &len, err);
    if (r == 0 && (r = guestos_config_parse(json, len, &g->cfg, err)) < 0)
        tm_err_prefix(err, "%s", path);
    if (r == 0)
        tm_sha256(json, len, g->json_sha256);
    if (r == 0)
        r = read_record(dir, g, err);
    if (r < 0) {
        guestos_free(g);
        return r;
    }
    snprintf(g->dir, sizeof(g->dir), "%s", dir);
    for (size_t i = 0; i < g->cfg->nmounts; i++)
        g->size += g->cfg->mounts[i].size;
    *ret = g;
    return 0;
}

/* Sorted by name, then version: list output and "the newest" both follow from it. */
static void insert_sorted(struct daemon *d, struct guestos *g)
{
    struct guestos **p = &d->guestos;
    while (*p && (strcmp((*p)->cfg->name, g->cfg->name) < 0 ||
                  (strcmp((*p)->cfg->name, g->cfg->name) == 0 && (*p)->cfg->version < g->cfg->version)))
        p = &(*p)->next;
    g->next = *p;
    *p = g;
}

int guestos_store_add(struct daemon *d, const char *dir, tm_err *err)
{
    struct guestos *g;
    int r = load_one(dir, &g, err);
    if (r < 0)
        return r;
    insert_sorted(d, g);
    return 0;
}

int guestos_store_init(struct daemon *d, tm_err *err)
{
    char dir[PATH_MAX];
    store_dir(d, dir, sizeof(dir));
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return tm_err_sys(err, "cannot create %s", dir);
    _cleanup_(closedirp) DIR *dd = opendir(dir);
    if (!dd)
        return tm_err_sys(err, "cannot read %s", dir);
    struct dirent *de;
    while ((de = readdir(dd))) {
        char path[PATH_MAX + 256];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (strncmp(de->d_name, ".staging-", 9) == 0 || strncmp(de->d_name, ".removing-", 10) == 0) {
            log_warn("removing %s left by an interrupted install or remove", path);
            rm_rf(path);
            continue;
        }
        if (de->d_name[0] == '.')
            continue;
        struct guestos *g;
        tm_err lerr = {0};
        if (load_one(path, &g, &lerr) < 0) {
            log_error("GuestOS %s not loaded: %s", path, lerr.msg);
            continue;
        }
        char expect[PATH_MAX];
        snprintf(expect, sizeof(expect), "%s-%llu", g->cfg->name, (unsigned long long)g->cfg->version);
        if (strcmp(expect, de->d_name) != 0) {
            log_error("GuestOS %s not loaded: its guestos.json says %s", path, expect);
            guestos_free(g);
            continue;
        }
        insert_sorted(d, g);
    }
    return 0;
}

void guestos_store_free(struct daemon *d)
{
    while (d->guestos) {
        struct guestos *g = d->guestos;
        d->guestos = g->next;
        guestos_free(g);
    }
}

struct guestos *guestos_find(struct daemon *d, const char *name, uint64_t version)
{
    struct guestos *found = NULL;
    for (struct guestos *g = d->guestos; g; g = g->next)
        if (strcmp(g->cfg->name, name) == 0 && (version == 0 || g->cfg->version == version))
            found = g; /* sorted: the last match is the newest */
    return found;
}

struct guestos *guestos_for(struct container *c)
{
    return c->cfg->guestos[0] ? guestos_find(c->d, c->cfg->guestos, c->cfg->guestos_version) : NULL;
}

static bool uses(struct container *c, const struct guestos *g)
{
    if (strcmp(c->cfg->guestos, g->cfg->name) != 0)
        return false;
    if (c->state != CS_STOPPED && c->guestos_version == g->cfg->version)
        return true;
    return guestos_for(c) == g;
}

size_t guestos_users(struct daemon *d, const struct guestos *g, char *buf, size_t size)
{
    size_t n = 0, off = 0;
    buf[0] = '\0';
    for (struct container *c = d->containers; c; c = c->next) {
        if (!uses(c, g))
            continue;
        int w = snprintf(buf + off, size - off, "%s%s", n ? "," : "", c->cfg->name);
        if (w > 0 && (size_t)w < size - off)
            off += (size_t)w;
        n++;
    }
    return n;
}

int guestos_remove(struct daemon *d, const char *name, uint64_t version, tm_err *err)
{
    size_t count = 0;
    for (struct guestos *g = d->guestos; g; g = g->next)
        count += strcmp(g->cfg->name, name) == 0;
    if (count == 0)
        return tm_err_set(err, ENOENT, "no GuestOS %s is installed", name);
    if (version == 0 && count > 1)
        return tm_err_set(err, EINVAL, "%zu versions of %s are installed: say which with --version", count, name);
    struct guestos *g = guestos_find(d, name, version);
    if (!g)
        return tm_err_set(err, ENOENT, "version %llu of %s is not installed", (unsigned long long)version, name);
    char users[512];
    if (guestos_users(d, g, users, sizeof(users)) > 0)
        return tm_err_set(err, EBUSY, "%s-%llu is used by %s", name, (unsigned long long)g->cfg->version, users);
    /* Renamed first: a crash during the removal leaves a .removing- directory, which the next
     * start of trustmed deletes, never half a GuestOS under its real name. */
    char dir[PATH_MAX], gone[PATH_MAX + 128];
    store_dir(d, dir, sizeof(dir));
    snprintf(gone, sizeof(gone), "%s/.removing-%s-%llu", dir, name, (unsigned long long)g->cfg->version);
    if (rename(g->dir, gone) < 0)
        return tm_err_sys(err, "cannot remove %s", g->dir);
    fsync_parent(gone);
    rm_rf(gone);
    for (struct guestos **p = &d->guestos; *p; p = &(*p)->next)
        if (*p == g) {
            *p = g->next;
            break;
        }
    guestos_free(g);
    return 0;
}

static int dup_strv(char *const *in, size_t n, char ***ret, tm_err *err)
{
    char **v = calloc(n + 1, sizeof(char *));
    if (!v)
        return tm_err_set(err, ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        if (!(v[i] = strdup(in[i]))) {
            config_free_strv(v);
            return tm_err_set(err, ENOMEM, "out of memory");
        }
    *ret = v;
    return 0;
}

int guestos_apply(struct container_config *cfg, const struct guestos_config *g, tm_err *err)
{
    char **env;
    int r = dup_strv(g->env, g->nenv, &env, err);
    if (r < 0)
        return r;
    config_free_strv(cfg->guest_env);
    cfg->guest_env = env;
    cfg->nguest_env = g->nenv;
    snprintf(cfg->guest_working_dir, sizeof(cfg->guest_working_dir), "%s", g->working_dir);
    cfg->guest_user = g->has_user;
    cfg->guest_uid = g->uid;
    cfg->guest_gid = g->gid;
    if (!cfg->init_set)
        snprintf(cfg->init, sizeof(cfg->init), "%s", g->init);
    if (!cfg->init_set && !cfg->args_set) {
        char **args;
        if ((r = dup_strv(g->args, g->nargs, &args, err)) < 0)
            return r;
        config_free_strv(cfg->args);
        cfg->args = args;
        cfg->nargs = g->nargs;
    }
    return 0;
}
