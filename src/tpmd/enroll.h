/* Installing what the Device CA issued (docs/ATTESTATION.md "Enrollment"). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "tpm.h"

/* pem: what `trustme device cert install` sent. Plain CERTIFICATE blocks are passed on as they
 * are. The Device CA's encrypted certificate (ENROLL_PEM_CREDENTIAL, _SECRET, _CERT: each once)
 * is decrypted with the credential TPM2_ActivateCredential recovers in this TPM with its EK and
 * AK; its certificate comes first in *ret. *ret: PEM certificates only, malloc'ed. */
int enroll_unwrap(struct tpm *t, const uint8_t *pem, size_t len, char **ret, size_t *ret_len,
                  bool *ret_activated, tm_err *err);
