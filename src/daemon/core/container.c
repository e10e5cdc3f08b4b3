/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "container.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "container_slots.h"
#include "fileio.h"
#include "json_cleanup.h"
#include "jsonutil.h"
#include "log.h"

#define CONFIG_FILE_MAX (1024 * 1024)

void container_data_dir(const struct container *c, char *out, size_t size)
{
    snprintf(out, size, "%s/containers/%s", c->d->data_dir, c->uuid);
}

void container_run_dir(const struct container *c, char *out, size_t size)
{
    snprintf(out, size, "%s/containers/%s", c->d->run_dir, c->uuid);
}

const char *container_label(const struct container *c)
{
    static char buf[CONFIG_NAME_MAX + TM_UUID_STR_LEN + 4];
    snprintf(buf, sizeof(buf), "%s (%s)", c->cfg->name, c->uuid);
    return buf;
}

struct container *container_find(struct daemon *d, const char *id)
{
    for (struct container *c = d->containers; c; c = c->next)
        if (strcmp(c->uuid, id) == 0 || strcmp(c->cfg->name, id) == 0)
            return c;
    return NULL;
}

static struct container *container_alloc(struct daemon *d)
{
    struct container *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->d = d;
    c->state = CS_STOPPED;
    c->pidfd = -1;
    c->exit_code = -1;
    return c;
}

/* Undo the created hooks of the first n observers (all: SIZE_MAX), last first. */
static void observers_removed(struct container *c, size_t n)
{
    for (size_t i = n < c->d->nobservers ? n : c->d->nobservers; i-- > 0;)
        if (c->d->observers[i]->removed)
            c->d->observers[i]->removed(c);
}

void container_free(struct container *c)
{
    if (!c)
        return;
    for (size_t i = c->d->nobservers; i-- > 0;)
        if (c->d->observers[i]->freed)
            c->d->observers[i]->freed(c);
    container_slots_free(c);
    config_free(c->cfg);
    free(c->config_json);
    free(c);
}

static void link_container(struct daemon *d, struct container *c)
{
    struct container **pp = &d->containers;
    while (*pp) /* keep creation order: list output and autostart order are stable */
        pp = &(*pp)->next;
    *pp = c;
}

/* The lowest free range of 65536 ids at or above the daemon's id base. */
static int alloc_uid_base(struct daemon *d, uint32_t *ret, tm_err *err)
{
    for (uint64_t base = d->id_base; base + TM_IDS_PER_CONTAINER <= UINT32_MAX; base += TM_IDS_PER_CONTAINER) {
        bool used = false;
        for (struct container *c = d->containers; c && !used; c = c->next)
            used = c->uid_base && c->uid_base < base + TM_IDS_PER_CONTAINER &&
                   base < (uint64_t)c->uid_base + TM_IDS_PER_CONTAINER;
        if (!used) {
            *ret = (uint32_t)base;
            return 0;
        }
    }
    return tm_err_set(err, ENOSPC, "no free range of user ids left for a new container");
}

/* durable: at create (the id range must never be lost); after a stop the last exit is not worth
 * a disk flush (atomic all the same). */
static int write_state(const struct container *c, const char *dir, bool durable, tm_err *err)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/state.json", dir);
    _cleanup_json_ json_t *o = json_object();
    json_object_set_new(o, "uid_base", json_integer(c->uid_base));
    json_object_set_new(o, "created_at", json_integer((int64_t)c->created_at));
    json_object_set_new(o, "last_error", tm_json_text(c->last_error));
    json_object_set_new(o, "last_exit", tm_json_text(c->last_exit));
    json_object_set_new(o, "exit_code", json_integer(c->exit_code));
    /* runtime.json has it only while init runs (and lives in the run dir, lost at a reboot). */
    json_object_set_new(o, "started_at", json_integer((int64_t)c->started_at));
    _cleanup_free_ char *s = json_dumps(o, JSON_PRETTY_FLAGS);
    return !s        ? tm_err_set(err, ENOMEM, "out of memory")
           : durable ? write_file_atomic(path, s, strlen(s), 0600, err)
                     : write_file_replace(path, s, strlen(s), 0600, err);
}

