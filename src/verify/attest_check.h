/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The remote attestation verifier (docs/ATTESTATION.md "trustme-verify"): checks a device's
 * AttestResponse (proto/attest.proto) against the verifier's own trust anchors, CRLs and signed
 * reference values, and reports each named check. Used by trustme-verify and `trustme attest`.
 *
 * Everything in the response is untrusted: lengths are bounded, names validated, the AK
 * certificate chained only to the given anchors. Every check is computed where its inputs
 * exist; one that cannot run says "not checked: <why>". Nothing here talks to a TPM or the
 * network. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "attest.pb-c.h"
#include "ca_pin.h"
#include "error.h"
#include "refvalues.h"

#define ATTEST_VERSION 1u
#define ATTEST_NONCE_LEN 32
#define ATTEST_RESPONSE_MAX (4u * 1024 * 1024)
#define ATTEST_REQUEST_MAX 4096
#define ATTEST_EVENTS_MAX 100000
#define ATTEST_PCRS 24
#define ATTEST_DETAIL_MAX 640

/* The checks, in the order of the report. */
enum attest_check_id {
    ATTEST_CHECK_CHAIN, /* "certificate chain" */
    ATTEST_CHECK_AK_BINDING, /* "AK binding" */
    ATTEST_CHECK_QUOTE_SIGNATURE, /* "quote signature" */
    ATTEST_CHECK_NONCE, /* "nonce" */
    ATTEST_CHECK_PCR_DIGEST, /* "PCR digest" */
    ATTEST_CHECK_EVENT_LOG, /* "event log" */
    ATTEST_CHECK_REFERENCE_VALUES, /* "reference values" */
    ATTEST_CHECK_CLOCK, /* "TPM clock" */
    ATTEST_CHECK_COUNT
};

struct attest_check {
    const char *name; /* as above: stable, scripts match on it */
    bool ok;
    char detail[ATTEST_DETAIL_MAX]; /* one line; "not checked: ..." when it could not run */
};

/* The TPMS_ATTEST's clockInfo, as the TPM signed it (meaningful when "quote signature" passed).
 * For an AK in the owner hierarchy the TPM obfuscates reset_count and restart_count with an
 * offset fixed for that key: compare them only between quotes of the same AK. */
struct attest_clock {
    bool valid; /* the TPMS_ATTEST parsed */
    uint64_t clock; /* ms the TPM has been powered, advanced only while it runs */
    uint32_t reset_count; /* + 1 at each TPM reset (power cycle, swtpm restart) */
    uint32_t restart_count; /* + 1 at each TPM restart/resume since the last reset */
    bool safe; /* the clock was not rolled back since it was last reported */
};

#define ATTEST_EXTRA_MAX 8

struct attest_report {
    struct attest_check checks[ATTEST_CHECK_COUNT];
    /* Checks the verifier asked for beyond the eight (trustme-verify --vtpm-ek), reported after
     * them and part of the verdict; attest_report_add appends one. */
    struct attest_check extra[ATTEST_EXTRA_MAX];
    size_t n_extra;
    struct attest_clock clock;
    bool trusted; /* every check ok */
    size_t events; /* events in the device's log */
};

/* What the verifier brings. */
struct attest_policy {
    const uint8_t *nonce; /* the nonce sent */
    size_t nonce_len;
    /* The selection requested, which the quote must select exactly: the verifier's policy (the
     * reference values' "pcrs", or --pcr), never the device's choice. npcrs 0: "PCR digest"
     * fails (no policy). */
    const uint32_t *pcrs;
    size_t npcrs;
    /* The verifier chose the PCRs itself (--pcr): events on other PCRs are left out. Otherwise
     * (the reference values' PCRs) an event on a PCR the quote does not cover fails. */
    bool pcrs_explicit;
    const char *ak_anchors_pem; /* the roots of the AK certificate's chain (--ak-anchor) */
    size_t ak_anchors_len;
    /* The CAs that may issue AK certificates (--device-ca), compared whole with the leaf's
     * issuer. Required: the AK's root also certifies the GuestOS-signing CA. */
    const struct ca_pins *device_cas;
    const char *crls_pem; /* NULL: no revocation checking (--no-crl); else every CA needs its CRL */
    size_t crls_len;
    /* Reference values from refvalues_load. NULL: the check fails with refs_error (why they
     * could not be loaded: a bad signature, a parse error). */
    const struct refvalues *refs;
    const char *refs_error;
    time_t time; /* the moment to verify certificates at; 0 = now */
    /* Optional: the TPM name (nameAlg || SHA-256 of TPMT_PUBLIC, 34 bytes) of the one device
     * the verifier means to ask. Without it any device the Device CA certified, running
     * approved software, passes — a relayed response of another device included. */
    const uint8_t *expect_ak_name;
    size_t expect_ak_name_len;
    /* Optional, for a verifier that keeps state per device: the TPM's reset count it saw last
     * from this AK. A lower one fails "TPM clock" (an old quote, or a TPM whose state was rolled
     * back); a higher one passes and the detail says the TPM was reset since. */
    bool has_last_reset;
    uint32_t last_reset;
};

/* Decode a response of version 1 carrying a quote. -EPROTO for anything else (undecodable,
 * another version, no body), -EREMOTEIO when the device answered with an Error (err holds its
 * code and message). The caller compares the id and frees with
 * trustme__attest__attest_response__free_unpacked(resp, NULL). */
int attest_response_decode(const uint8_t *buf, size_t len, Trustme__Attest__AttestResponse **ret, tm_err *err);

/* Run every check on a quote; always fills the whole report. */
void attest_check_quote(const Trustme__Attest__Quote *q, const struct attest_policy *pol, struct attest_report *rep);

/* Decode and check: 0 with rep filled, or attest_response_decode's error (rep untouched). */
int attest_check_response(const uint8_t *buf, size_t len, const struct attest_policy *pol, struct attest_report *rep,
                          tm_err *err);

/* Append c to rep's extra checks (at most ATTEST_EXTRA_MAX: the caller bounds them); a failed
 * one makes the verdict untrusted. */
void attest_report_add(struct attest_report *rep, const struct attest_check *c);

/* The human report: one line per check, then the verdict. */
void attest_report_print(FILE *out, const struct attest_report *rep);
/* {"verdict": "trusted"|"untrusted", "checks": [{"name", "ok", "detail"}], "events": N,
 * "clock": {"clock", "reset_count", "restart_count", "safe"} or null} and a newline. -ENOMEM or
 * -EIO. */
int attest_report_print_json(FILE *out, const struct attest_report *rep);
