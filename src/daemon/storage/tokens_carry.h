/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A soft token's PIN, PUK and lockout counts as a migration carries them (docs/MIGRATION.md "The
 * token"): the export's source unwraps the data key with the PIN and has scd check the PUK and
 * give the token's carried form; the target's scd builds a new token from it under its own device
 * secret, and the carried counts are anchored for it in the target's TPM (tokens_carry.c). */
#pragma once

#include <protobuf-c/protobuf-c.h>
#include <stdint.h>

#include "daemon.h"
#include "error.h"
#include "secmem.h"
#include "tpmd_client.h"

#define TOKENS_CARRY_SALT_LEN 16
#define TOKENS_CARRY_IKM_LEN 32
#define TOKENS_ANCHOR_LEN 35 /* the token's anchor entry, format 1 (tokens.c) */

struct tokens_carried {
    uint8_t pin_failures, puk_failures; /* as anchored in the source's TPM after the export's try */
    uint64_t kdf_n;
    uint8_t pin_salt[TOKENS_CARRY_SALT_LEN], puk_salt[TOKENS_CARRY_SALT_LEN];
    struct secret *ikm; /* scrypt(PIN) then scrypt(PUK), 2 * TOKENS_CARRY_IKM_LEN, locked */
};

void tokens_carried_done(struct tokens_carried *t);

/* The data key for an export, as tokens_get_key gives it, and the token as a migration carries
 * it: the PUK is checked by scd and counted in the TPM as every PUK try (with the PIN's try, in
 * the same NV write). A right PUK resets no count; a wrong one costs a PUK try (a wrong PIN: a
 * PIN try only). done owns key and *carried (NULL with err). */
typedef void (*token_carry_fn)(struct container *c, struct secret *key, struct tokens_carried *carried,
                               const tm_err *err);
int tokens_get_key_carried(struct container *c, const ProtobufCBinaryData *pin, const ProtobufCBinaryData *puk,
                           token_carry_fn done, tm_err *err);

/* The target's side: scd builds the token of uuid from t (replacing any token files of uuid), then
 * done gets the anchor entry for it, with the carried counts and the new files' digest; the
 * caller writes it into the anchor table (with the migration's other carried entries, in one NV
 * write) before the container is installed. name and value: storage for the entry. */
typedef void (*token_import_fn)(struct daemon *d, const struct tpmd_anchor_entry *entry, const tm_err *err,
                                void *userdata);
struct tokens_import_entry {
    char name[64];
    uint8_t value[TOKENS_ANCHOR_LEN];
    struct tpmd_anchor_entry entry;
};
int tokens_import(struct daemon *d, const char *uuid, const struct tokens_carried *t, struct tokens_import_entry *out,
                  token_import_fn done, void *userdata, tm_err *err);

/* A container was installed with an imported token: what scd and the TPM hold is asked again. */
void tokens_imported(struct container *c);

/* The anchor table's entry name and format 1 value of a token (tokens.c). */
void tokens_anchor_name(const char *uuid, char out[64]);
void tokens_anchor_value(uint8_t pin_failures, uint8_t puk_failures, const uint8_t files[32],
                         uint8_t out[TOKENS_ANCHOR_LEN]);
