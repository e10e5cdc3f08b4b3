/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme-fleet's operations (docs/FLEET.md), shared by its CLI and its HTTP API: both take the
 * same requests, checked the same way, and change the database only through these functions.
 * Errors: -EINVAL (bad input, err says which field), -ENOENT (no such group/device), -EEXIST
 * (the name or AK is taken), -EACCES (not the fleet's: a chain that does not verify, an
 * unenrolled device), -ESTALE (a nonce unknown, used or expired), -EIO (the database). */
#pragma once

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attest_check.h"
#include "ca_pin.h"
#include "error.h"
#include "refvalues.h"

#define FLEET_NAME_MAX 64
#define FLEET_ADDRESS_MAX 255
#define FLEET_NONCE_TTL_S 60 /* a push nonce is good this long, and once */
#define FLEET_PUSH_NONCES_MAX 8 /* unspent push nonces kept per device: the newest */
#define FLEET_PUSH_ALERT_S 60 /* a failing push alerts once in this many seconds per device */

/* What the fleet trusts (table trust): the roots and CAs of AKs and of reference values. */
struct fleet_trust {
    char *ak_anchors;
    size_t ak_anchors_len;
    struct ca_pins device_cas;
    char *rim_anchors;
    size_t rim_anchors_len;
    struct ca_pins rim_cas;
    char *crls; /* NULL: no revocation checking */
    size_t crls_len;
};
void fleet_trust_done(struct fleet_trust *t);
/* -ENOENT when `trustme-fleet trust` was never run. */
int fleet_trust_load(PGconn *c, struct fleet_trust *ret, tm_err *err);
/* PEM texts; crls NULL for none (explicitly: no revocation checking). */
int fleet_trust_set(PGconn *c, const char *ak_anchors, const char *device_cas, const char *rim_anchors,
                    const char *rim_cas, const char *crls, tm_err *err);

struct fleet_group_req {
    const char *name;
    int64_t interval_s; /* 1..86400 */
    uint32_t pcrs[REFVALUES_PCRS]; /* npcrs 0: the reference values' */
    size_t npcrs;
    bool pin_ak; /* a device must quote with the AK it enrolled with */
    uint64_t min_version;
    /* REFS.json, its .sig and .chain.pem (trustme-pki rim / sign) */
    const char *refs_json;
    size_t refs_json_len;
    const uint8_t *refs_sig;
    size_t refs_sig_len;
    const char *refs_chain;
    size_t refs_chain_len;
};
/* Create the group or replace its policy and reference values (a roll-out: every device of the
 * group is checked against the new ones from its next attestation). Reference values whose
 * signature, signer, version or validity the fleet's trust refuses are refused (-EACCES). */
int fleet_group_put(PGconn *c, const struct fleet_group_req *g, tm_err *err);

struct fleet_enroll_req {
    const char *name;
    const char *group;
    const char *address; /* HOST:PORT of its attestation endpoint; NULL: push mode */
    const char *ak_name_hex; /* 68 hex digits, `trustme device info --json` ak_name */
    const char *cert_chain_pem; /* the AK certificate, then its CAs */
    const char *tls_cert_pem; /* NULL, or the TLS client certificate (its key in the TPM), then its CAs */
};
/* The chain must verify to the fleet's AK roots, issued by one of its Device CAs, not be a CA;
 * else -EACCES with the reason. The device is due at once. */
int fleet_enroll(PGconn *c, const struct fleet_enroll_req *e, tm_err *err);
int fleet_device_remove(PGconn *c, const char *name, tm_err *err);
/* A push's TLS client: peer_chain_pem is the chain the client presented (NULL: none). A device
 * enrolled with a TLS certificate must present one that chains to the fleet's anchors through a
 * Device CA and is the one it enrolled with; for any other device the channel is not looked at.
 * 0, or -EACCES with the reason (an unenrolled name: 0, the push endpoint refuses it). */
