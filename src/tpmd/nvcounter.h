/* Anti-rollback counters: one TPM NV counter per GuestOS name holding the highest version
 * installed (docs/ATTESTATION.md, "Anti-rollback counters"). Owner auth is empty (swtpm's
 * default).
 *
 * ESYS keeps one ESYS_TR per TPM handle and these functions close the one for the counter's
 * index when they return: a caller must not hold an ESYS_TR for such an index across a call.
 * Each increment is one TPM command and one NV write (about 0.6 ms on swtpm, more on a
 * hardware TPM, which also rate-limits NV writes): a raise by many versions is slow. */
#pragma once

#include <stdint.h>
#include <tss2/tss2_esys.h>

#include "error.h"

/* The most one raise may count up: a TPM counter only increments by one. */
#define NVCOUNTER_MAX_STEP 65536

/* 0x01540000 | the first 16 bits (big-endian) of SHA-256("trustme-guestos:" || name). */
uint32_t nvcounter_index(const char *name);

/* The counter's value; 0 if it is not defined or never incremented. -EEXIST: the index exists
 * with other attributes or size than a trustme counter (someone else's). */
int nvcounter_read(ESYS_CONTEXT *esys, const char *name, uint64_t *ret_value, tm_err *err);

/* Count up to value (defining the counter if needed) and return the new value.
 * -ESTALE: the counter is already above value (nothing changed, unless the counter had never
 * been incremented: see nvcounter.c on start values); -E2BIG: value is more than
 * NVCOUNTER_MAX_STEP above the counter (nothing changed); -EEXIST: someone else's index. */
int nvcounter_raise(ESYS_CONTEXT *esys, const char *name, uint64_t value, uint64_t *ret_value,
                    tm_err *err);
