/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The vTPM-issuing key (docs/VTPM.md "EK certificates"): an unrestricted signing key in the TPM,
 * certified by the Device CA as a CA for the containers' vTPM EK certificates. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "tpm.h"

/* The request bundle (src/lib/enrollment.h, VTPM_ISSUER_PEM_*): the issuing key (made at the
 * first call) signs its PKCS#10 request, subject CN "trustme vTPM issuer <AK name prefix>", and
 * the AK certifies it; ak_chain (the installed AK chain) goes with it. ENOENT without an AK
 * chain. */
int vtpm_issuer_csr(struct tpm *t, const char *data_dir, const char *ak_chain, size_t ak_chain_len, char **ret_pem,
                    size_t *ret_len, tm_err *err);
/* 1 and the chain re-encoded for storing when pem's first certificate is the issuing key's (a CA
 * with keyCertSign, each certificate issued by the next); 0 when it is not that key's. */
int vtpm_issuer_check_chain(const char *data_dir, const uint8_t *pem, size_t len, char **ret_pem, size_t *ret_len,
                            tm_err *err);
/* A vTPM's EK certificate (DER, malloc'd) for ek_public (a TPMT_PUBLIC: RSA 2048 or ECC P-256):
 * subject O=trustme container, OU=GuestOS <guestos>, CN=<uuid>, subjectAltName URI urn:uuid:<uuid>,
 * CA:FALSE, keyUsage keyEncipherment (RSA) / keyAgreement (ECC), EKU tcg-kp-EKCertificate, valid
 * until the issuer's certificate; signed by the issuing key in the TPM and verified. ENOENT while
 * no issuer certificate is installed (issuer_chain empty). */
int vtpm_ek_cert(struct tpm *t, const char *data_dir, const char *issuer_chain, size_t issuer_chain_len,
                 const uint8_t *ek_public, size_t ek_public_len, const char *uuid, const char *guestos,
                 uint8_t **ret_der, size_t *ret_len, tm_err *err);
