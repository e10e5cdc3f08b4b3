/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The three TPM structures of a quote, read from untrusted bytes (tss2-mu) into what OpenSSL
 * checks: the TPMS_ATTEST, its TPMT_SIGNATURE as a DER ECDSA signature, and the AK's
 * TPMT_PUBLIC as an EVP_PKEY. Each must use its buffer exactly: trailing bytes are an error, so
 * that one byte string has one meaning. Internal to verify_core. */
#pragma once

#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>
#include <tss2/tss2_tpm2_types.h>

#include "error.h"

#define TPM_ECDSA_DER_MAX 80 /* two 32-byte integers in a SEQUENCE: at most 72 */

/* TPMS_ATTEST of a quote: magic TPM_GENERATED_VALUE and type TPM2_ST_ATTEST_QUOTE are checked
 * by the caller (they are the "quote signature" check's business, not parsing). */
int tpm_attest_parse(const uint8_t *buf, size_t len, TPMS_ATTEST *ret, tm_err *err);

/* TPMT_SIGNATURE, which must be ECDSA with SHA-256, as DER (what EVP_DigestVerify takes). */
int tpm_signature_der(const uint8_t *buf, size_t len, uint8_t der[TPM_ECDSA_DER_MAX], size_t *ret_len, tm_err *err);

/* TPMT_PUBLIC of an attestation key: ECC NIST P-256, nameAlg SHA-256, objectAttributes with
 * fixedTPM, restricted and sign (and not decrypt), scheme ECDSA-SHA256. -EINVAL if malformed,
 * -EKEYREJECTED (err saying which property) if it is not such a key; *ret_key is the public key
 * when the structure parsed, even if the properties are wrong, so that a caller can still say
 * whether it is the certified key. */
int tpm_ak_public(const uint8_t *buf, size_t len, EVP_PKEY **ret_key, tm_err *err);
