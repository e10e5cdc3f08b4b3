/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The AK enrollment bundle formats shared by trustme-tpmd and trustme-pki (docs/ATTESTATION.md
 * "Enrollment"). All are PEM blocks in one text file. */
#pragma once

/* In `trustme device csr`'s output, after the CERTIFICATE REQUEST: the AK's TPMT_PUBLIC
 * (TPM-marshalled), then the EK's certificate chain (CERTIFICATE blocks, leaf first). */
#define ENROLL_PEM_AK_PUBLIC "TRUSTME AK PUBLIC"
/* In `trustme-pki issue --ca device`'s output: TPM2_MakeCredential's credentialBlob
 * (TPM2B_ID_OBJECT) and secret (TPM2B_ENCRYPTED_SECRET), both TPM-marshalled, and the AK
 * certificate (DER) encrypted with AES-256-GCM under the 32-byte credential: a 12-byte IV, the
 * ciphertext, the 16-byte tag; ENROLL_AAD as additional data. */
#define ENROLL_PEM_CREDENTIAL "TRUSTME CREDENTIAL BLOB"
#define ENROLL_PEM_SECRET "TRUSTME ENCRYPTED SECRET"
#define ENROLL_PEM_CERT "TRUSTME ENCRYPTED CERTIFICATE"
#define ENROLL_AAD "trustme-ak-certificate-v1"
#define ENROLL_CREDENTIAL_LEN 32
#define ENROLL_IV_LEN 12
#define ENROLL_TAG_LEN 16
/* In `trustme device csr --tls`'s output, after the CERTIFICATE REQUEST (signed by the TLS
 * client key in the TPM): the TLS key's TPMT_PUBLIC, TPM2_Certify's TPMS_ATTEST over it by the AK
 * (qualifying data: the SHA-256 of the request's DER CertificationRequestInfo) and its
 * TPMT_SIGNATURE, all TPM-marshalled; then the AK's certificate chain as installed. */
#define ENROLL_PEM_TLS_PUBLIC "TRUSTME TLS KEY PUBLIC"
#define ENROLL_PEM_TLS_CERTIFY "TRUSTME TLS KEY CERTIFY"
#define ENROLL_PEM_TLS_CERTIFY_SIG "TRUSTME TLS KEY CERTIFY SIGNATURE"

/* The vTPM-issuing key's request bundle (`trustme device csr --vtpm-issuer`, docs/VTPM.md "EK
 * certificates"): the CERTIFICATE REQUEST (signed by the issuing key in the TPM), then the key's
 * TPMT_PUBLIC, a TPM2_Certify of it by the AK (its TPMS_ATTEST, qualifying data the SHA-256 of the
 * request's DER) and that certification's TPMT_SIGNATURE, all TPM-marshalled, then the AK's
 * certificate chain as installed (CERTIFICATE blocks, leaf first). */
#define VTPM_ISSUER_PEM_PUBLIC "TRUSTME VTPM ISSUER PUBLIC"
#define VTPM_ISSUER_PEM_ATTEST "TRUSTME CERTIFY ATTEST"
#define VTPM_ISSUER_PEM_SIGNATURE "TRUSTME CERTIFY SIGNATURE"
/* The certificate policy marking a Device CA certificate as a vTPM EK issuer's (trustme-pki
 * issue --profile vtpm-issuer): a verifier accepts a vTPM EK certificate only under it. */
#define TM_OID_VTPM_ISSUER "2.25.76063360283489276769017081434749016287"
/* The TCG's tcg-kp-EKCertificate extended key usage, in the vTPM EK certificates. */
#define TM_OID_TCG_KP_EK_CERTIFICATE "2.23.133.8.1"
