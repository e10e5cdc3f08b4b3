/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A container vTPM's quote by an attestation key bound to its EK, and the container's event log
 * it must replay to: checked by trustme-owner at take-ownership (docs/VTPM.md "Remote
 * take-ownership") and by trustme-fleet's workers at every attestation of an enrolled vTPM
 * (docs/FLEET.md "vTPM quotes"). */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <tss2/tss2_tpm2_types.h>

#include "refvalues.h"

/* Parse the container's log ("PCR TYPE SHA256 NAME" lines), replay it into pcr_values, and
 * with refs check each event against them (and refs' required events): 0, -EKEYREJECTED (an
 * event not among refs; replayed all the same), -ENOENT (a required event missing), or -EINVAL
 * (malformed; why says where). refs NULL: replay only. */
int vtpm_container_log_check(const char *log, const struct refvalues *refs, uint8_t pcr_values[24][32],
                             size_t *ret_events, char *why, size_t why_size);
/* The quote: TPM-generated, over nonce, signed by akv (whose name is akv_name) as a primary of
 * the endorsement hierarchy, of exactly the PCRs sel asks for, whose digest is that of
 * pcr_values. 0, -EKEYREJECTED (the signature), -EINVAL (anything else); why says which. */
int vtpm_quote_check(const TPM2B_ATTEST *quoted, const TPMT_SIGNATURE *sig, const TPMT_PUBLIC *akv,
                     const uint8_t akv_name[34], const uint8_t nonce[32], const TPML_PCR_SELECTION *sel,
                     uint8_t pcr_values[24][32], char *why, size_t why_size);
