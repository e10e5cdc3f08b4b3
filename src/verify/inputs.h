/* What a verifier brings of its own — trust anchors, CRLs, signed reference values — read once
 * for trustme-verify and `trustme attest` alike (inputs.c). */
#pragma once

#include <stddef.h>

#include "attest_check.h"
#include "error.h"
#include "refvalues.h"

struct attest_inputs {
    char *anchors;  /* the anchor PEM files, concatenated */
    size_t anchors_len;
    char *crls;     /* NULL without --crl */
    size_t crls_len;
    struct refvalues *refs;  /* NULL when their signature or content failed: */
    char refs_error[1200];   /* then why, for the "reference values" check */
};

/* Read the files. An unreadable file is an error (a usage problem: -errno, err says which); a
 * reference file whose signature or content does not verify is not — the report's "reference
 * values" check fails with refs_error. */
int attest_inputs_load(char *const *anchors, size_t n_anchors, char *const *crls, size_t n_crls,
                       const char *reference, struct attest_inputs *ret, tm_err *err);
void attest_inputs_done(struct attest_inputs *in);
/* The policy for one check: the inputs plus the nonce sent and the PCRs asked for. */
struct attest_policy attest_inputs_policy(const struct attest_inputs *in, const uint8_t *nonce,
                                          size_t nonce_len, const uint32_t *pcrs, size_t npcrs);