int fleet_device_tls_check(PGconn *c, const char *device, const char *peer_chain_pem, tm_err *err);
/* The check of fleet_device_tls_check without the database: chain_pem (leaf first) chains to the
 * fleet's AK roots through one of its Device CAs, is no CA, and its key's SHA-256 SPKI pin is
 * pinned_hex; else -EACCES, err naming what ("the client certificate", "the device's TLS
 * certificate"). */
int fleet_device_tls_pinned(const struct fleet_trust *t, const char *device, const char *pinned_hex,
                            const char *chain_pem, const char *what, tm_err *err);

/* 1..64 of [A-Za-z0-9._-], not starting with '.' or '-'. */
bool fleet_name_ok(const char *s);
/* HOST:PORT, [V6]:PORT; letters, digits, . - : [ ] only, at most FLEET_ADDRESS_MAX. */
bool fleet_address_ok(const char *s);

/* ---- verification (verify.c) ---- */

/* What one attestation needs about its device, read with the claim. */
struct fleet_target {
    int64_t device_id;
    char name[FLEET_NAME_MAX + 1];
    char address[FLEET_ADDRESS_MAX + 1];
    uint8_t ak_name[34];
    char tls_spki[65]; /* hex pin of its TLS key ("": none): pulled over TLS, that key only */
    bool pin_ak;
    bool has_last_reset;
    uint32_t last_reset;
    int64_t interval_s;
    uint64_t min_version;
    uint32_t pcrs[REFVALUES_PCRS];
    size_t npcrs;
    struct refvalues_files refs;
};
void fleet_target_done(struct fleet_target *t);
/* The device's row with its group's policy. */
int fleet_target_load(PGconn *c, int64_t device_id, struct fleet_target *ret, tm_err *err);
/* The columns of a fleet_target but its refs and device_id (d: devices, g: device_groups), and
 * their parser from row's columns col .. col + 8. */
#define FLEET_TARGET_COLS                                                                                     \
    "d.name, coalesce(d.address, ''), encode(d.ak_name, 'hex'), g.pin_ak, d.last_reset_count, g.interval_s, " \
    "g.min_version, coalesce(array_to_string(g.pcrs, ','), ''), coalesce(encode(d.tls_spki, 'hex'), '')"
int fleet_target_parse(PGresult *res, int row, int col, struct fleet_target *t, tm_err *err);
/* A group's reference values from columns col .. col + 2 (refs_json, refs_sig, refs_chain as hex). */
int fleet_refs_parse(PGresult *res, int row, int col, struct refvalues_files *ret, tm_err *err);

/* The failing check of a pull whose TLS endpoint is not the device's enrolled key. */
#define FLEET_CHECK_DEVICE_TLS "device TLS"

#define FLEET_VTPMS_MAX 32 /* vtpm-ek events taken from one log */
#define FLEET_VTPM_NAME_MAX 48 /* "<uuid>/ek-rsa" and NUL */

struct fleet_verdict {
    bool trusted;
    bool evidence; /* the device answered with a quote */
    char failed_check[160]; /* the failing checks' names (", "), "no evidence", or "" */
    char *report_json; /* the report (trustme-verify --json's form) or {"error": ...} */
    bool reset_valid; /* quote signature passed: reset_count is the TPM's */
    uint32_t reset_count;
    /* A trusted verdict's vtpm-ek events: the container vTPMs' EKs the device vouches for. */
    struct {
        char name[FLEET_VTPM_NAME_MAX]; /* <uuid>/ek-rsa or ek-ecc */
        uint8_t digest[32]; /* SHA-256 of the EK's TPMT_PUBLIC */
    } vtpms[FLEET_VTPMS_MAX];
    size_t nvtpms;
    /* A trusted verdict's decoded response and report: the evidence a vTPM's EK is checked
     * against (vtpm_attest.c). NULL otherwise. */
    Trustme__Attest__AttestResponse *response;
    struct attest_report report;
};
void fleet_verdict_done(struct fleet_verdict *v);
/* Check a response (or, with buf NULL, record why there is none: why). */
void fleet_verify(const struct fleet_trust *trust, const struct fleet_target *t, const uint8_t *nonce,
                  const uint8_t *buf, size_t len, const char *why, struct fleet_verdict *ret);