int container_save_state(struct container *c, tm_err *err)
{
    char dir[PATH_MAX];
    container_data_dir(c, dir, sizeof(dir));
    return write_state(c, dir, false, err);
}

static int load_state(struct container *c, const char *dir, tm_err *err)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/state.json", dir);
    _cleanup_free_ char *data = NULL;
    size_t len;
    int r = read_file(path, 65536, &data, &len, err);
    if (r < 0)
        return r;
    json_t *o;
    if ((r = tm_json_parse_object(data, len, &o, err)) < 0)
        return tm_err_prefix(err, "%s", path);
    int64_t n;
    const char *s;
    if ((r = tm_json_get_int(o, "$", "uid_base", true, 0, UINT32_MAX, &n, err)) >= 0) {
        c->uid_base = (uint32_t)n;
        if (tm_json_get_int(o, "$", "created_at", false, 0, INT64_MAX, &n, NULL) > 0)
            c->created_at = (uint64_t)n;
        if (tm_json_get_string(o, "$", "last_error", false, sizeof(c->last_error) - 1, &s, NULL) > 0)
            snprintf(c->last_error, sizeof(c->last_error), "%s", s);
        if (tm_json_get_string(o, "$", "last_exit", false, sizeof(c->last_exit) - 1, &s, NULL) > 0)
            snprintf(c->last_exit, sizeof(c->last_exit), "%s", s);
        if (tm_json_get_int(o, "$", "exit_code", false, -1, 255, &n, NULL) > 0)
            c->exit_code = (int)n;
        if (tm_json_get_int(o, "$", "started_at", false, 0, INT64_MAX, &n, NULL) > 0)
            c->started_at = (uint64_t)n;
    }
    json_decref(o);
    return r < 0 ? tm_err_prefix(err, "%s", path) : 0;
}

/* A signed config keeps its signature beside it (as it was verified at create or update). */
static int write_signature(const char *dir, const struct config_signature *sig, tm_err *err)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/config.json.sig", dir);
    if (!sig) {
        unlink(path);
        snprintf(path, sizeof(path), "%s/config.json.chain.pem", dir);
        unlink(path);
        return 0;
    }
    int r = write_file_atomic(path, sig->sig, sig->sig_len, 0600, err);
    if (r < 0)
        return r;
    snprintf(path, sizeof(path), "%s/config.json.chain.pem", dir);
    return write_file_atomic(path, sig->chain, sig->chain_len, 0600, err);
}

