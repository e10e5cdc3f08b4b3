/* SPDX-License-Identifier: GPL-2.0-or-later */
/* TPM2_MakeCredential in software, for an ECC endorsement key (TPM 2.0 Part 1, "Credential
 * Protection" and Annex C "ECDH" secret sharing): the stakeholder seals a credential to a vTPM's
 * EK, bound to the Name of the key that must live in the same TPM; only that TPM's
 * TPM2_ActivateCredential releases it. No TPM is involved on this side. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <tss2/tss2_tpm2_types.h>

#include "error.h"

/* ek: the EK's TPMT_PUBLIC (ECC NIST P-256, nameAlg SHA-256, AES-128-CFB symmetric); name: the
 * bound object's Name (000b || SHA-256); cred: at most 64 bytes. Fills the two parameters of
 * TPM2_ActivateCredential. -EINVAL for an EK of another kind, -EIO when OpenSSL fails. */
int makecred_ecc(const TPMT_PUBLIC *ek, const TPM2B_NAME *name, const uint8_t *cred, size_t cred_len,
                 TPM2B_ID_OBJECT *ret_blob, TPM2B_ENCRYPTED_SECRET *ret_secret, tm_err *err);

/* KDFa (Part 1, "Key Derivation Function", SP800-108 counter mode with HMAC-SHA-256): bits/8
 * bytes of HMAC(key, u32be(i) || label || 0 || context_u || context_v || u32be(bits)). */
int makecred_kdfa(const uint8_t *key, size_t key_len, const char *label, const uint8_t *context_u, size_t u_len,
                  const uint8_t *context_v, size_t v_len, uint32_t bits, uint8_t *out);
/* KDFe (Part 1, SP800-56A concatenation KDF with SHA-256): bits/8 bytes of
 * SHA-256(u32be(i) || z || label || 0 || party_u || party_v). */
int makecred_kdfe(const uint8_t *z, size_t z_len, const char *label, const uint8_t *party_u, size_t u_len,
                  const uint8_t *party_v, size_t v_len, uint32_t bits, uint8_t *out);
