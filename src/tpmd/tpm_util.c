/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "tpm_util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <tss2/tss2_rc.h>

static bool lost;

/* The link to the TPM broke: a TCTI error (the swtpm died, the device went away) or ESAPI
 * reporting one. ESAPI then answers every later call with "Function called in the wrong order";
 * nothing but a new context helps. */
static bool breaks_connection(TSS2_RC rc)
{
    TSS2_RC layer = rc & TSS2_RC_LAYER_MASK, base = rc & 0xffff;
    if (layer == TSS2_TCTI_RC_LAYER)
        return true;
    return (layer == TSS2_ESAPI_RC_LAYER || layer == TSS2_SYS_RC_LAYER) &&
           (base == TSS2_BASE_RC_BAD_SEQUENCE || base == TSS2_BASE_RC_IO_ERROR || base == TSS2_BASE_RC_NO_CONNECTION ||
            base == TSS2_BASE_RC_MALFORMED_RESPONSE || base == TSS2_BASE_RC_INSUFFICIENT_RESPONSE);
}

bool tpm_connection_lost(void)
{
    return lost;
}

static int rc_errno(TSS2_RC rc)
{
    if (breaks_connection(rc)) {
        lost = true;
        return ENOTCONN;
    }
    /* Format-one codes carry a parameter/handle/session number in bits 8..11: strip it. */
    if (rc & TSS2_RC_LAYER_MASK)
        return EIO; /* an error of the TSS itself (ESYS, TCTI), not of the TPM */
    TSS2_RC base = rc & 0xffff;
    if (base & TPM2_RC_FMT1)
        base = (base & 0xbf) | TPM2_RC_FMT1;
    switch (base) {
    case TPM2_RC_POLICY_FAIL:
    case TPM2_RC_AUTH_FAIL:
    case TPM2_RC_BAD_AUTH:
    case TPM2_RC_PCR_CHANGED: return EACCES;
    case TPM2_RC_HANDLE:
    case TPM2_RC_REFERENCE_H0:
    case TPM2_RC_NV_UNINITIALIZED: return ENOENT;
    case TPM2_RC_NV_SPACE:
    case TPM2_RC_OBJECT_MEMORY:
    case TPM2_RC_SESSION_MEMORY: return ENOSPC;
    case TPM2_RC_NV_DEFINED: return EEXIST;
    default: return EIO;
    }
}

int tpm_err(tm_err *err, TSS2_RC rc, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return tm_err_set(err, rc_errno(rc), "%s: %s (0x%x)", what, Tss2_RC_Decode(rc), (unsigned)rc);
}

void tpm_flush(ESYS_CONTEXT *esys, ESYS_TR *handle)
{
    if (*handle != ESYS_TR_NONE && esys)
        (void)Esys_FlushContext(esys, *handle);
    *handle = ESYS_TR_NONE;
}
