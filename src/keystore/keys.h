/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The keystore's keys and operations (keys.c): generation and import with an authorisation list,
 * the checks of every use against it, and the operations (begin/update/finish, one-shot).
 * Errors are tm_err with a KsError as the code. */
#pragma once

#include <stdint.h>

#include "buf.h"
#include "error.h"
#include "keystore.pb-c.h"
#include "store.h"

#define KS_MAX_OPERATIONS 16 /* concurrent operations of the container */
#define KS_MAX_KEYS 256
#define KS_IO_MAX (32u * 1024) /* input of one update, output of one answer */
/* Wrong passphrases in a row a TPM-held key takes before the service refuses it for good (the
 * vTPM's own lockout is the container's to reset: docs/KEYSTORE.md "TPM-held keys"). */
#define KS_TPM_PASSPHRASE_TRIES 3

struct ks;

struct ks *ks_new(const struct ks_store *st);
void ks_free(struct ks *ks);

/* Handle one request into resp (whose sub-messages point into memory ks keeps until the next
 * call of ks_handle or ks_reset_answer). Returns the KsError (KS_OK = 0) and fills err. */
int ks_handle(struct ks *ks, const Trustme__Keystore__KsRequest *req, Trustme__Keystore__KsResponse *resp, tm_err *err);
/* The vTPM's TPM2_Certify of the TPM-held key alias by the key at signer, with qualifying data
 * qual[32]: the key's TPMT_PUBLIC, the TPMS_ATTEST and the TPMT_SIGNATURE (marshalled) into the
 * buffers. 1 and nothing filled when the key is not TPM-held, or needs a passphrase (which an
 * attestation request does not carry: the vTPM wants the key's authorisation to certify it). */
int ks_certify_tpm_key(struct ks *ks, const char *alias, uint32_t signer, const uint8_t qual[32], tm_buf *ret_public,
                       tm_buf *ret_attest, tm_buf *ret_sig, tm_err *err);
/* Wipe and free what the last answer held. */
void ks_reset_answer(struct ks *ks);
/* Operations begun by a connection that went away. */
void ks_abort_owned(struct ks *ks, const void *owner);
void ks_set_owner(struct ks *ks, const void *owner);
