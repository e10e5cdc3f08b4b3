/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Where a container's token files are, the lock over them, and the record <uuid>.token:
 *   {"version":1,"type":"soft"}
 *   {"version":1,"type":"pkcs11","pkcs11":{"module":"/abs/path.so","label":"...","serial":"..."}}
 * (label and serial each optional, one required). */
#pragma once

#include <limits.h>
#include <stdbool.h>

#include "error.h"
#include "token.h"
#include "token_pkcs11.h"
#include "token_soft.h"

struct token_paths {
    char dir[PATH_MAX];
    char record[PATH_MAX];
    char soft[PATH_MAX];
    char soft_new[PATH_MAX]; /* a changed .soft, pending until trustmed anchors it */
    char tries[PATH_MAX];
};

struct token_record {
    enum token_type type;
    char module[PATH_MAX];
    char label[P11_LABEL_MAX + 1];
    char serial[P11_SERIAL_MAX + 1];
    bool has_label, has_serial;
};

/* Validates the UUID before it becomes part of any path. */
int token_paths_init(const struct token_ctx *ctx, const char *uuid, struct token_paths *ret, tm_err *err);
/* Exclusive flock on the tokens directory, held until *ret_fd is closed. create: make the
 * directory (0700) if missing; otherwise a missing directory is -ENOENT. */
int token_dir_lock(const struct token_paths *p, bool create, int *ret_fd, tm_err *err);

/* -ENOKEY if there is no record. */
int token_record_load(const char *path, const char *uuid, struct token_record *ret, tm_err *err);
/* Check and parse a record's bytes, read from path (for messages). */
int token_record_parse(const char *data, size_t len, const char *path, struct token_record *ret, tm_err *err);
int token_record_store(const char *path, const struct token_record *rec, tm_err *err);
void token_record_p11_config(const struct token_record *rec, struct p11_config *ret);

/* Paths, lock (held in *lock_fd until the caller closes it) and record for an operation on a
 * paired token (token.c). With ctx->anchor, the record and the soft token file are read once,
 * checked against it, and parsed from those bytes (*soft; kdf_n 0 when not read here). */
int token_prepare(const struct token_ctx *ctx, const char *uuid, struct token_paths *paths, int *lock_fd,
                  struct token_record *rec, struct soft_token *soft, tm_err *err);
