/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The target's side of a carried soft token (tokens_carry.h); the source's is the export's key
 * request in tokens.c. */
#include "tokens_carry.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "scd_client.h"

void tokens_carried_done(struct tokens_carried *t)
{
    if (!t)
        return;
    secret_free(t->ikm);
    free(t);
}

struct import_op {
    char uuid[40];
    uint8_t pin_failures, puk_failures;
    struct tokens_import_entry *out;
    token_import_fn done;
    void *userdata;
};

static void on_imported(struct daemon *d, const Trustme__Scd__Response *resp, const tm_err *err, void *userdata)
{
    struct import_op *op = userdata;
    tm_err e = {0};
    if (!err && (resp->body_case != TRUSTME__SCD__RESPONSE__BODY_OK || !resp->token || !resp->token->paired ||
                 !resp->token->has_files_sha256 || resp->token->files_sha256.len != 32))
        err = &e, tm_err_set(&e, EPROTO, "the token service did not say what the new token's files are");
    if (err) {
        op->done(d, NULL, err, op->userdata);
        free(op);
        return;
    }
    struct tokens_import_entry *o = op->out;
    tokens_anchor_name(op->uuid, o->name);
    tokens_anchor_value(op->pin_failures, op->puk_failures, resp->token->files_sha256.data, o->value);
    o->entry = (struct tpmd_anchor_entry){.name = o->name, .value = o->value, .len = sizeof(o->value)};
    op->done(d, &o->entry, NULL, op->userdata);
    free(op);
}

int tokens_import(struct daemon *d, const char *uuid, const struct tokens_carried *t, struct tokens_import_entry *out,
                  token_import_fn done, void *userdata, tm_err *err)
{
    if (!t->ikm || t->ikm->len != 2 * TOKENS_CARRY_IKM_LEN)
        return tm_err_set(err, EINVAL, "the carried token is incomplete");
    struct import_op *op = calloc(1, sizeof(*op));
    if (!op)
        return tm_err_set(err, ENOMEM, "out of memory");
    snprintf(op->uuid, sizeof(op->uuid), "%s", uuid);
    op->pin_failures = t->pin_failures;
    op->puk_failures = t->puk_failures;
    op->out = out;
    op->done = done;
    op->userdata = userdata;
    Trustme__Scd__TokenCarry tc = TRUSTME__SCD__TOKEN_CARRY__INIT;
    tc.has_kdf_n = tc.has_pin_salt = tc.has_pin_ikm = tc.has_puk_salt = tc.has_puk_ikm = true;
    tc.kdf_n = t->kdf_n;
    tc.pin_salt = (ProtobufCBinaryData){.len = TOKENS_CARRY_SALT_LEN, .data = (uint8_t *)t->pin_salt};
    tc.puk_salt = (ProtobufCBinaryData){.len = TOKENS_CARRY_SALT_LEN, .data = (uint8_t *)t->puk_salt};
    tc.pin_ikm = (ProtobufCBinaryData){.len = TOKENS_CARRY_IKM_LEN, .data = t->ikm->data};
    tc.puk_ikm = (ProtobufCBinaryData){.len = TOKENS_CARRY_IKM_LEN, .data = t->ikm->data + TOKENS_CARRY_IKM_LEN};
    Trustme__Scd__TokenImport ti = TRUSTME__SCD__TOKEN_IMPORT__INIT;
    ti.uuid = op->uuid;
    ti.carry = &tc;
    Trustme__Scd__Request req = TRUSTME__SCD__REQUEST__INIT;
    req.body_case = TRUSTME__SCD__REQUEST__BODY_TOKEN_IMPORT;
    req.token_import = &ti;
    int r = scd_call(d, &req, on_imported, op, err);
    if (r < 0)
        free(op);
    return r;
}
