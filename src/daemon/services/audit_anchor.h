/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The audit log's head anchored in the TPM (audit_anchor.c, docs/AUDIT.md). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "crypto.h"
#include "service.h"

/* Registered by main.c: reads the anchored head when tpmd's table is readable, then anchors the
 * log's head every 2 s while records are appended. */
extern const struct service_events audit_anchor_events;

/* The head the TPM holds (as far as this trustmed knows): false before it was read. *problem:
 * NULL, or what the check at start found (the anchored record missing or different). */
bool audit_anchor_head(uint64_t *ret_seq, char hash[TM_SHA256_HEX_LEN + 1], const char **ret_problem);