/* The PCRs to ask the device for: the group's, else its reference values'. */
size_t fleet_target_pcrs(const struct fleet_target *t, uint32_t out[REFVALUES_PCRS]);

/* ---- alerts (alerts.c) ---- */

/* Record an alert and run the alert command, if any (sh -c CMD, not waited for, with
 * FLEET_ALERT_KIND, FLEET_ALERT_DEVICE, FLEET_ALERT_MESSAGE in its environment). */
void fleet_alert(PGconn *c, const char *command, const char *kind, const char *device, const char *message);
/* fleet_alert, unless an alert of this kind was raised for the device in the last window_s
 * seconds: for alerts anyone on the network can provoke (a failing push). */
void fleet_alert_limited(PGconn *c, const char *command, const char *kind, const char *device, const char *message,
                         int window_s);
/* Look for devices silent for two intervals, due work nobody did within an interval, workers
 * whose heartbeat stopped; alert each once (until it recovers). Safe to run in many processes
 * at once: each alert is claimed by one UPDATE. */
int fleet_sweep(PGconn *c, const char *command, tm_err *err);

/* ---- workers (worker.c) ---- */

struct fleet_worker_opts {
    const char *name; /* unique per process */
    const char *alert_command;
    int batch; /* devices claimed at once */
    int poll_ms; /* sleep when nothing is due */
    bool once; /* one pass, then return */
    bool no_sweep; /* leave the sweep to another thread of the process */
};
/* Claim due devices (FOR UPDATE SKIP LOCKED), attest each, record each verdict; run the sweep
 * now and then. Returns when *stop is set (or after one pass with once). */
int fleet_worker_run(PGconn *c, const struct fleet_worker_opts *o, volatile int *stop, tm_err *err);

/* ---- push (push.c) ---- */

/* A fresh nonce for an enrolled device, and the PCRs it must quote. */
int fleet_push_nonce(PGconn *c, const char *device, uint8_t nonce[32], uint32_t pcrs[REFVALUES_PCRS], size_t *ret_npcrs,
                     tm_err *err);
/* Verify pushed evidence against a nonce issued to that device, unused and unexpired; the nonce
 * is spent whatever the verdict. ret gets the verdict. */
int fleet_push_evidence(PGconn *c, const char *device, const uint8_t nonce[32], const uint8_t *buf, size_t len,
                        const char *alert_command, struct fleet_verdict *ret, tm_err *err);
/* The verdict row and the device's state, in the caller's transaction. */
int fleet_record(PGconn *c, const struct fleet_target *t, const struct fleet_verdict *v, const char *mode,
                 int64_t attempt, const uint8_t *nonce, int latency_ms, const char *worker, tm_err *err);

/* ---- vTPMs (admin.c) ---- */

/* Enroll a container's vTPM under its device (docs/FLEET.md "vTPMs"): ek is "<uuid>/ek-rsa" or
 * "<uuid>/ek-ecc", name_hex its EK's TPM name as `trustme vtpm info` shows it (000b and 64 hex
 * digits, or the 64 alone). */
int fleet_vtpm_enroll(PGconn *c, const char *device, const char *ek, const char *name_hex, tm_err *err);
/* The vTPMs with their state: attested (the device's last trusted log, at most two intervals
 * old, has the enrolled EK), another EK (the log names another EK under that UUID: a vTPM made
 * anew), stale (not in a trusted log for two intervals), never seen. One JSON array. */
