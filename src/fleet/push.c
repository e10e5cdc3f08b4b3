/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Push mode (docs/FLEET.md "Push"): a device the fleet cannot reach asks for a nonce and sends
 * its evidence for it. The nonce is the freshness: issued to one enrolled device, good once and
 * for FLEET_NONCE_TTL_S. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "attest_check.h"
#include "cleanup.h"
#include "db.h"
#include "fleet.h"
#include "hex.h"

static int device_id(PGconn *c, const char *device, int64_t *ret, tm_err *err)
{
    if (!fleet_name_ok(device))
        return tm_err_set(err, EINVAL, "device: not a device name");
    _cleanup_res_ PGresult *res = NULL;
    int r = FLEET_EXEC(c, &res, err, "SELECT id FROM devices WHERE name = $1", device);
    if (r < 0)
        return r;
    if (PQntuples(res) != 1)
        return tm_err_set(err, EACCES, "device %s is not enrolled", device);
    *ret = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    return 0;
}

int fleet_push_nonce(PGconn *c, const char *device, uint8_t nonce[32], uint32_t pcrs[REFVALUES_PCRS], size_t *ret_npcrs,
                     tm_err *err)
{
    int64_t id;
    int r = device_id(c, device, &id, err);
    if (r < 0)
        return r;
    _cleanup_(fleet_target_done) struct fleet_target t = {0};
    if ((r = fleet_target_load(c, id, &t, err)) < 0)
        return r;
    /* A pushed verdict reschedules the device's pull: pushes anyone can make (failing ones)
     * must not keep a pull device from being attested. */
    if (t.address[0])
        return tm_err_set(err, EACCES,
                          "device %s is attested by pull (it has an address); push is for devices "
                          "enrolled without one",
                          device);
    if (getrandom(nonce, 32, 0) != 32)
        return tm_err_sys(err, "getrandom");
    char hex[65], ids[24], ttl[16];
    tm_hex(nonce, 32, hex);
    snprintf(ids, sizeof(ids), "%lld", (long long)id);
    snprintf(ttl, sizeof(ttl), "%d", FLEET_NONCE_TTL_S);
    /* Spent and expired nonces of this device go; one that answered a verdict stays in it. */
    FLEET_EXEC(c, NULL, NULL, "DELETE FROM push_nonces WHERE device_id = $1 AND expires_at < now() - interval '1 day'",
               ids);
    /* Anyone may ask for nonces under an enrolled name: the device keeps its newest unspent
     * ones, so the table does not grow with the requests (a flood can only make the device's
     * own push fail, which the device-missing alert shows). */
    char keep[16];
    snprintf(keep, sizeof(keep), "%d", FLEET_PUSH_NONCES_MAX - 1);
    FLEET_EXEC(c, NULL, NULL,
               "DELETE FROM push_nonces WHERE nonce IN (SELECT nonce FROM push_nonces WHERE device_id = $1 AND "
               "used_at IS NULL ORDER BY issued_at DESC, nonce OFFSET $2::int)",
               ids, keep);
    r = FLEET_EXEC(c, NULL, err,
                   "INSERT INTO push_nonces (nonce, device_id, expires_at) "
                   "VALUES (decode($1, 'hex'), $2, now() + make_interval(secs => $3::int))",
                   hex, ids, ttl);
    if (r < 0)
        return r;
    *ret_npcrs = fleet_target_pcrs(&t, pcrs);
    return 0;
}

int fleet_push_evidence(PGconn *c, const char *device, const uint8_t nonce[32], const uint8_t *buf, size_t len,
                        const char *alert_command, struct fleet_verdict *ret, tm_err *err)
{
    int64_t id;
    int r = device_id(c, device, &id, err);
    if (r < 0)
        return r;
    if (len == 0 || len > ATTEST_RESPONSE_MAX)
        return tm_err_set(err, EINVAL, "response: 1 to %u bytes of AttestResponse", ATTEST_RESPONSE_MAX);
    _cleanup_(fleet_trust_done) struct fleet_trust trust = {0};
    _cleanup_(fleet_target_done) struct fleet_target t = {0};
    if ((r = fleet_trust_load(c, &trust, err)) < 0 || (r = fleet_target_load(c, id, &t, err)) < 0)
        return r;
    /* Whatever the group says: a pushed quote is only this device's if it is made with the AK
     * it enrolled with. */
    t.pin_ak = true;
    char hex[65], ids[24], interval[24];
    tm_hex(nonce, 32, hex);
    snprintf(ids, sizeof(ids), "%lld", (long long)id);
    snprintf(interval, sizeof(interval), "%lld", (long long)t.interval_s);
    if ((r = fleet_begin(c, err)) < 0)
        return r;
    /* Spend the nonce first, in the transaction that records the verdict: of two pushes with
     * one nonce, the second waits on the row and then finds it used. */
    _cleanup_res_ PGresult *res = NULL;
    r = FLEET_EXEC(c, &res, err,
                   "UPDATE push_nonces SET used_at = now() WHERE nonce = decode($1, 'hex') AND device_id = $2 "
                   "AND used_at IS NULL AND expires_at > now() RETURNING nonce",
                   hex, ids);
    if (r == 0 && PQntuples(res) != 1)
        r = tm_err_set(err, ESTALE, "nonce: not issued to %s, used already or expired: ask for a new one", device);
    if (r < 0) {
        fleet_rollback(c);
        return r;
    }
    fleet_verify(&trust, &t, nonce, buf, len, NULL, ret);
    if ((r = fleet_record(c, &t, ret, "push", -1, nonce, 0, "push", err)) < 0 ||
        (r = FLEET_EXEC(c, NULL, err,
                        "UPDATE work SET due_at = now() + make_interval(secs => $2::int) WHERE device_id = $1", ids,
                        interval)) < 0) {
        fleet_rollback(c);
        fleet_verdict_done(ret);
        return r;
    }
    if ((r = fleet_commit(c, err)) < 0) {
        fleet_verdict_done(ret);
        return r;
    }
    if (!ret->trusted) {
        char msg[256];
        snprintf(msg, sizeof(msg), "device %s failed attestation: %s", device, ret->failed_check);
        /* Anyone with a fresh nonce can make a push fail: one alert a window, each verdict kept. */
        fleet_alert_limited(c, alert_command, "verdict-failed", device, msg, FLEET_PUSH_ALERT_S);
    }
    return 0;
}
