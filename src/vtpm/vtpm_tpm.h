/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The TPM itself: libtpms, hosted in trustme-vtpm (docs/VTPM.md "Who hosts it"). Its NVRAM
 * ("permall") is kept encrypted under the vTPM's state key and handed to vtpm_state.c after every
 * change, so what reaches the state file is ciphertext and is committed before the response of
 * the command that changed it leaves. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The state file's format: this magic, a 12-byte nonce, libtpms's permanent state encrypted with
 * AES-256-GCM under the state key (the magic as additional data), the 16-byte tag. */
#define VTPM_STATE_MAGIC "TMVTPM1\n"
#define VTPM_STATE_MAGIC_LEN 8
#define VTPM_KEY_LEN 32

struct secret;

/* Decrypt state (len 0: a new TPM, manufactured by libtpms now) under key (VTPM_KEY_LEN bytes in
 * locked memory, secmem.h; taken over: freed at vtpm_tpm_stop), start libtpms as a TPM 2.0 and
 * run TPM2_Startup(CLEAR), as the platform does at power-on. The state in the clear stays in
 * locked memory too. -EBADMSG: the state is not this key's (or not this format: `why` says
 * which). */
int vtpm_tpm_start(struct secret *key, const uint8_t *state, size_t len, const char **why);

/* One command (at most VTPM_MAX_COMMAND bytes) and its response, into rsp (as large). */
int vtpm_tpm_process(const uint8_t *cmd, size_t len, uint8_t *rsp, size_t *rsp_len);

/* After the start, before the seccomp filter: the set-up of libraries the TPM's commands will need
 * (kept off the start's path: the vTPM is ready before this). */
void vtpm_tpm_prepare(void);

/* The TPM's "established" flag (the control channel's CMD_GET_TPMESTABLISHED). */
uint8_t vtpm_tpm_established(void);

/* Power-down: TPM2_Shutdown(CLEAR) (an orderly one: what it writes is committed like any
 * command's) when orderly, then libtpms's end; the key and the state in the clear are wiped. */
void vtpm_tpm_stop(bool orderly);
