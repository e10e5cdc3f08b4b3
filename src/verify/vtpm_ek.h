/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The "vTPM EK" check of trustme-verify --vtpm-ek (docs/VTPM.md "EK certificates"): a
 * container vTPM's EK certificate, given by the verifier, must chain to the verifier's AK
 * anchors through a vTPM issuer that one of its Device CAs certified, and certify exactly the
 * EK that the attested device's verified log names for that container (the last `vtpm-ek
 * UUID/ek-ecc|ek-rsa` event on a quoted PCR). A certificate of another device's vTPM, of a vTPM
 * since reset, or for a key the device never logged fails. */
#pragma once

#include <stddef.h>

#include "attest_check.h"

#define VTPM_EK_FILES_MAX 8

/* Check one bundle (PEM: the EK certificate first, then untrusted intermediates such as the
 * device's vTPM issuer chain from `trustme device info --json`) against the quote q that rep
 * holds the checks of. The log is evidence only when rep's checks up to "event log" passed;
 * otherwise out says "not checked". With want_uuid, the certificate must name that container;
 * with want_kind ("ecc" or "rsa"), it must certify that EK of it (a caller that goes on to use
 * one EK must not take the other's certificate for it). Always fills out (name "vTPM EK"). */
void vtpm_ek_check(const char *pem, size_t len, const char *what, const Trustme__Attest__Quote *q,
                   const struct attest_policy *pol, const struct attest_report *rep, const char *want_uuid,
                   const char *want_kind, struct attest_check *out);
