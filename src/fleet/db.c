/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "db.h"

#include <errno.h>
#include <string.h>

int fleet_db_connect(const char *conninfo, PGconn **ret, tm_err *err)
{
    PGconn *c = PQconnectdb(conninfo ? conninfo : "");
    if (!c)
        return tm_err_set(err, ENOMEM, "out of memory");
    if (PQstatus(c) != CONNECTION_OK) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(c));
        msg[strcspn(msg, "\n")] = '\0';
        PQfinish(c);
        return tm_err_set(err, ECONNREFUSED, "cannot connect to the database: %s", msg);
    }
    /* Times in UTC everywhere (API, status page, alerts). */
    PGresult *res = PQexec(c, "SET TIME ZONE 'UTC'");
    PQclear(res);
    *ret = c;
    return 0;
}

int fleet_exec(PGconn *c, PGresult **ret, tm_err *err, const char *sql, int n, const char *const *params)
{
    PGresult *res = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        int code = EIO;
        if (state && strcmp(state, "23505") == 0)
            code = EEXIST;
        else if (state && strcmp(state, "23503") == 0)
            code = ENOENT;
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", res ? PQresultErrorMessage(res) : PQerrorMessage(c));
        msg[strcspn(msg, "\n")] = '\0';
        PQclear(res);
        return tm_err_set(err, code, "database: %s", msg);
    }
    if (ret)
        *ret = res;
    else
        PQclear(res);
    return 0;
}

static int result_error(PGconn *c, PGresult *res, tm_err *err)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    int code = EIO;
    if (state && strcmp(state, "23505") == 0)
        code = EEXIST;
    else if (state && strcmp(state, "23503") == 0)
        code = ENOENT;
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", res ? PQresultErrorMessage(res) : PQerrorMessage(c));
    msg[strcspn(msg, "\n")] = '\0';
    PQclear(res);
    return tm_err_set(err, code, "database: %s", msg);
}

static bool result_ok(PGresult *res)
{
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

int fleet_exec_prepared(PGconn *c, const char *name, PGresult **ret, tm_err *err, const char *sql, int n,
                        const char *const *params)
{
    PGresult *res = PQexecPrepared(c, name, n, params, NULL, NULL, 0);
    const char *state = !result_ok(res) && res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (state && strcmp(state, "26000") == 0) {
        /* Not prepared on this connection yet (a new one, or one that was reset). */
        PQclear(res);
        res = PQprepare(c, name, sql, n, NULL);
        if (!result_ok(res))
            return result_error(c, res, err);
        PQclear(res);
        res = PQexecPrepared(c, name, n, params, NULL, NULL, 0);
    }
    if (!result_ok(res))
        return result_error(c, res, err);
    if (ret)
        *ret = res;
    else
        PQclear(res);
    return 0;
}

int fleet_begin(PGconn *c, tm_err *err)
{
    return fleet_exec(c, NULL, err, "BEGIN", 0, NULL);
}

int fleet_commit(PGconn *c, tm_err *err)
{
    return fleet_exec(c, NULL, err, "COMMIT", 0, NULL);
}

void fleet_rollback(PGconn *c)
{
    PGresult *res = PQexec(c, "ROLLBACK");
    PQclear(res);
}
