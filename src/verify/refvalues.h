/* Reference values (docs/ATTESTATION.md "Reference values"): the signed list of (type, name,
 * sha256) a verifier accepts in a device's event log. Matching is by type and hash; names are
 * informative. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "error.h"
#include "measurement.h"
#include "verify.h"

#define REFVALUES_FORMAT "trustme-reference-values"
#define REFVALUES_VERSION 1
#define REFVALUES_MAX 65536                 /* values in one file */
#define REFVALUES_JSON_MAX (32 * 1024 * 1024) /* bytes of REFS.json */
#define REFVALUES_SIG_MAX 4096              /* bytes of REFS.json.sig */

struct refvalue {
    char type[TM_EVENT_TYPE_MAX + 1];
    char name[TM_EVENT_NAME_MAX + 1];
    uint8_t sha256[32];
};

struct refvalues {
    struct refvalue *v; /* sorted by type, then sha256 */
    size_t n;
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
 * not an event type, a name tm_event_check refuses, a sha256 other than 64 lower-case hex digits
 * are errors naming the JSON path ("$.values[3].sha256: ..."). */
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

/* Verify the signature (src/scd/verify.c: the chain to the anchors only, EKU codeSigning,
 * with crls_pem every CA's CRL) and parse. -EKEYREJECTED / -EBADMSG / -EINVAL as verify.h, or a
 * parse error. */
int refvalues_load(const struct refvalues_files *f, const char *anchors_pem, size_t anchors_len,
                   const char *crls_pem, size_t crls_len, time_t at, struct refvalues **ret,
                   tm_err *err);

bool refvalues_contains(const struct refvalues *r, const char *type, const uint8_t sha256[32]);
