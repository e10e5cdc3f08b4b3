/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The fleet's state lives in PostgreSQL only (docs/FLEET.md "Schema"): this file connects,
 * migrates the schema and wraps the few libpq calls the rest uses. Every statement is
 * parameterised ($1, $2, ...): nothing a client sends is ever spliced into SQL text. */
#pragma once

#include <libpq-fe.h>
#include <stdbool.h>

#include "error.h"

/* The schema version this build migrates to (schema.c). */
int fleet_schema_latest(void);

/* Connect with a libpq connection string ("" takes PGHOST, PGDATABASE, ... from the
 * environment). -ECONNREFUSED with err saying libpq's reason. */
int fleet_db_connect(const char *conninfo, PGconn **ret, tm_err *err);
static inline void fleet_db_closep(PGconn **c)
{
    if (*c)
        PQfinish(*c);
}
static inline void fleet_pq_clearp(PGresult **r)
{
    if (*r)
        PQclear(*r);
}
#define _cleanup_pq_ __attribute__((cleanup(fleet_db_closep)))
#define _cleanup_res_ __attribute__((cleanup(fleet_pq_clearp)))

/* Bring the schema to fleet_schema_latest(), each migration in its own transaction, serialised
 * between processes by an advisory lock; a database newer than this build is refused
 * (-EPROTONOSUPPORT). ret_version: the version after. */
int fleet_db_migrate(PGconn *c, int *ret_version, tm_err *err);
/* The schema version of the database (0: none); a database not at fleet_schema_latest() is
 * refused by the programs that use it (-EPROTONOSUPPORT: run `trustme-fleet migrate`). */
int fleet_db_check_version(PGconn *c, tm_err *err);

/* Run a parameterised statement (text parameters, NULL for SQL NULL). *ret (may be NULL) gets
 * the result; -EIO with err holding the server's message, or -EEXIST for a unique violation
 * (SQLSTATE 23505), -ENOENT for a foreign-key violation (23503). */
int fleet_exec(PGconn *c, PGresult **ret, tm_err *err, const char *sql, int n, const char *const *params);
/* Parameters of fleet_exec given inline. */
#define FLEET_EXEC(c, ret, err, sql, ...)                                                              \
    fleet_exec((c), (ret), (err), (sql), sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *), \
               (const char *[]){__VA_ARGS__})
/* fleet_exec of a statement prepared once per connection under name (the first call on a
 * connection prepares it): the server parses and plans it once, not at every call. Only for
 * statements run outside an explicit transaction (the first call's "not prepared" error would
 * abort one). */
int fleet_exec_prepared(PGconn *c, const char *name, PGresult **ret, tm_err *err, const char *sql, int n,
                        const char *const *params);
#define FLEET_EXEC_PREPARED(c, name, ret, err, sql, ...)  \
    fleet_exec_prepared((c), (name), (ret), (err), (sql), \
                        sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *), (const char *[]){__VA_ARGS__})
int fleet_begin(PGconn *c, tm_err *err);
int fleet_commit(PGconn *c, tm_err *err);
void fleet_rollback(PGconn *c);
