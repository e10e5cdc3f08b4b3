/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A vTPM owner's signed statements (docs/VTPM.md "Mandatory and discretionary owners"): the
 * owner statement names the container, its vTPM's ECC EK and the kind of owner, with the owner's
 * public key (ECDSA P-256), signed by that key; the release statement names the container and the
 * EK, signed by the owner, and lets the device owner reset a mandatory owner's vTPM. Both are
 * text, one "key value" per line, the signature last over every byte before it:
 *
 *   trustme-vtpm-owner-v1          trustme-vtpm-release-v1
 *   container UUID                 container UUID
 *   ek 000b...(68 hex)             ek 000b...
 *   kind mandatory|discretionary   signature HEX(DER ECDSA-SHA256)
 *   key HEX(DER SubjectPublicKeyInfo)
 *   signature HEX(DER ECDSA-SHA256)
 *
 * A release names the EK, which a reset replaces: it is good for one reset. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define OWNER_STMT_MAX 4096
#define OWNER_KEY_MAX 160

enum owner_stmt_type { OWNER_STMT_OWNER, OWNER_STMT_RELEASE };

struct owner_stmt {
    enum owner_stmt_type type;
    char container[37];
    uint8_t ek[34];
    bool mandatory; /* owner statements */
    uint8_t key[OWNER_KEY_MAX]; /* owner statements: the owner's SubjectPublicKeyInfo (DER) */
    size_t key_len;
};

/* Parse strictly and verify the signature: an owner statement with its own key, a release with
 * key (the owner's, from its owner statement). -EBADMSG malformed, -EKEYREJECTED a signature
 * that does not verify; err says which. */
int owner_stmt_parse(const char *text, size_t len, const uint8_t *key, size_t key_len, struct owner_stmt *ret,
                     tm_err *err);

/* Write and sign one (s->key ignored for a release) with the PEM private key at key_path:
 * *ret is malloc'ed text. */
int owner_stmt_sign(const struct owner_stmt *s, const char *key_path, char **ret, size_t *ret_len, tm_err *err);