#define FLEET_VTPMS_SQL                                                                                         \
    "SELECT coalesce(json_agg(x ORDER BY x.device, x.ek), '[]') FROM (SELECT d.name AS device, v.name AS ek, "  \
    "encode(v.ek_digest, 'hex') AS ek_digest, v.last_attested_at, CASE WHEN v.last_attested_at IS NULL THEN "   \
    "'never seen' WHEN v.last_digest <> v.ek_digest THEN 'another EK' WHEN v.last_attested_at > now() - 2 * "   \
    "g.interval_s * interval '1 second' THEN 'attested' ELSE 'stale' END AS state, v.ak_public IS NOT NULL AS " \
    "key_pinned, v.quoted_at, v.quote_trusted, v.quote_failed, v.quote_report::json AS quote_report "           \
    "FROM vtpms v JOIN devices d "                                                                              \
    "ON d.id = v.device_id JOIN device_groups g ON g.id = d.group_id) x"

/* ---- vTPM quotes (vtpm_attest.c) ---- */

/* The fleet's checks of an enrolled vTPM's own quote, by name (docs/FLEET.md "vTPM quotes"). */
#define FLEET_CHECK_VTPM_DEVICE "device"
#define FLEET_CHECK_VTPM_EK "vTPM EK"
#define FLEET_CHECK_VTPM_FETCH "vTPM no evidence"
#define FLEET_CHECK_VTPM_SIGNATURE "vTPM quote signature"
#define FLEET_CHECK_VTPM_QUOTE "vTPM quote"
#define FLEET_CHECK_VTPM_LOG "vTPM event log"
/* Pin a vTPM's attestation key: key_json is trustme-owner's --fleet-key file (the key its owner
 * proved beside the EK by credential activation and kept at the fleet key's handle),
 * ek_cert_pem the EK certificate and the device's vTPM issuer chain. The vTPM must be enrolled
 * (ek "<uuid>/ek-ecc"). */
int fleet_vtpm_key(PGconn *c, const char *device, const char *ek, const char *key_json, size_t key_len,
                   const char *ek_cert_pem, size_t pem_len, tm_err *err);
/* After a device's verdict dv: each of its vTPMs with a pinned key is attested (its EK checked
 * against dv's evidence, its quote fetched through the device's relay and checked) and its
 * verdict recorded, with the failing check's name. */
void fleet_vtpm_attest(PGconn *c, const struct fleet_trust *trust, const struct fleet_target *t,
                       const struct fleet_verdict *dv, int timeout_ms, const char *alert_command);

/* ---- retention (retention.c) ---- */

#define FLEET_PRUNE_BATCH 5000
/* Delete verdicts and alerts older than days (1..36500), in batches of FLEET_PRUNE_BATCH, oldest
 * first; the counts deleted. The devices' last verdict, last seen and failing checks stay (they
 * are columns of devices). */
int fleet_prune(PGconn *c, int days, long *ret_verdicts, long *ret_alerts, tm_err *err);
/* One JSON object: devices, verdicts, verdicts in the last day, the verdicts' bytes on disk (with
 * indexes and TOAST), the database's, and their quotient: bytes per device per day at the last
 * day's rate (docs/FLEET.md "Retention"). */
#define FLEET_STATS_SQL                                                                               \
    "SELECT row_to_json(x) FROM (SELECT s.*, CASE WHEN s.verdicts > 0 AND s.devices > 0 THEN "        \
    "round(s.verdicts_bytes::numeric / s.verdicts * s.verdicts_last_day / s.devices) END "            \
    "AS bytes_per_device_per_day FROM (SELECT (SELECT count(*) FROM devices) AS devices, "            \
    "(SELECT count(*) FROM verdicts) AS verdicts, (SELECT count(*) FROM verdicts WHERE at > now() - " \
    "interval '1 day') AS verdicts_last_day, pg_total_relation_size('verdicts') AS verdicts_bytes, "  \
    "pg_database_size(current_database()) AS database_bytes, (SELECT min(at) FROM verdicts) AS oldest) s) x"
