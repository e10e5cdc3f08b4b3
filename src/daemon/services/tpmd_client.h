/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustmed's client of trustme-tpmd (tpmd_client.c): start, supervise, call asynchronously;
 * the boot measurements and the device storage secret (docs/ATTESTATION.md). */
#pragma once

#include "daemon.h"
#include "tpmd.pb-c.h"

/* Called once per request. err is set if it failed: tpmd's Error (resp is that response), or
 * tpmd died before answering (resp NULL). resp and err are valid only during the call. */
typedef void (*tpmd_reply_fn)(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata);

/* Start tpmd as its own user, queue the boot measurements (trustmed, scd, tpmd, device.json)
 * and the request for the device storage secret, which goes on to scd. */
/* Its state (d->tpm), before scd starts: scd's start is measured. Freed by tpmd_free. */
int tpmd_init(struct daemon *d, tm_err *err);
void tpmd_free(struct daemon *d);
int tpmd_start(struct daemon *d, tm_err *err);
void tpmd_stop(struct daemon *d);
/* Send req (version and id are filled in); fn is called with the answer. tpmd answers in the
 * order of the requests. Fails at once only if tpmd is not running. */
int tpmd_call(struct daemon *d, Trustme__Tpmd__Request *req, tpmd_reply_fn fn, void *userdata, tm_err *err);
/* The caller behind userdata is going away: its pending replies are dropped. */
void tpmd_forget(struct daemon *d, void *userdata);
/* resp carries a Secret (StorageSecret or Reseal answered): hand it to scd and wipe it. */
void tpmd_secret_deliver(struct daemon *d, const Trustme__Tpmd__Response *resp);
/* The root of the keystore keys (32 bytes, derived from the device storage secret), or NULL
 * while the TPM has not unsealed that secret. */
struct secret;
const struct secret *tpmd_keystore_root(const struct daemon *d);
/* Ask tpmd for the device storage secret for scd, unless scd has it or a request is under way
 * (called when scd or tpmd comes up). */
void tpmd_secret_refresh(struct daemon *d);
/* scd exited: the next one needs the secret again. */
void tpmd_scd_gone(struct daemon *d);
/* scd was (re)started from exe: measure it (boot PCR). */
void tpmd_measure_scd(struct daemon *d, int exe);
/* The three above, as scd's event listener (service.h). */
extern const struct service_events tpmd_scd_events;

#define TPMD_MEASURE_MAX 64
struct tm_event_item {
    unsigned pcr;
    const char *type; /* TM_EVENT_* (measurement.h) */
    const char *name;
    uint8_t sha256[32];
};
/* Tells tpmd that everything running is in the log again after a TPM reset (Measure.complete):
 * sent behind measure_running's requests, it lets tpmd answer quotes again. */
int tpmd_measure_complete(struct daemon *d, tpmd_reply_fn fn, void *userdata, tm_err *err);
/* Extend and log items in order (tpmd skips ones already logged). */
int tpmd_measure(struct daemon *d, const struct tm_event_item *items, size_t n, tpmd_reply_fn fn, void *userdata,
                 tm_err *err);

/* The TPM is an emulator (the embedded swtpm, or a swtpm/mssim TCTI): the device binding of
 * encrypted containers has no hardware root (docs/STORAGE.md "The embedded TPM"). */
bool tpmd_emulated(const struct daemon *d);

/* Why containers cannot get their keys now, or NULL when the device secret reached scd. */
const char *tpmd_secret_problem(const struct daemon *d);

/* The anchor table in tpmd (docs/ATTESTATION.md, "Anchored state"): named values whose integrity
 * and freshness rest on the TPM. Names: 1..128 printable ASCII bytes without spaces
 * ("guestos/<name>", "config/<uuid>", "token/<uuid>/<what>"); values: at most 64 bytes. */
struct tpmd_anchor_entry {
    const char *name;
    const uint8_t *value; /* ignored when remove */
    size_t len;
    bool remove;
};
/* At most 64 names (and 64 changes) per call. Ask for the values of names[0..n). fn gets resp->anchor (Trustme__Tpmd__AnchorReply): the
 * entries that exist, in the order asked, and the table's version. A missing, older or edited
 * table: err with ENOENT, ESTALE or EBADMSG and the reason (fail closed). */
int tpmd_anchor_get(struct daemon *d, const char *const *names, size_t n, tpmd_reply_fn fn, void *userdata,
                    tm_err *err);
/* Apply set[0..n_set) as one new version of the table (atomically: all or nothing; one TPM NV
 * write), then answer names[0..n_get) from the result as tpmd_anchor_get does. */
int tpmd_anchor_update(struct daemon *d, const struct tpmd_anchor_entry *set, size_t n_set, const char *const *names,
                       size_t n_get, tpmd_reply_fn fn, void *userdata, tm_err *err);
/* The value of name in an anchor reply (or in the anchors of a Measured reply), or NULL. */
const ProtobufCBinaryData *tpmd_anchor_value(const Trustme__Tpmd__Response *resp, const char *name);

/* A start in one round trip: tpmd measures items only if every entry of expect holds exactly its
 * value (remove: is absent) in the anchor table, checked and measured in the same request. fn
 * gets resp->measured: anchor_mismatch set when one differed and nothing was measured, and the
 * expected names that exist (tpmd_anchor_value reads them). A missing, older or edited table
 * fails as tpmd_anchor_get does. At most TPMD_MEASURE_EXPECT_MAX expectations. */
#define TPMD_MEASURE_EXPECT_MAX 16
int tpmd_measure_expect(struct daemon *d, const struct tm_event_item *items, size_t n,
                        const struct tpmd_anchor_entry *expect, size_t n_expect, tpmd_reply_fn fn, void *userdata,
                        tm_err *err);
