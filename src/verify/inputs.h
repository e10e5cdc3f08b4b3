/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What a verifier brings of its own — the roots and CAs of each role, CRLs, signed reference
 * values — read once for trustme-verify and `trustme attest` alike (inputs.c). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attest_check.h"
#include "ca_pin.h"
#include "error.h"
#include "refvalues.h"

/* The files given on the command line. Each role has its roots and the CAs that issue its
 * certificates (docs/ATTESTATION.md "Trust: who may sign what"). */
struct attest_inputs_files {
    char *const *ak_anchors; /* --ak-anchor: roots of AK certificates */
    size_t n_ak_anchors;
    char *const *device_cas; /* --device-ca: the CAs that issue AK certificates */
    size_t n_device_cas;
    char *const *rim_anchors; /* --rim-anchor: roots of the reference values' signer */
    size_t n_rim_anchors;
    char *const *rim_cas; /* --rim-ca: the CAs that issue reference-value signers */
    size_t n_rim_cas;
    char *const *crls; /* --crl; none only with no_crl (--no-crl) */
    size_t n_crls;
    bool no_crl;
    const char *reference; /* REFS.json (with .sig and .chain.pem) */
    uint64_t min_version; /* --min-version: older reference values fail */
};

struct attest_inputs {
    char *ak_anchors; /* the anchor PEM files, concatenated */
    size_t ak_anchors_len;
    struct ca_pins device_cas;
    char *rim_anchors;
    size_t rim_anchors_len;
    struct ca_pins rim_cas;
    char *crls; /* NULL with --no-crl */
    size_t crls_len;
    struct refvalues *refs; /* NULL when their signature, content or validity failed: */
    char refs_error[1200]; /* then why, for the "reference values" check */
};

/* Read the files. An unreadable file, a missing role or CRL option is an error (a usage
 * problem: -errno, err says which); reference values whose signature, content or validity do
 * not verify are not — the report's "reference values" check fails with refs_error. */
int attest_inputs_load(const struct attest_inputs_files *files, struct attest_inputs *ret, tm_err *err);
void attest_inputs_done(struct attest_inputs *in);
/* The PCRs to ask for: the verifier's own (--pcr, explicit) if any, else the reference values'
 * "pcrs" (none when they could not be loaded: the request then leaves the choice to the device,
 * and "PCR digest" fails). Returns the count written to out. */
size_t attest_inputs_pcrs(const struct attest_inputs *in, const uint32_t *explicit_pcrs, size_t n_explicit,
                          uint32_t out[REFVALUES_PCRS]);
/* The policy for one check: the inputs plus the nonce sent and the PCRs asked for (from
 * attest_inputs_pcrs; explicit when they came from --pcr). */
struct attest_policy attest_inputs_policy(const struct attest_inputs *in, const uint8_t *nonce, size_t nonce_len,
                                          const uint32_t *pcrs, size_t npcrs, bool pcrs_explicit);
/* The PEM files at paths, concatenated (each followed by a newline) into one NUL-terminated
 * buffer, at most VERIFY_PEM_MAX bytes in all: the form verify.c reads. */
int attest_read_pems(char *const *paths, size_t n, char **ret, size_t *ret_len, tm_err *err);
