/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Per-container secure storage (docs/SECURE_STORAGE.md).
 *
 * A store is a directory of encrypted objects plus two superblock slots. Each object version is
 * AES-256-GCM under its own key, HKDF-SHA256 from the store's key, the store id, the object id
 * and the version it was written at (those also are its associated data). The superblock lists
 * every object (id, version, size, SHA-256 of its file), carries the root hash over that list and
 * the store version, and is MACed. A commit writes new object files and the next superblock
 * slot out of place, then anchors (store version, SHA-256 of that superblock) in tpmd's anchor
 * table as entry "sstore/<store id>" (one NV write, shared by every store committed in the same
 * batch); only the anchored superblock is ever believed. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define SSTORE_ID_MAX 64 /* object ids: 1..64 printable ASCII bytes, no space */
#define SSTORE_STORE_ID_MAX 64 /* store ids (a container's UUID): same alphabet, no '/' */
#define SSTORE_OBJECT_MAX (256u * 1024) /* bytes of one object */
#define SSTORE_OBJECTS_MAX 1024
#define SSTORE_TXN_MAX 64 /* changes in one commit */
#define SSTORE_KEY_MIN 32
#define SSTORE_KEY_MAX 64
#define SSTORE_ANCHOR_PREFIX "sstore/"
#define SSTORE_TP_PREFIX "sstore-tp/"
#define SSTORE_ANCHOR_LEN 41 /* format byte, version (8, big-endian), SHA-256 of the superblock */
#define SSTORE_TP_MAX 8 /* tamper-proof objects per store (the quota) */
#define SSTORE_TP_DATA_MAX 96 /* bytes of one tamper-proof object */
#define SSTORE_TP_ID_MAX 15

/* One anchor table entry, as tpmd's AnchorRequest carries it. */
struct sstore_anchor_entry {
    char name[160];
    uint8_t value[128];
    size_t len;
    bool remove;
};

/* Where the store's anchor lives: tpmd's anchor table, reached however the host reaches tpmd
 * (trustmed's link, or sstore_anchor_tpmd_fd below). */
struct sstore_anchor_ops {
    /* The value of entry name into value[0..128), its length into *len; *found false when the
     * table has no such entry. A refused table (missing, older, edited) is an error. */
    int (*get)(void *ctx, const char *name, uint8_t value[128], size_t *len, bool *found, tm_err *err);
    /* Apply every entry as one new table version: one TPM NV write. */
    int (*set)(void *ctx, const struct sstore_anchor_entry *e, size_t n, tm_err *err);
    void *ctx;
};

/* What a host hears about refusals (it audits them as "sstore.refused" and keeps the last one in
 * the container's state). */
typedef void (*sstore_report_fn)(void *ctx, const char *store_id, int code, const char *msg);

struct sstore;
struct sstore_txn;

struct sstore_object_info {
    char id[SSTORE_ID_MAX + 1];
    uint64_t version; /* the store version that wrote it */
    uint32_t size;
};

struct sstore_status {
    uint64_t version; /* the anchored store version (0: empty, never committed) */
    uint8_t root[32]; /* root hash over the object list */
    size_t objects;
    size_t tp_objects;
    int refused; /* 0, or the negative errno of the last refusal (tamper, rollback) */
    bool uncertain; /* an anchor update failed without an answer: open the store again */
    char last_error[256];
};

/* Open (creating it empty if neither the directory's slots nor the anchor exist) the store in dir
 * with id store_id and key[0..key_len). The directory is locked for this process (EBUSY for a
 * second opener). Errors with the reason: -ESTALE the store is older than the TPM anchors
 * (rolled back); -ENOENT it is missing but anchored; -EBADMSG a superblock was edited or does
 * not match the anchor; -EACCES the key is wrong. */
int sstore_open(const char *dir, const char *store_id, const uint8_t *key, size_t key_len,
                const struct sstore_anchor_ops *anchor, sstore_report_fn report, void *report_ctx, struct sstore **ret,
                tm_err *err);
void sstore_close(struct sstore *s);

/* The object's bytes (malloc'd) after checking them against the superblock and decrypting.
 * -ENOENT no such object; -EBADMSG its file was replaced, swapped, edited or is missing. */
int sstore_read(struct sstore *s, const char *id, uint8_t **ret_data, size_t *ret_len, uint64_t *ret_version,
                tm_err *err);
/* The objects, sorted by id (malloc'd array). */
int sstore_list(struct sstore *s, struct sstore_object_info **ret, size_t *ret_n, tm_err *err);
void sstore_get_status(const struct sstore *s, struct sstore_status *ret);
/* Read and check every object (a scrub). */
int sstore_verify(struct sstore *s, tm_err *err);

/* A transaction: puts and deletes applied all or nothing by sstore_commit. */
int sstore_txn_new(struct sstore *s, struct sstore_txn **ret, tm_err *err);
/* create_only: fail with -EEXIST when the object exists. */
int sstore_txn_put(struct sstore_txn *t, const char *id, const uint8_t *data, size_t len, bool create_only,
                   tm_err *err);
/* -ENOENT when the object does not exist. */
int sstore_txn_delete(struct sstore_txn *t, const char *id, tm_err *err);
void sstore_txn_free(struct sstore_txn *t);

/* Commit t (and free it, whatever the outcome): one anchor update. */
int sstore_commit(struct sstore_txn *t, uint64_t *ret_version, tm_err *err);
/* Commit several stores' transactions (all with the same anchor ops) with one anchor update:
 * one NV write for the whole batch. All or nothing; every txn is freed. */
int sstore_commit_batch(struct sstore_txn **t, size_t n, tm_err *err);

/* Tamper-proof objects: kept in the anchor table itself (entries "sstore-tp/<store id>/<id>"),
 * so they survive a wipe of the store's directory; encrypted under a key derived from the
 * store's key; at most SSTORE_TP_MAX objects of SSTORE_TP_DATA_MAX bytes per store; ids
 * 1..SSTORE_TP_ID_MAX bytes of [A-Za-z0-9._-]. Each write or delete is one anchor update. */
int sstore_tp_write(struct sstore *s, const char *id, const uint8_t *data, size_t len, tm_err *err);
int sstore_tp_read(struct sstore *s, const char *id, uint8_t *data, size_t *len, tm_err *err);
int sstore_tp_delete(struct sstore *s, const char *id, tm_err *err);

/* The anchor entry of a store, for a host that wipes one: removing it (with the directory)
 * is the only way to start a store afresh. */
int sstore_anchor_name(const char *store_id, char name[160], tm_err *err);

/* Anchor ops over tpmd's own link (a SOCK_SEQPACKET fd speaking proto/tpmd.proto, as trustmed
 * holds it): for tools and tests that stand in for trustmed. */
void sstore_anchor_tpmd_fd(int fd, struct sstore_anchor_ops *ret);
