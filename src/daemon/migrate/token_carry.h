/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The bundle's token part (docs/MIGRATION.md "The token"): the soft token's PIN and PUK in their
 * carried form (storage/tokens_carry.h) and the lockout counts of the source's TPM, encrypted
 * with AES-256-GCM under a key derived from the data key (which travels only sealed under K).
 * Like every part it is named in the manifest with its size and SHA-256, so the GCM tag over the
 * manifest authenticates it twice over. */
#pragma once

#include <stdbool.h>

#include "bundle.h"
#include "error.h"
#include "secmem.h"
#include "tokens_carry.h"

#define TOKEN_CARRY_PART "token.carried"

/* Add the token part for t to h, in a memory file (*ret_fd: the caller closes it after the
 * bundle is written). */
int token_carry_add(struct bundle_header *h, const char *uuid, const struct secret *data_key,
                    const struct tokens_carried *t, int *ret_fd, tm_err *err);
/* The token part of b, read again and checked against the manifest, opened with the data key.
 * A bundle without one is refused (the target would pair a fresh token: a lockout reset). */
int token_carry_read(const struct bundle_in *b, const struct secret *data_key, struct tokens_carried **ret,
                     tm_err *err);
static inline bool token_carry_is_part(const char *name)
{
    return __builtin_strcmp(name, TOKEN_CARRY_PART) == 0;
}
