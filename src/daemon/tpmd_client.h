/* trustmed's client of trustme-tpmd (tpmd_client.c): start, supervise, call asynchronously;
 * the boot measurements and the device storage secret (docs/ATTESTATION.md). */
#pragma once

#include "daemon.h"
#include "tpmd.pb-c.h"

/* Called once per request. err is set if it failed: tpmd's Error (resp is that response), or
 * tpmd died before answering (resp NULL). resp and err are valid only during the call. */
typedef void (*tpmd_reply_fn)(struct daemon *d, const Trustme__Tpmd__Response *resp,
                              const tm_err *err, void *userdata);

/* Start tpmd as its own user, queue the boot measurements (trustmed, scd, tpmd, device.json)
 * and the request for the device storage secret, which goes on to scd. */
int tpmd_start(struct daemon *d, tm_err *err);
void tpmd_stop(struct daemon *d);
/* Send req (version and id are filled in); fn is called with the answer. tpmd answers in the
 * order of the requests. Fails at once only if tpmd is not running. */
int tpmd_call(struct daemon *d, Trustme__Tpmd__Request *req, tpmd_reply_fn fn, void *userdata,
              tm_err *err);
/* The caller behind userdata is going away: its pending replies are dropped. */
void tpmd_forget(struct daemon *d, void *userdata);
/* resp carries a Secret (StorageSecret or Reseal answered): hand it to scd and wipe it. */
void tpmd_secret_deliver(struct daemon *d, const Trustme__Tpmd__Response *resp);
/* Ask tpmd for the device storage secret for scd, unless scd has it or a request is under way
 * (called when scd or tpmd comes up). */
void tpmd_secret_refresh(struct daemon *d);
/* scd exited: the next one needs the secret again. */
void tpmd_scd_gone(struct daemon *d);
/* scd was (re)started from exe: measure it (boot PCR). */
void tpmd_measure_scd(struct daemon *d, int exe);

#define TPMD_MEASURE_MAX 64
struct tm_event_item {
    unsigned pcr;
    const char *type; /* TM_EVENT_* (measurement.h) */
    const char *name;
    uint8_t sha256[32];
};
/* Extend and log items in order (tpmd skips ones already logged). */
int tpmd_measure(struct daemon *d, const struct tm_event_item *items, size_t n, tpmd_reply_fn fn,
                 void *userdata, tm_err *err);

/* Why containers cannot get their keys now, or NULL when the device secret reached scd. */
const char *tpmd_secret_problem(const struct daemon *d);
