/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The anchor table: named values whose integrity and freshness rest on the TPM
 * (docs/ATTESTATION.md, "Anchored state").
 *
 * Files in dir (tpmd's data dir):
 *   anchor.table.0, anchor.table.1   two slots; version N of the table is in slot N mod 2:
 *                     "trustme-anchor 1\nversion N\n" then one "<name> <hex value>\n" per entry,
 *                     sorted by name
 * The TPM: one ordinary NV index (ANCHOR_NV_INDEX, owner read/write, 40 bytes) holding the
 * table's version (8 bytes, big-endian) and the SHA-256 of the whole table file.
 *
 * An update writes version N+1 into its slot in place (that slot holds version N-1: dead) and
 * fdatasyncs it, then writes the NV index (one NV write). No temporary file, rename or directory
 * sync: a crash mid-write tears only the dead slot, and the TPM still names the other one.
 * Loading accepts the file whose SHA-256 is the one in the TPM (and whose version is the TPM's),
 * and else fails closed: a missing, older or edited table
 * is refused and nothing in it is believed. anchor.table and anchor.table.new (the names before
 * the slots) are read too, and a table found there is written into its slot and they are removed. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <tss2/tss2_esys.h>

#include "error.h"

#define ANCHOR_NV_INDEX 0x01550000u
#define ANCHOR_NAME_MAX 128
#define ANCHOR_VALUE_MAX 128 /* a token with a pending change needs 100 */
#define ANCHOR_ENTRIES_MAX 4096
#define ANCHOR_EXPECT_MAX 16 /* anchor expectations in one Measure (a start's checks) */

struct anchor_entry {
    char *name;
    uint8_t value[ANCHOR_VALUE_MAX];
    size_t len;
};

struct anchor_table {
    struct anchor_entry *e; /* sorted by name */
    size_t n;
    uint64_t version; /* 0: never written */
    bool loaded;
    /* The NV index as checked to be trustme's by the last update (anchor.c: the next update
     * reads and writes it without listing and checking it again). */
    bool nv_cached;
    ESYS_TR nv_tr;
};

/* A change: set name to value[0..len), or remove it. */
struct anchor_change {
    const char *name;
    const uint8_t *value;
    size_t len;
    bool remove;
};

/* 1..ANCHOR_NAME_MAX printable ASCII bytes without spaces. */
int anchor_check_name(const char *name, tm_err *err);

/* Load and check the table against the TPM (see the top). Errors, each with a message saying
 * what was found: -ENOENT the table is missing; -ESTALE it is older than the TPM's; -EBADMSG it
 * was edited, is malformed, or the TPM holds no anchor for an existing table; -EEXIST the NV
 * index is someone else's. t is left empty (not loaded) on failure. */
int anchor_load(ESYS_CONTEXT *esys, const char *dir, struct anchor_table *t, tm_err *err);

/* Apply all changes at once as version t->version + 1 (one NV write). On failure before the
 * NV write nothing changed; t is updated only on success. */
int anchor_update(ESYS_CONTEXT *esys, const char *dir, struct anchor_table *t, const struct anchor_change *c, size_t n,
                  tm_err *err);

/* The table file's bytes data[0..len) (no terminating NUL needed) into *ret, strictly in the
 * form the top describes; -EBADMSG with a message for anything else. anchor_load parses with
 * it after the digest check; on its own it is for tests/fuzz/fuzz_anchor_table.c. */
int anchor_parse(const char *data, size_t len, struct anchor_table *ret, tm_err *err);

const struct anchor_entry *anchor_find(const struct anchor_table *t, const char *name);

/* Whether name holds exactly value[0..len) (absent: name is not in the table). */
bool anchor_holds(const struct anchor_table *t, const char *name, const uint8_t *value, size_t len, bool absent);

void anchor_free(struct anchor_table *t);
