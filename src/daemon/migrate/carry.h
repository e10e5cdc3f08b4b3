/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What a migration carries beyond the config and the data image (docs/MIGRATION.md "Carried
 * keys"): the vTPM's encrypted state and its records, the keystore's key blobs, key index and
 * secure store, their TPM anchor values, and the keystore keys (sealed with the data key). */
#pragma once

#include <limits.h>

#include "bundle.h"
#include "daemon.h"
#include "error.h"
#include "tpmd_client.h"

#define CARRY_ANCHORS 3
#define CARRY_ANCHOR_NAME_MAX 96
/* The entries an import writes: the three above, the tamper-proof index and its objects. */
#define CARRY_ENTRIES_MAX (CARRY_ANCHORS + 1 + BUNDLE_TP_MAX)

/* The anchor table names of uuid's carried state, in the kinds' order (bundle.h): "vtpm/<uuid>",
 * "sstore/<uuid>", "sstore/<uuid>.keys". Returns how many (CARRY_ANCHORS). */
size_t carry_anchor_names(const char *uuid, char names[CARRY_ANCHORS][CARRY_ANCHOR_NAME_MAX],
                          const char *kinds[CARRY_ANCHORS]);
/* The tamper-proof index's name, "sstore-tp/<uuid>" (docs/SECURE_STORAGE.md). */
void carry_tp_index_name(const char *uuid, char out[CARRY_ANCHOR_NAME_MAX]);
/* The names of the objects the index value v lists ("sstore-tp/<uuid>/<id>"): how many, or
 * -errno (a malformed index, or more than the quota). */
int carry_tp_names(const char *uuid, const ProtobufCBinaryData *v, char names[BUNDLE_TP_MAX][CARRY_ANCHOR_NAME_MAX],
                   tm_err *err);
/* Add c's vTPM and keystore files to h's parts (srcs holds the keystore files' paths, which are
 * outside the container's dir) and the anchor values in resp (tpmd's answer for
 * carry_anchor_names, with a keystore also for the tamper-proof index and its objects) to h's
 * anchors and tamper-proof objects. The vTPM state must be the one its anchor names. */
int carry_add(const struct container *c, const Trustme__Tpmd__Response *resp, struct bundle_header *h,
              char (*srcs)[PATH_MAX], size_t nsrcs, tm_err *err);
/* The entries the target writes into its anchor table for h's anchors and tamper-proof objects
 * (names: storage for them; ret: room for CARRY_ENTRIES_MAX); the manifest's UUID must be a UUID
 * (it names the entries). Returns how many, or -errno. */
int carry_anchor_entries(const struct bundle_header *h, char names[CARRY_ENTRIES_MAX][CARRY_ANCHOR_NAME_MAX],
                         struct tpmd_anchor_entry *ret, tm_err *err);
