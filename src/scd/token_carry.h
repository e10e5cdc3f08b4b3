/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A soft token as a migration carries it (docs/MIGRATION.md "The token"). Its file cannot move:
 * every slot key is HKDF(scrypt(secret, salt), salt = the device secret), and the target has
 * another device secret. What moves is the part before the device secret, for the PIN and the
 * PUK: the salts, scrypt's N and the two scrypt outputs. The target builds a new token file (a
 * new KEK) from them under its own secret, so the owner's PIN and PUK open it there unchanged.
 * These values are as good as the PIN and PUK against scrypt: they leave scd only sealed. */
#pragma once

#include <stdint.h>

#include "error.h"
#include "token.h"
#include "token_soft.h"

struct token_carry {
    uint64_t kdf_n;
    struct soft_carried_slot pin, puk;
};

void token_carry_done(struct token_carry *c);

/* The token of uuid as a migration carries it, right after this request opened it with pin (its
 * files checked against ctx->anchor again). The PUK is checked too: -EACCES "wrong PUK" (the
 * caller counts it, as trustmed counts every PUK try). Soft tokens only. */
int token_carry_out(const struct token_ctx *ctx, const char *uuid, const char *pin, const char *puk,
                    struct token_carry *ret, tm_err *err);

/* A new soft token for uuid from a carried one, replacing whatever token files uuid has (the
 * caller asks only while no container of uuid is installed; leftovers of an import killed before
 * its install are replaced). */
int token_import(const struct token_ctx *ctx, const char *uuid, const struct token_carry *carry, tm_err *err);
