/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A soft token's PIN and PUK carried by a migration (token_carry.h). */
#include "token_carry.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "fileio.h"
#include "fs_err.h"
#include "token_record.h"

void token_carry_done(struct token_carry *c)
{
    secret_free(c->pin.ikm);
    secret_free(c->puk.ikm);
    *c = (struct token_carry){0};
}

int token_carry_out(const struct token_ctx *ctx, const char *uuid, const char *pin, const char *puk,
                    struct token_carry *ret, tm_err *err)
{
    struct token_paths paths;
    struct token_record rec;
    struct soft_token soft;
    _cleanup_close_ int lock_fd = -1;
    _cleanup_secret_ struct secret *kek = NULL;
    _cleanup_(token_carry_done) struct token_carry c = {0};
    *ret = (struct token_carry){0};
    if (!pin || !puk || !puk[0])
        return tm_err_set(err, EINVAL, "a carried token needs its PIN and its PUK");
    int r = token_prepare(ctx, uuid, &paths, &lock_fd, &rec, &soft, err);
    if (r < 0)
        return r;
    if (rec.type != TOKEN_SOFT)
        return tm_err_set(err, EINVAL, "only a soft token is carried by a migration");
    if (!soft.kdf_n && (r = soft_token_load(paths.soft, &soft, err)) < 0)
        return r;
    /* The PUK is checked by opening its side (the only step that answers -EACCES): a mistyped
     * PUK must not become the target's. */
    if ((r = soft_token_open(&soft, uuid, SOFT_SLOT_PUK, puk, ctx->device_secret, &kek, err)) < 0)
        return r;
    /* The PIN opened these very files in this request (the anchor check holds them). */
    c.kdf_n = soft.kdf_n;
    memcpy(c.pin.salt, soft.slot[SOFT_SLOT_PIN].salt, SOFT_SALT_LEN);
    memcpy(c.puk.salt, soft.slot[SOFT_SLOT_PUK].salt, SOFT_SALT_LEN);
    if ((r = soft_token_ikm(&soft, SOFT_SLOT_PIN, pin, &c.pin.ikm, err)) < 0 ||
        (r = soft_token_ikm(&soft, SOFT_SLOT_PUK, puk, &c.puk.ikm, err)) < 0)
        return r;
    *ret = c;
    c = (struct token_carry){0};
    return 0;
}

int token_import(const struct token_ctx *ctx, const char *uuid, const struct token_carry *carry, tm_err *err)
{
    struct token_paths paths;
    _cleanup_close_ int lock_fd = -1;
    if (!carry->pin.ikm || !carry->puk.ikm)
        return tm_err_set(err, EINVAL, "the carried token lacks its PIN or its PUK");
    int r = token_paths_init(ctx, uuid, &paths, err);
    if (r < 0 || (r = token_dir_lock(&paths, true, &lock_fd, err)) < 0)
        return r;
    /* The record goes first and comes last, as at a wipe and a pairing: interrupted, the token
     * is either the old files or none. */
    if (unlink(paths.record) < 0 && errno != ENOENT)
        return fs_err(tm_err_sys(err, "cannot remove %s", paths.record), err);
    if ((r = soft_token_erase(paths.soft_new, err)) < 0 || (r = soft_token_erase(paths.soft, err)) < 0)
        return r;
    (void)unlink(paths.tries);
    if ((r = soft_token_create_carried(paths.soft, uuid, carry->kdf_n, &carry->pin, &carry->puk, ctx->device_secret,
                                       err)) < 0)
        return r;
    struct token_record rec = {.type = TOKEN_SOFT};
    if ((r = token_record_store(paths.record, &rec, err)) < 0) {
        (void)soft_token_erase(paths.soft, NULL);
        return r;
    }
    return 0;
}