int container_update(struct container *c, struct container_config *cfg, const char *json, size_t len,
                     const struct config_signature *sig, tm_err *err)
{
    char *copy = malloc(len + 1);
    if (!copy)
        return tm_err_set(err, ENOMEM, "out of memory");
    memcpy(copy, json, len);
    copy[len] = '\0';
    char dir[PATH_MAX], path[PATH_MAX + 32];
    container_data_dir(c, dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/config.json", dir);
    int r = write_signature(dir, sig, err);
    if (r == 0)
        r = write_file_atomic(path, json, len, 0600, err);
    if (r < 0) {
        free(copy);
        return r;
    }
    config_free(c->cfg);
    free(c->config_json);
    c->cfg = cfg;
    c->config_json = copy;
    c->config_len = len;
    c->config_signed = sig != NULL;
    return 0;
}

/* A container whose create failed: the caller still owns its config (container_create). */
static void create_failedp(struct container **c)
{
    if (*c)
        (*c)->cfg = NULL;
    container_free(*c);
}

/* Fill the staging directory tmp and rename it to c's data dir, with every observer's created
 * hook run in between. On failure the caller removes tmp. */
static int stage(struct container *c, const char *tmp, const char *json, size_t len, const struct config_signature *sig,
                 tm_err *err)
{
    struct daemon *d = c->d;
    char dir[PATH_MAX], path[PATH_MAX + 32];
    container_data_dir(c, dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/config.json", tmp);
    int r;
    if ((r = write_file_atomic(path, json, len, 0600, err)) < 0 || (r = write_signature(tmp, sig, err)) < 0)
        return r;
    c->config_signed = sig != NULL;
    if ((r = write_state(c, tmp, true, err)) < 0)
        return r;
    /* What the subsystems take for it (a network lease): left by a crash right here, it is
     * dropped at the next start (no such container). */
    for (size_t done = 0; done < d->nobservers; done++) {
        const struct container_observer *o = d->observers[done];
        if (o->created && (r = o->created(c, err)) < 0) {
            observers_removed(c, done);
            return r;
        }
    }
    if (rename(tmp, dir) < 0) {
        r = tm_err_sys(err, "cannot rename %s", tmp);
        observers_removed(c, SIZE_MAX);
        return r;
    }
    fsync_parent(dir);
    return 0;
}

static int create(struct daemon *d, struct container_config *cfg, const char *json, size_t len,
                  const struct config_signature *sig, const char *uuid, container_stage_fn stage_more, void *ud,
                  struct container **ret, tm_err *err)
{
    if (container_find(d, cfg->name))
        return tm_err_set(err, EEXIST, "a container named \"%s\" already exists", cfg->name);
    if (uuid && (!tm_uuid_valid(uuid) || container_find(d, uuid)))
        return tm_err_set(err, EEXIST, "container %s exists already here (or is not a UUID)", uuid);
    _cleanup_(create_failedp) struct container *c = container_alloc(d);
    if (!c)
        return tm_err_set(err, ENOMEM, "out of memory");
    int r;
    if (uuid)
        snprintf(c->uuid, sizeof(c->uuid), "%s", uuid);
    else if ((r = tm_uuid_new(c->uuid)) < 0)
        return tm_err_set(err, -r, "cannot generate a UUID");
    c->created_at = (uint64_t)time(NULL);
    if (cfg->user_namespace && (r = alloc_uid_base(d, &c->uid_base, err)) < 0)
        return r;
    c->config_json = malloc(len + 1);
    if (!c->config_json)
        return tm_err_set(err, ENOMEM, "out of memory");
    memcpy(c->config_json, json, len);
    c->config_json[len] = '\0';
    c->config_len = len;
    c->cfg = cfg;

    /* Stage everything in a hidden directory and rename it into place: a crash or an error
     * leaves no half-created container behind. */
    char tmp[PATH_MAX + 16];
    snprintf(tmp, sizeof(tmp), "%s/containers/.new-%s", d->data_dir, c->uuid);
    if (mkdir(tmp, 0700) < 0)
        return tm_err_sys(err, "cannot create %s", tmp);
    /* The extra files go in before the config's stage renames the directory into place. */
    if ((stage_more && (r = stage_more(tmp, ud, err)) < 0) || (r = stage(c, tmp, json, len, sig, err)) < 0) {
        rm_rf(tmp);
        return r;
    }
    link_container(d, c);
    *ret = steal_ptr(c);
    return 0;
}

int container_create(struct daemon *d, struct container_config *cfg, const char *json, size_t len,
                     const struct config_signature *sig, struct container **ret, tm_err *err)
{
    return create(d, cfg, json, len, sig, NULL, NULL, NULL, ret, err);
}

int container_create_staged(struct daemon *d, struct container_config *cfg, const char *json, size_t len,
                            const char *uuid, container_stage_fn stage_more, void *ud, struct container **ret,
                            tm_err *err)
{
    return create(d, cfg, json, len, NULL, uuid, stage_more, ud, ret, err);
}

static int load_one(struct daemon *d, const char *uuid, tm_err *err)
{
    struct container *c = container_alloc(d);
    if (!c)
        return tm_err_set(err, ENOMEM, "out of memory");
    snprintf(c->uuid, sizeof(c->uuid), "%s", uuid);
    char dir[PATH_MAX], path[PATH_MAX + 16];
    container_data_dir(c, dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/config.json", dir);
    int r = read_file(path, CONFIG_FILE_MAX, &c->config_json, &c->config_len, err);
    if (r == 0 && (r = config_parse(c->config_json, c->config_len, &c->cfg, err)) < 0)
        tm_err_prefix(err, "%s", path);
    if (r == 0)
        r = load_state(c, dir, err);
    if (r == 0 && container_find(d, c->cfg->name))
        r = tm_err_set(err, EEXIST, "duplicate container name %s", c->cfg->name);
    if (r < 0) {
        container_free(c);
        return r;
    }
    snprintf(path, sizeof(path), "%s/config.json.sig", dir);
    c->config_signed = access(path, F_OK) == 0;
    for (size_t i = 0; i < d->nobservers; i++)
        if (d->observers[i]->loaded && (r = d->observers[i]->loaded(c, err)) < 0) {
            container_free(c);
            return r;
        }
    link_container(d, c);
    return 0;
}

int containers_load(struct daemon *d, tm_err *err)
{
    char dir[PATH_MAX + 16];
    snprintf(dir, sizeof(dir), "%s/containers", d->data_dir);
    _cleanup_(closedirp) DIR *dd = opendir(dir);
    if (!dd)
        return tm_err_sys(err, "cannot read %s", dir);
    struct dirent *de;
    /* Sort by creation time so that listing and autostart order stay stable across restarts. */
    struct entry {
        char uuid[TM_UUID_STR_LEN + 1];
        struct timespec ctime;
    } *entries = NULL;
    size_t n = 0;
    while ((de = readdir(dd))) {
        if (strncmp(de->d_name, ".new-", 5) == 0) {
            char tmp[PATH_MAX + 64];
            snprintf(tmp, sizeof(tmp), "%s/%s", dir, de->d_name);
            log_warn("removing %s left by an interrupted create", tmp);
            rm_rf(tmp);
            continue;
        }
        if (!tm_uuid_valid(de->d_name))
            continue;
        struct stat st;
        if (fstatat(dirfd(dd), de->d_name, &st, 0) < 0 || !S_ISDIR(st.st_mode))
            continue;
        struct entry *e = realloc(entries, (n + 1) * sizeof(*e));
        if (!e)
            break;
        entries = e;
        snprintf(entries[n].uuid, sizeof(entries[n].uuid), "%s", de->d_name);
        entries[n].ctime = st.st_ctim;
        n++;
    }
    for (size_t i = 1; i < n; i++) /* few entries: insertion sort */
        for (size_t j = i; j > 0 && (entries[j].ctime.tv_sec < entries[j - 1].ctime.tv_sec ||
                                     (entries[j].ctime.tv_sec == entries[j - 1].ctime.tv_sec &&
                                      entries[j].ctime.tv_nsec < entries[j - 1].ctime.tv_nsec));
             j--) {
            struct entry t = entries[j];
            entries[j] = entries[j - 1];
            entries[j - 1] = t;
        }
    for (size_t i = 0; i < n; i++) {
        tm_err lerr;
        if (load_one(d, entries[i].uuid, &lerr) < 0) {
            log_error("cannot load container %s: %s", entries[i].uuid, lerr.msg);
            daemon_audit(d, "container.load", "fail", NULL, "trustmed", "%s: %s", entries[i].uuid, lerr.msg);
        }
    }
    free(entries);
    return 0;
}

int container_remove(struct container *c, tm_err *err)
{
    struct daemon *d = c->d;
    char dir[PATH_MAX], run[PATH_MAX], trash[PATH_MAX + 32];
    container_data_dir(c, dir, sizeof(dir));
    container_run_dir(c, run, sizeof(run));
    /* Rename first: from here on the container is gone even if removing its files is interrupted
     * (leftover .new-* directories are swept at start-up). */
    snprintf(trash, sizeof(trash), "%s/containers/.new-%s", d->data_dir, c->uuid);
    if (rename(dir, trash) < 0)
        return tm_err_sys(err, "cannot remove %s", dir);
    fsync_parent(dir);
    rm_rf(trash);
    rm_rf(run);
    observers_removed(c, SIZE_MAX);
    for (struct container **pp = &d->containers; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    container_free(c);
    return 0;
}
