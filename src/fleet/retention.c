/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Keeping the history bounded (docs/FLEET.md "Retention"): verdicts and alerts older than the
 * retention are deleted in batches, oldest first; what the history costs is reported. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "cleanup.h"
#include "db.h"
#include "fleet.h"

/* Oldest first by id (ids grow with time): the primary key's index is walked from its start and
 * the walk stops after a batch, so no index on `at` is needed and one batch is one short
 * transaction that never holds back the workers for long. */
static int prune_table(PGconn *c, const char *sql, const char *days, long *ret, tm_err *err)
{
    long total = 0;
    for (;;) {
        _cleanup_res_ PGresult *res = NULL;
        int r = FLEET_EXEC(c, &res, err, sql, days);
        if (r < 0)
            return r;
        long n = atol(PQcmdTuples(res));
        total += n;
        if (n < FLEET_PRUNE_BATCH)
            break;
    }
    *ret = total;
    return 0;
}

int fleet_prune(PGconn *c, int days, long *ret_verdicts, long *ret_alerts, tm_err *err)
{
    if (days < 1 || days > 36500)
        return tm_err_set(err, EINVAL, "retention: 1..36500 days");
    char d[16];
    snprintf(d, sizeof(d), "%d", days);
#define BATCH_STR(n) #n
#define BATCH(n) BATCH_STR(n)
    int r = prune_table(c,
                        "DELETE FROM verdicts WHERE id IN (SELECT id FROM verdicts WHERE at < now() - $1::int * "
                        "interval '1 day' ORDER BY id LIMIT " BATCH(FLEET_PRUNE_BATCH) ")",
                        d, ret_verdicts, err);
    if (r == 0)
        r = prune_table(c,
                        "DELETE FROM alerts WHERE id IN (SELECT id FROM alerts WHERE at < now() - $1::int * "
                        "interval '1 day' ORDER BY id LIMIT " BATCH(FLEET_PRUNE_BATCH) ")",
                        d, ret_alerts, err);
    return r;
#undef BATCH
#undef BATCH_STR
}
