/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The data key a migration carried, until the first start after pairing wraps it with the new
 * token (tokens_migrated.c, docs/MIGRATION.md). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon.h"
#include "error.h"
#include "secmem.h"

#define TOKENS_MIGRATED_FILE "migrated.key"
#define TOKENS_MIGRATED_KEY_LEN 64
/* The source's uid base of a migrated container's volume, until its first start has moved the
 * files' owners into this device's range (modules/volume.c). */
#define TOKENS_MIGRATED_UID_FILE "migrated.uidbase"

/* Seal key into dir/migrated.key (dir: the container's data dir, or its staging dir). */
int tokens_migrated_store(struct daemon *d, const char *dir, const char *uuid, const struct secret *key, tm_err *err);
/* -ENOENT when there is none. */
int tokens_migrated_load(struct daemon *d, const char *dir, const char *uuid, struct secret **ret, tm_err *err);
void tokens_migrated_remove(const char *dir);
/* AES-256-GCM of len bytes with aad (a C string) as associated data; false when it fails (open:
 * the tag does not match). For the carried keys' files and the bundle's token part. */
bool tokens_migrated_gcm(bool enc, const uint8_t key[32], const uint8_t iv[12], const char *aad, const uint8_t *in,
                         size_t len, uint8_t *out, uint8_t tag[16]);
