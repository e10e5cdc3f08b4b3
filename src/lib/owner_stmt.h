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
#include "measurement.h"

#define OWNER_STMT_MAX 16384
#define OWNER_KEY_MAX 160
#define OWNER_REFS_MAX 128

/* The third kind, the owner's reference values for its container: "trustme-vtpm-refs-v1",
 * container, ek, then one "value TYPE SHA256-HEX" line per approved measurement, and the
 * signature, checked with the recorded owner's key. */
enum owner_stmt_type { OWNER_STMT_OWNER, OWNER_STMT_RELEASE, OWNER_STMT_REFS };

struct owner_ref {
    char type[TM_EVENT_TYPE_MAX + 1];
    uint8_t sha256[32];
};

struct owner_stmt {
    enum owner_stmt_type type;
    char container[37];
    uint8_t ek[34];
    bool mandatory; /* owner statements */
    uint8_t key[OWNER_KEY_MAX]; /* owner statements: the owner's SubjectPublicKeyInfo (DER) */
    size_t key_len;
    struct owner_ref refs[OWNER_REFS_MAX]; /* reference values */
    size_t nrefs;
};

/* Parse strictly and verify the signature: an owner statement with its own key, a release or
 * reference values with key (the owner's, from its owner statement). -EBADMSG malformed, -EKEYREJECTED a signature
 * that does not verify; err says which. */
int owner_stmt_parse(const char *text, size_t len, const uint8_t *key, size_t key_len, struct owner_stmt *ret,
                     tm_err *err);

/* Write and sign one (s->key ignored for a release) with the PEM private key at key_path:
 * *ret is malloc'ed text. */
int owner_stmt_sign(const struct owner_stmt *s, const char *key_path, char **ret, size_t *ret_len, tm_err *err);
