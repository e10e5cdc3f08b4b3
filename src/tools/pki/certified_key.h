/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A TPM key the AK certifies, on the Device CA's side (the TLS client key, enroll_tls.c; the
 * vTPM-issuing key, vtpm_issuer.c): the bundle src/lib/enrollment.h describes proves, on the word
 * of an AK this Device CA certified, that the requested key was made in that AK's TPM. */
#pragma once

#include <stdbool.h>
#include <tss2/tss2_tpm2_types.h>

#include "pki.h"

struct certified_key_format {
    const char *public_label, *attest_label, *sig_label; /* the PEM blocks after the request */
    /* The certification's qualifying data: SHA-256 of the request's DER (true) or of its DER
     * CertificationRequestInfo (false). */
    bool qualify_whole_request;
    const char *not_a_bundle; /* what a file without all parts is said not to be */
};

/* Read the bundle at path and check: its AK certificate was issued by device_ca, is valid now and
 * is no CA; the AK signed a TPM2_Certify of the bundle's public area (an ECC P-256 key, nameAlg
 * SHA-256) for this request; the request is self-signed by that key and has a subject. The
 * request in *ret_req and the certified public area in *ret_pub, for the caller's checks of the
 * key's attributes; anything else -EKEYREJECTED (or -EINVAL for what does not parse). */
int certified_key_read(const char *path, const struct certified_key_format *f, X509 *device_ca, X509_REQ **ret_req,
                       TPMT_PUBLIC *ret_pub, tm_err *err);
