/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A GuestOS name's TPM-anchored state (docs/GUESTOS.md "Versions and vendors"): the anchor
 * entry "guestos/<name>" of tpmd's anchor table holds the highest version installed and the
 * GuestOS Signing CA that owns the name, bound together so that neither can be rolled back or
 * swapped by file operations. One entry per name: no name shares anti-rollback state with
 * another.
 *
 * Owner: the CA device.json binds to the name (trust.guestos_owners), else the one its first
 * signed install passed through (while the anchor lags the store, the store's record of it). A
 * vendor's registered CA signs its own names only. */
#pragma once

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>

#include "daemon.h"

#define GUESTOS_ANCHOR_NAME_MAX (8 + CONFIG_NAME_MAX)

struct guestos_anchor {
    uint64_t version; /* 0: nothing anchored */
    char owner[65]; /* SHA-256 (hex) of the owning CA; "" for none */
};

void guestos_anchor_name(const char *name, char out[GUESTOS_ANCHOR_NAME_MAX + 1]);
/* value NULL (no entry): version 0, no owner. */
int guestos_anchor_parse(const ProtobufCBinaryData *value, struct guestos_anchor *ret, tm_err *err);
/* 40 bytes: version (big-endian 64 bits) || owner's SHA-256 (zeros: none). */
#define GUESTOS_ANCHOR_VALUE_LEN 40
void guestos_anchor_encode(const struct guestos_anchor *a, uint8_t out[GUESTOS_ANCHOR_VALUE_LEN]);
/* The CA that may sign name now: ret "" when any registered one may; *ret_bound: by device.json. */
void guestos_owner_want(struct daemon *d, const char *name, const struct guestos_anchor *a, char ret[65],
                        bool *ret_bound);
