/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Reference values (docs/ATTESTATION.md "Reference values"): the signed list of (type, name,
 * sha256) a verifier accepts in a device's event log, and the signed policy that goes with it:
 * its version and validity period, the PCRs a quote must cover and the events a log must hold.
 * Matching values is by type and hash (names are informative); required events by type and
 * name. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "ca_pin.h"
#include "error.h"
#include "measurement.h"
#include "verify.h"

#define REFVALUES_FORMAT "trustme-reference-values"
#define REFVALUES_VERSION 2 /* of the format; 1 had no policy and is refused */
#define REFVALUES_MAX 65536 /* values in one file */
#define REFVALUES_REQUIRED_MAX 256 /* required events in one file */
#define REFVALUES_PCRS 24
#define REFVALUES_JSON_MAX (32 * 1024 * 1024) /* bytes of REFS.json */
#define REFVALUES_SIG_MAX 4096 /* bytes of REFS.json.sig */

struct refvalue {
    char type[TM_EVENT_TYPE_MAX + 1];
    char name[TM_EVENT_NAME_MAX + 1];
    uint8_t sha256[32];
};

/* An event the log must hold (on a quoted PCR): trustmed names its boot events the same on
 * every device, so type and name identify one. */
struct refvalue_required {
    char type[TM_EVENT_TYPE_MAX + 1];
    char name[TM_EVENT_NAME_MAX + 1];
};

struct refvalues {
    struct refvalue *v; /* sorted by type, then sha256 */
    size_t n;
    uint64_t rim_version; /* the release's number: --min-version refuses lower ones */
    time_t not_before, not_after; /* valid from, until (UTC seconds) */
    uint32_t pcrs[REFVALUES_PCRS]; /* the PCRs a quote must cover exactly, ascending */
    size_t npcrs;
    struct refvalue_required *required;
    size_t n_required;
    /* Set only by refvalues_load, after REFS.json's signature verified: a verifier accepts
     * nothing else (refvalues_parse alone is for tools and tests). */
    bool signature_verified;
    char signer[VERIFY_NAME_MAX]; /* RFC 2253 subject of the signing certificate */
};

/* REFS.json, REFS.json.sig and REFS.json.chain.pem as read from disk. */
struct refvalues_files {
    char *json;
    size_t json_len;
    char *sig;
    size_t sig_len;
    char *chain_pem;
    size_t chain_len;
};

/* Strict: unknown keys, wrong types, a format or version other than the above, a type that is
 * not an event type, a name tm_event_check refuses, a sha256 other than 64 lower-case hex digits,
 * a time other than YYYY-MM-DDTHH:MM:SSZ, not_after not after not_before, a PCR list that is
 * empty, out of 0..23 or repeats one, are errors naming the JSON path ("$.values[3].sha256:
 * ..."). */
int refvalues_parse(const char *json, size_t len, struct refvalues **ret, tm_err *err);
void refvalues_free(struct refvalues *r);
static inline void refvalues_freep(struct refvalues **r)
{
    if (*r)
        refvalues_free(*r);
}

/* Read path, path.sig and path.chain.pem (each bounded); -errno naming the file. */
int refvalues_read_files(const char *path, struct refvalues_files *ret, tm_err *err);
void refvalues_files_done(struct refvalues_files *f);

/* Who may sign reference values, and which ones a verifier still accepts. */
struct refvalues_trust {
    const char *anchors_pem; /* the roots of the signer's chain (--rim-anchor) */
    size_t anchors_len;
    /* The CAs that may issue the signer's certificate (--rim-ca: the Software Signing sub-CA
     * or a dedicated RIM-signing CA), compared whole with the signer's issuer. Required: a
     * root that also certifies other CAs must not let them sign reference values. */
    const struct ca_pins *cas;
    const char *crls_pem; /* NULL: no revocation checking (--no-crl) */
    size_t crls_len;
    uint64_t min_version; /* rim_version below it: -ESTALE */
    time_t at; /* the moment to check certificates and validity at; 0 = now */
};

/* Verify the signature (src/scd/verify.c: the chain to the anchors only, EKU codeSigning,
 * with crls_pem every CA's CRL; the signer a leaf (CA:FALSE) issued by one of t->cas), parse,
 * and check the version and validity period. -EKEYREJECTED / -EBADMSG / -EINVAL as verify.h, a
 * parse error, -ESTALE below min_version, -EKEYEXPIRED outside the validity period. */
int refvalues_load(const struct refvalues_files *f, const struct refvalues_trust *t, struct refvalues **ret,
                   tm_err *err);

/* The required event (type, name) is one of r's. */
bool refvalues_requires(const struct refvalues *r, const char *type, const char *name);

bool refvalues_contains(const struct refvalues *r, const char *type, const uint8_t sha256[32]);
