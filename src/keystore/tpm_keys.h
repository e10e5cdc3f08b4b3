/* SPDX-License-Identifier: GPL-2.0-or-later */
/* TPM-held keys (tpm_keys.c, docs/KEYSTORE.md "TPM-held keys"): EC signing keys generated and
 * used inside the container's own vTPM, reached on its command socket with the swtpm TCTI. The
 * private key exists only in the vTPM and, at rest, as the vTPM's wrapped TPM2B_PRIVATE inside
 * the keystore blob; the TPM itself enforces that the key only signs (object attributes) and its
 * authValue (the passphrase, with the vTPM's dictionary-attack lockout).
 * Errors are tm_err with a KsError as the code. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "error.h"

struct ks_tpm;

/* A client of the vTPM at sock (its command socket; the control socket is sock + ".ctrl").
 * Connects at the first use. NULL sock: no vTPM, every call is KS_ERR_TPM_UNAVAILABLE. */
struct ks_tpm *ks_tpm_new(const char *sock);
void ks_tpm_free(struct ks_tpm *t);

/* Generate an EC key (bits 256 or 384) that only signs, with authValue auth (1..32 bytes);
 * hash_bits 256/384/512 fixes its ECDSA scheme's hash, 0 leaves it open. da: wrong authValues
 * count towards the vTPM's dictionary-attack lockout (a passphrase; a random authValue needs
 * no throttling). Returns the marshalled TPM2B_PUBLIC and TPM2B_PRIVATE and the public key as
 * DER SubjectPublicKeyInfo. */
int ks_tpm_create_ec(struct ks_tpm *t, unsigned bits, unsigned hash_bits, const uint8_t *auth, size_t auth_len, bool da,
                     tm_buf *ret_pub, tm_buf *ret_priv, tm_buf *ret_spki, tm_err *err);

/* TPM2_Certify of the key (pub, priv; its authValue auth) by the persistent key at signer (a
 * restricted signing key with an empty authValue: the vTPM owner's attestation key), with
 * qualifying data qual[32]. The TPMS_ATTEST and the TPMT_SIGNATURE, marshalled, into ret_attest
 * and ret_sig; KS_ERR_ATTESTATION_UNAVAILABLE when there is no key at signer. */
int ks_tpm_certify(struct ks_tpm *t, const uint8_t *pub, size_t pub_len, const uint8_t *priv, size_t priv_len,
                   const uint8_t *auth, size_t auth_len, uint32_t signer, const uint8_t qual[32], tm_buf *ret_attest,
                   tm_buf *ret_sig, tm_err *err);

/* ECDSA over digest (32, 48 or 64 bytes: SHA-256/384/512) with the key (pub, priv) loaded under
 * the vTPM's storage key; the signature as DER into sig (at most *sig_len bytes). */
int ks_tpm_sign(struct ks_tpm *t, const uint8_t *pub, size_t pub_len, const uint8_t *priv, size_t priv_len,
                const uint8_t *auth, size_t auth_len, const uint8_t *digest, size_t digest_len, uint8_t *sig,
                size_t *sig_len, tm_err *err);
