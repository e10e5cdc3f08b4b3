/* SPDX-License-Identifier: GPL-2.0-or-later */
/* TPM policy digests computed without a TPM: tpmd makes keys with them, the verifier checks a
 * certified key's authPolicy against the quoted PCR values (docs/MIGRATION.md). */
#pragma once

#include <stdint.h>

/* The policy digest of PolicyPCR(sha256: pcr (0..23) = value), from an empty policy. */
void tm_policy_pcr_sha256(uint32_t pcr, const uint8_t value[32], uint8_t out[32]);
