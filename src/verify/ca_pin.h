/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Binding a role to its CA (docs/ATTESTATION.md "Trust: who may sign what"): an AK certificate
 * must be issued by a Device CA, reference values signed by a certificate of a RIM-signing CA,
 * each the verifier names. A trust anchor alone is not enough, because one root (the Customer
 * root) certifies several CAs, each for another purpose. CAs are compared whole (SHA-256 of
 * their DER), as scd compares registered GuestOS-signing CAs, never by name. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "verify.h"

struct ca_pins {
    size_t n;
    uint8_t sha256[VERIFY_ANCHORS_MAX][32]; /* of each CA certificate's DER */
};

/* The certificates of pem (one or more CERTIFICATE blocks, nothing else); each must be a CA
 * (basicConstraints CA:TRUE). -EINVAL naming what is wrong. */
int ca_pins_parse(const char *pem, size_t len, const char *what, struct ca_pins *ret, tm_err *err);

/* res's leaf was issued by (its chain's second certificate is) one of pins. */
bool ca_pins_issued(const struct ca_pins *pins, const struct verify_result *res);

/* The first certificate of pem says CA:TRUE (basicConstraints): 1; 0 if not; -EINVAL if it
 * cannot be read (verify_signed will have said why). A CA certificate is no signer's or AK's
 * certificate: it could issue others. */
int pem_leaf_is_ca(const char *pem, size_t len);
