/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Container objects: lookup, persistence in the data dir, and what `list`/`state` report. */
#pragma once

#include "control.pb-c.h"
#include "daemon.h"

/* The detached signature of a container config, as verified (trust.h). */
struct config_signature {
    const void *sig;
    size_t sig_len;
    const char *chain;
    size_t chain_len;
};

/* Create and persist a new container from a validated config (atomically: all or nothing).
 * sig: NULL for an unsigned config. */
int container_create(struct daemon *d, struct container_config *cfg, const char *json, size_t len,
                     const struct config_signature *sig, struct container **ret, tm_err *err);
/* The same with a given UUID (a migrated container keeps its own) and files put into the
 * container's directory before it appears (stage_more gets the staging directory): all or
 * nothing as create. */
typedef int (*container_stage_fn)(const char *dir, void *ud, tm_err *err);
int container_create_staged(struct daemon *d, struct container_config *cfg, const char *json, size_t len,
                            const char *uuid, container_stage_fn stage_more, void *ud, struct container **ret,
                            tm_err *err);
/* Replace a stopped container's config (takes ownership of cfg on success). */
int container_update(struct container *c, struct container_config *cfg, const char *json, size_t len,
                     const struct config_signature *sig, tm_err *err);
/* Load every container found in the data dir. Broken entries are logged and skipped. */
int containers_load(struct daemon *d, tm_err *err);
/* By name or UUID. */
struct container *container_find(struct daemon *d, const char *id);
/* Delete a stopped container and all its files. */
int container_remove(struct container *c, tm_err *err);
/* Persist what must survive a restart beyond the config: id range, last error, last exit. */
int container_save_state(struct container *c, tm_err *err);
void container_free(struct container *c);
void container_data_dir(const struct container *c, char *out, size_t size);
void container_run_dir(const struct container *c, char *out, size_t size);
/* "name (uuid)" for logs and the audit log. */
const char *container_label(const struct container *c);
