/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A container's keystore moved by a migration (docs/MIGRATION.md "Carried keys"). The keystore
 * key and the secure storage's seed derive from the source device's keystore root, which never
 * leaves that device; the migration carries the two derived values (64 bytes), and the target
 * keeps them in <container dir>/migrated.kskeys, sealed with AES-256-GCM under
 * HKDF-SHA256(this device's keystore root, salt = the container's token part, "trustme migrated
 * keystore keys v1|" + UUID): only this device, in its measured state, with the container's PIN
 * opens them, as on the source. The key blobs, key index and secure store arrive in
 * <container dir>/keystore/ and move to <data>/keystore/<uuid>/ at the first start. */
#pragma once

#include <stdint.h>
#include <sys/types.h>

#include "daemon.h"
#include "error.h"
#include "secmem.h"

#define KEYSTORE_MIGRATED_FILE "migrated.kskeys"
#define KEYSTORE_MIGRATED_DIR "keystore" /* in the container's data dir, until the first start */
#define KEYSTORE_CARRIED_LEN 64 /* keystore key (32), storage seed (32) */

/* The keystore key and the storage seed of c, whose data key is data_key, as this device derives
 * them (also for a container that was carried here: then the carried ones). */
int keystore_carried_keys(struct container *c, const struct secret *data_key, uint8_t out[KEYSTORE_CARRIED_LEN],
                          tm_err *err);
/* Seal keys into dir/migrated.kskeys (dir: the container's data dir or its staging dir). */
int keystore_migrated_store(struct daemon *d, const char *dir, const char *uuid, const struct secret *data_key,
                            const uint8_t keys[KEYSTORE_CARRIED_LEN], tm_err *err);
/* -ENOENT when there is none. token_part: HKDF of the data key (keystore_svc.c). */
int keystore_migrated_load(struct daemon *d, const char *dir, const char *uuid, const uint8_t token_part[32],
                           uint8_t out[KEYSTORE_CARRIED_LEN], tm_err *err);
void keystore_migrated_remove(const char *dir);
/* Move <container dir>/keystore (a carried keystore) to <data>/keystore/<uuid>, owned by uid:gid
 * (the keystore service's). 0 when there is none. Crash-safe: the tree is re-owned in place, the
 * old directory removed, then the carried one renamed in; a repeat finishes what was left. */
int keystore_migrated_adopt(struct container *c, uid_t uid, gid_t gid, tm_err *err);
