/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The store's insides, shared by its files (not for callers). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "secmem.h"
#include "sstore.h"

/* Offsets into struct sstore.keys */
#define KEY_SB 0 /* HMAC key of the superblocks */
#define KEY_NAME 32 /* HMAC key of object file names */
#define KEY_TP 64 /* AES-256-GCM key of the tamper-proof objects */
#define KEY_STORE 96 /* the store key as given (key_len bytes) */

struct sstore_entry {
    char id[SSTORE_ID_MAX + 1];
    uint64_t version;
    uint32_t size;
    uint8_t sha[32]; /* of the object's ciphertext (its file, or inline) */
    const uint8_t *data; /* an inline object's ciphertext (in the superblock's bytes), else NULL */
    /* A big object's file: slot 0 or 1 (obj/<name>-s0, -s1, overwritten in place in turn), or
     * -1: obj/<name>-<version>, a file of its own per version (stores from before the slots). */
    int slot;
};

struct sstore {
    char *dir;
    char store_id[SSTORE_STORE_ID_MAX + 1];
    char anchor_name[160];
    int lock_fd;
    struct secret *keys;
    size_t key_len;
    struct sstore_anchor_ops anchor;
    sstore_report_fn report;
    void *report_ctx;
    struct sstore_entry *e; /* sorted by id */
    size_t n;
    uint64_t version; /* anchored */
    int slot;
    uint8_t root[32], sb_sha[32];
    uint8_t *sb_buf; /* the current superblock's bytes: the inline objects */
    bool uncertain; /* an anchor update failed: reopen */
    char tp_ids[SSTORE_TP_MAX][SSTORE_TP_ID_MAX + 1];
    size_t tp_n;
    int refused;
    char last_error[256];
};

int sstore_check_id(const char *id, tm_err *err);
/* Read the tamper-proof index (sstore_tp.c) at open. */
int tp_load_index(struct sstore *s, tm_err *err);

static inline void sstore_closep(struct sstore **s)
{
    sstore_close(*s);
}
