/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The passphrase verifier of a TPM-held key: a salted scrypt of its authValue, kept in the key's
 * encrypted blob, so that the service tells a right passphrase from a wrong one before the vTPM
 * sees it, and counts (and anchors) only the wrong ones (docs/KEYSTORE.md "Wrong passphrases of
 * TPM-held keys"). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "error.h"
#include "keystore.pb-c.h"

/* scrypt's cost: N = 2^14, r = 8, p = 1 (16 MiB, RFC 7914's interactive setting): per guess at
 * least what a try at an offline copy of the vTPM costs, and memory-hard against GPUs. Kept in
 * each verifier, so that later keys may take more. */
#define KS_VERIFIER_LOG2_N 14
#define KS_VERIFIER_R 8
#define KS_VERIFIER_P 1

/* A verifier with its own buffers; msg points into them (put it into a KsKeyBlob as is). */
struct ks_verifier {
    Trustme__Keystore__KsPassphraseVerifier msg;
    uint8_t salt[16], hash[32];
};

/* A new verifier of auth (32 bytes) with a fresh random salt. */
int ks_verifier_make(const uint8_t *auth, size_t auth_len, struct ks_verifier *ret, tm_err *err);

/* Whether auth is the one v was made of (*ret_ok); < 0 (a KsError in err) if v is malformed or
 * scrypt fails. */
int ks_verifier_check(const Trustme__Keystore__KsPassphraseVerifier *v, const uint8_t *auth, size_t auth_len,
                      bool *ret_ok, tm_err *err);
