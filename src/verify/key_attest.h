/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Checking a key attestation (docs/KEYSTORE.md "Key attestation"): `trustme-verify
 * --key-attestation CERTS.pem`. CERTS holds, leaf first, the key's certificate (signed by the
 * container's attestation key), the container attestation certificate (signed by the device's
 * AK, naming the container) and the AK's chain up to the Device CA. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ca_pin.h"
#include "error.h"

struct key_attest_policy {
    const char *ak_anchors_pem; /* --ak-anchor */
    size_t ak_anchors_len;
    const struct ca_pins *device_cas; /* --device-ca */
    const char *crls_pem; /* NULL: --no-crl */
    size_t crls_len;
    const uint8_t *challenge; /* --challenge, or NULL: not compared (the report shows it) */
    size_t challenge_len;
    /* --vtpm-key: the container's vTPM key as its owner pinned it (a TPMT_PUBLIC) and the
     * container it is for; NULL: a TPM2_Certify in the attestation is not checked. */
    const uint8_t *vtpm_key_public;
    size_t vtpm_key_public_len;
    const char *vtpm_key_container;
};

struct key_attest_report {
    bool trusted;
    char reason[1024]; /* why not, when not */
    char device[512]; /* the AK certificate's subject and its anchor */
    char container[512]; /* name (uuid), GuestOS, config */
    char key[512]; /* alias, algorithm, size, purposes, security level */
    char challenge_hex[2 * 128 + 1];
    char tpm_evidence[256]; /* for a key of security level tpm: what shows that the vTPM holds it */
    bool tpm_certified; /* the vTPM's TPM2_Certify of the key checked against --vtpm-key */
    char json_container[1024];
    char json_key[1024];
};

/* Check certs (PEM). Always fills rep; 0, or -EINVAL when certs cannot be read at all. */
int key_attest_check(const char *certs_pem, size_t len, const struct key_attest_policy *pol,
                     struct key_attest_report *rep, tm_err *err);
void key_attest_print(FILE *out, const struct key_attest_report *rep, bool json);
