/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The device storage secret: 32 bytes sealed under the SRK to the boot PCR, with a recovery key
 * for authorised updates (docs/ATTESTATION.md, "Keys bound to the device state").
 *
 * Files in dir (tpmd's data dir):
 *   secret.blob   TPM2B_PUBLIC, TPM2B_PRIVATE, TPM2B_DIGEST (the PCR branch of the policy), each
 *                 TPM-marshalled; replaced atomically
 *   recovery-key  the object's authValue, 64 hex digits and a newline, mode 0400; written before
 *                 secret.blob, so a sealed secret never exists without its recovery key
 *
 * Every transient object and session these functions create is flushed before they return, on
 * every path: there is no resource manager. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <tss2/tss2_esys.h>

#include "error.h"
#include "secmem.h"

#define SEALED_SECRET_LEN 32
#define RECOVERY_KEY_LEN 32

/* Unseal the device storage secret, or create and seal it if secret.blob does not exist (then
 * *ret_created is true and ret_recovery_path, if non-NULL, names the recovery key file; else it
 * is set to ""). srk: the loaded storage primary; boot_pcr: the SHA-256 PCR the secret is sealed
 * to. -EACCES: the PCR differs from its value when sealed (err says so and how to recover);
 * -EBADMSG: secret.blob is corrupt or does not belong to this TPM. Outputs are written only on
 * success. */
int sealed_secret_get(ESYS_CONTEXT *esys, ESYS_TR srk, const char *dir, uint32_t boot_pcr, struct secret **ret_secret,
                      bool *ret_created, char *ret_recovery_path, size_t pathlen, tm_err *err);

/* After an authorised update: unseal with the recovery key (RECOVERY_KEY_LEN bytes, raw) and seal
 * the same secret, with the same recovery key, to the boot PCR's current value. -EACCES "wrong
 * recovery key" leaves everything as it was. */
int sealed_secret_reseal(ESYS_CONTEXT *esys, ESYS_TR srk, const char *dir, uint32_t boot_pcr,
                         const struct secret *recovery_key, struct secret **ret_secret, tm_err *err);

/* Whether dir holds a sealed secret (secret.blob exists). */
bool sealed_secret_exists(const char *dir);
