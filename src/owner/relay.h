/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme-owner's way to a container's vTPM: one TCP connection to the device's attestation
 * endpoint, which relays each TPM command to that container's vTPM (proto/attest.proto
 * VtpmRelayRequest), presented to tpm2-tss's ESAPI as a TCTI. The relay and the network are
 * untrusted: ESAPI's salted session and the checks in main.c protect what passes. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <tss2/tss2_tcti.h>

#include "error.h"

struct relay;

/* Connect to HOST:PORT for the container uuid; every exchange must finish within timeout_ms. */
int relay_open(const char *hostport, const char *uuid, int timeout_ms, struct relay **ret, tm_err *err);
void relay_close(struct relay *r);
/* The container's vTPM event log (text, NUL-terminated, malloc'ed). */
int relay_event_log(struct relay *r, char **ret, size_t *ret_len, tm_err *err);
/* The TCTI over this relay (lives as long as r). */
TSS2_TCTI_CONTEXT *relay_tcti(struct relay *r);
/* Why the last exchange failed, if the TCTI reported an I/O error. */
const char *relay_error(const struct relay *r);
/* Count of TPM commands relayed (for the report). */
unsigned relay_commands(const struct relay *r);
