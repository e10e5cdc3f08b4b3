/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Small helpers every part of trustme-tpmd that calls ESAPI shares. */
#pragma once

#include <stdbool.h>
#include <tss2/tss2_esys.h>

#include "error.h"

/* Fill err with "<what>: <Tss2_RC_Decode(rc)> (0x...)" and return a negative errno chosen from
 * the response code: -EACCES for a failed policy or authorization, -ENOENT for a handle or NV
 * index that does not exist, -ENOSPC when the TPM is out of object or NV memory, -ENOTCONN when
 * the connection to the TPM broke (then tpm_connection_lost() is true from now on), -EIO else. */
int tpm_err(tm_err *err, TSS2_RC rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Flush a transient object or session handle if it is one, and set it to ESYS_TR_NONE.
 * For _cleanup_(tpm_flushp) on ESYS_TR variables; needs the context, so it is a helper called
 * explicitly: tpm_flush(esys, &handle). */
void tpm_flush(ESYS_CONTEXT *esys, ESYS_TR *handle);

/* A tpm_err() saw the connection to the TPM break. tpmd then exits with an error after the
 * answer to the request at hand, and trustmed starts a new one: a wedged ESAPI context answers
 * nothing ever again. */
bool tpm_connection_lost(void);
