/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Key attestation inside the keystore service (docs/KEYSTORE.md "Key attestation"): the
 * container's attestation key (EC P-256, made at the service's start, in memory only) and its
 * certificate, which the service asks trustmed for over its link at the first attestation
 * (tpmd makes it and signs it with the AK; trustmed names the container), then one X.509
 * certificate per attested key, signed by the attestation key. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "keystore.pb-c.h"

struct ks_attest;

int ks_attest_new(int link_fd, struct ks_attest **ret, tm_err *err);
void ks_attest_free(struct ks_attest *a);

/* The chain for the key alias with public key spki and characteristics ch: key certificate,
 * container certificate, the AK's chain (DER each, malloc'd into *ret; free with
 * ks_attest_chain_free). tpm_certify: a packed KsTpmCertify for the key certificate's extension
 * TM_OID_TPM_CERTIFY, or empty. Errors carry a KsError code. */
int ks_attest_key(struct ks_attest *a, const uint8_t *spki, size_t spki_len,
                  const Trustme__Keystore__KsKeyCharacteristics *ch, const uint8_t *challenge, size_t challenge_len,
                  const ProtobufCBinaryData *tpm_certify, Trustme__Keystore__KsCertChain *ret, tm_err *err);
void ks_attest_chain_free(Trustme__Keystore__KsCertChain *c);
