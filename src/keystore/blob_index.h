/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The key blobs' generations (docs/KEYSTORE.md "Key blobs at rest"): a secure store of its own
 * (src/sstore, store id "<uuid>.keys", anchored in tpmd's table as "sstore/<uuid>.keys") that
 * holds, for every key of the container, the SHA-256 of its current blob file. A blob file
 * that is not the one the index names (an older copy restored by root on the device: a spent
 * usage count, a deleted key) is refused; so is every key while the index itself does not open
 * (rolled back, edited, removed while anchored).
 *
 * The index is not the container's secure store: the container cannot read or write it through
 * the socket, so it cannot put back an index entry it saw earlier. Errors are tm_err with a
 * KsError as the code. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "secmem.h"
#include "sstore.h"

#define KS_INDEX_KEY_INFO "trustme keystore blob index v1"
#define KS_INDEX_SUFFIX ".keys"

struct ks_index;

/* keystore_key: the container's keystore key (the index key is derived from it, so the index
 * needs the token as the blobs do); dir: the index store's directory; anchor: tpmd's table as the host reaches it; report: told about every refusal
 * (trustmed audits it). */
int ks_index_new(const struct secret *keystore_key, const char *uuid, const char *dir,
                 const struct sstore_anchor_ops *anchor, sstore_report_fn report, void *report_ctx,
                 struct ks_index **ret, tm_err *err);
void ks_index_free(struct ks_index *ix);

/* The SHA-256 the index holds for alias (*found false when it holds none). */
int ks_index_lookup(struct ks_index *ix, const char *alias, uint8_t sha[32], bool *found, tm_err *err);
/* Set (sha) or remove (sha NULL; no entry is no error) alias's entry: one anchored commit. */
int ks_index_set(struct ks_index *ix, const char *alias, const uint8_t *sha, tm_err *err);
/* Tell the host about a refused blob (trustmed audits it as sstore.refused). */
void ks_index_report(struct ks_index *ix, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Call fn for every alias in the index. */
int ks_index_each(struct ks_index *ix, void (*fn)(const char *alias, void *ud), void *ud, tm_err *err);
