/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme-tpmd's TPM: one ESAPI context, the storage primary key (SRK) and the attestation key
 * (AK) kept loaded, and the few operations tpmd needs (docs/ATTESTATION.md "The TPM").
 *
 * There is no resource manager between tpmd and the TPM: every other object or session is made
 * for one operation and flushed on every path, and tpm_open flushes what a killed predecessor
 * left behind. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <tss2/tss2_esys.h>
#include <tss2/tss2_tctildr.h>

#include "error.h"

#define TPM_PCR_COUNT 24

struct tpm {
    TSS2_TCTI_CONTEXT *tcti;
    ESYS_CONTEXT *esys;
    ESYS_TR srk;
    ESYS_TR ak;
    TPM2B_NAME srk_name; /* the AK's parent's name, sent with every quote */
    TPM2B_PUBLIC ak_public; /* as the TPM reported it when the AK was loaded */
    TPM2B_NAME ak_name; /* nameAlg || digest of ak_public */
    TPM2B_PUBLIC ek_public; /* the endorsement key (TCG template L-2, ECC P-256) */
    TPM2B_PUBLIC tls_public; /* the TLS client key, once loaded (tpm_tls_*) */
    char manufacturer[5]; /* TPM2_PT_MANUFACTURER as text, e.g. "IBM" */
};

/* Connect to the TPM behind tcti (a tpm2-tss TCTI string), start it, flush leftovers, create the
 * SRK and load the AK (creating it in data_dir/ak.pub, ak.priv at the first start). */
int tpm_open(struct tpm *t, const char *tcti, const char *data_dir, tm_err *err);
/* Flush SRK and AK and disconnect; with shutdown, send TPM2_Shutdown(CLEAR) first (the embedded
 * TPM's power goes off next). NULL-safe, idempotent. */
void tpm_close(struct tpm *t, bool shutdown);

/* The TPM's dictionary-attack state (TPM2_GetCapability, TPM_PROPERTIES). */
struct tpm_da {
    bool in_lockout; /* TPMA_PERMANENT inLockout: DA-protected objects refuse all auth */
    uint32_t failures; /* TPM2_PT_LOCKOUT_COUNTER */
    uint32_t max_tries; /* TPM2_PT_MAX_AUTH_FAIL */
    uint32_t recovery_s; /* TPM2_PT_LOCKOUT_INTERVAL: seconds per failure forgiven */
};
int tpm_da_read(struct tpm *t, struct tpm_da *ret, tm_err *err);
/* TPM2_DictionaryAttackLockReset, authorised by the lockout hierarchy's empty auth (swtpm's and a
 * cleared TPM's): the failure count goes to zero and the lockout ends. */
int tpm_da_reset(struct tpm *t, tm_err *err);

/* The SHA-256 bank values of the PCRs in mask (bit i = PCR i) into values[i]. */
int tpm_pcr_read(struct tpm *t, uint32_t mask, uint8_t values[TPM_PCR_COUNT][32], tm_err *err);
int tpm_pcr_extend(struct tpm *t, uint32_t pcr, const uint8_t digest[32], tm_err *err);

/* TPM2_Quote with the AK over the SHA-256 PCRs in mask, nonce as qualifying data. The TPMS_ATTEST
 * bytes (as the TPM marshalled them) and the marshalled TPMT_SIGNATURE are malloc'ed for the
 * caller; pcr_digest receives the TPMS_ATTEST's pcrDigest. */
int tpm_quote(struct tpm *t, uint32_t mask, const uint8_t *nonce, size_t nonce_len, uint8_t **ret_attest,
              size_t *ret_attest_len, uint8_t **ret_sig, size_t *ret_sig_len, uint8_t pcr_digest[32], tm_err *err);

/* Sign data of any size with the AK: the TPM hashes it (SHA-256) and issues the ticket a
 * restricted key needs (refused for data that starts with TPM_GENERATED_VALUE). r and s are the
 * ECDSA signature, big-endian, left-padded to 32 bytes. */
int tpm_sign_data(struct tpm *t, const uint8_t *data, size_t len, uint8_t r[32], uint8_t s[32], tm_err *err);

/* The same with another loaded signing key (the vTPM-issuing key: unrestricted, the ticket is not
 * needed but does no harm). */
int tpm_sign_data_with(struct tpm *t, ESYS_TR key, const uint8_t *data, size_t len, uint8_t r[32], uint8_t s[32],
                       tm_err *err);

/* The vTPM-issuing key (docs/VTPM.md "EK certificates"): an unrestricted ECDSA P-256 signing key
 * under the SRK, kept in data_dir/vtpm-issuer.pub, .priv like the AK, made at its first use
 * (create) and loaded only for one operation (the caller flushes *ret): the TPM has few object
 * slots. tpm_issuer_public reads (and checks) its public area without the TPM. */
#define TPM_ISSUER_FILE "vtpm-issuer"
int tpm_issuer_public(const char *data_dir, TPM2B_PUBLIC *ret, tm_err *err);
int tpm_issuer_load(struct tpm *t, const char *data_dir, bool create, ESYS_TR *ret, TPM2B_PUBLIC *ret_public,
                    tm_err *err);
/* TPM2_Certify of a loaded object by the AK, with qualifying data: the TPMS_ATTEST and the
 * marshalled TPMT_SIGNATURE, malloc'ed. */
int tpm_certify(struct tpm *t, ESYS_TR object, const uint8_t *qualifying, size_t qualifying_len, uint8_t **ret_attest,
                size_t *ret_attest_len, uint8_t **ret_sig, size_t *ret_sig_len, tm_err *err);

/* TPM2_ActivateCredential with the AK as the object and the EK (made for the call, with a
 * PolicySecret(endorsement) session) as the key: the credential MakeCredential sealed to this
 * TPM's EK and the AK's name. */
int tpm_activate_credential(struct tpm *t, const TPM2B_ID_OBJECT *blob, const TPM2B_ENCRYPTED_SECRET *secret,
                            TPM2B_DIGEST *ret, tm_err *err);

/* The AK's TPMT_PUBLIC, TPM-marshalled, malloc'ed. */
int tpm_ak_public_marshal(const struct tpm *t, uint8_t **ret, size_t *ret_len, tm_err *err);

/* The device's TLS client key (docs/FLEET.md "Device identity on the wire"): an ECC P-256
 * signing key that is not restricted, made in this TPM at its first use (data_dir/tls.pub,
 * tls.priv) and loaded for each operation. */
int tpm_tls_public(struct tpm *t, const char *data_dir, TPM2B_PUBLIC *ret, tm_err *err);
/* ECDSA of a SHA-256 digest with the TLS key (r, s big-endian, left-padded to 32 bytes). */
int tpm_tls_sign(struct tpm *t, const char *data_dir, const uint8_t digest[32], uint8_t r[32], uint8_t s[32],
                 tm_err *err);
/* TPM2_Certify of the TLS key by the AK: the TPMS_ATTEST (as the TPM marshalled it) and the
 * marshalled TPMT_SIGNATURE, malloc'ed. */
int tpm_tls_certify(struct tpm *t, const char *data_dir, const uint8_t *qualifying, size_t qualifying_len,
                    uint8_t **ret_attest, size_t *ret_attest_len, uint8_t **ret_sig, size_t *ret_sig_len, tm_err *err);
