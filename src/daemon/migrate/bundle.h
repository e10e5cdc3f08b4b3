/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The migration bundle file (docs/MIGRATION.md "Bundle"): a manifest naming every part with its
 * size and SHA-256, the bundle key K wrapped with RSA-OAEP to the target's TPM-held migration
 * key, the container's keys sealed with AES-256-GCM under K with the manifest as associated
 * data, then the parts. The GCM tag therefore authenticates every part (through its digest),
 * the offer id and the target's AK name. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "secmem.h"

#define BUNDLE_MAGIC "TMMIGv2\n" /* v2: the source's signature follows the parts (source_auth.h) */
#define BUNDLE_MAGIC_V1 "TMMIGv1\n"
#define BUNDLE_ID_LEN 32 /* hex digits, as offer ids */
#define BUNDLE_PARTS_MAX 96 /* config, data image, vTPM state and records, the keystore's files */
#define BUNDLE_PART_NAME_MAX 128 /* below a carried directory ("keystore/<alias>.key.new") */
#define BUNDLE_PLAIN_NAME_MAX 64 /* a file of the container's dir */
#define BUNDLE_MANIFEST_MAX 24576
/* The sealed keys: the data key (64), then the keystore key (32) and the secure storage's seed
 * (32) of a container with a keystore (zeros without). The vTPM's state key is not among them: it
 * derives from the data key and the UUID (docs/VTPM.md), both carried. */
#define BUNDLE_SECRETS_LEN 128
#define BUNDLE_DATA_KEY_LEN 64
#define BUNDLE_KS_KEYS_OFFSET 64
#define BUNDLE_KS_KEYS_LEN 64
#define BUNDLE_ANCHORS_MAX 4
#define BUNDLE_ANCHOR_VALUE_MAX 64
/* The secure store's tamper-proof objects (docs/SECURE_STORAGE.md): at most its quota, each an id
 * of 1..15 bytes of [A-Za-z0-9._-] and its value as the source's table holds it (sealed under the
 * store's TP key: a 12-byte nonce, at most 96 bytes, a 16-byte tag). */
#define BUNDLE_TP_MAX 8 /* SSTORE_TP_MAX */
#define BUNDLE_TP_ID_MAX 15
#define BUNDLE_TP_VALUE_MIN 28
#define BUNDLE_TP_VALUE_MAX 124
#define BUNDLE_TP_INDEX_MAX (BUNDLE_TP_MAX * (BUNDLE_TP_ID_MAX + 1))

struct bundle_part {
    char name[BUNDLE_PART_NAME_MAX]; /* a file of the container's data dir */
    uint64_t size;
    uint8_t sha256[32];
    uint64_t offset; /* in the bundle file (reading) */
    const char *src; /* writing: the file to carry, if not <dir>/<name> (the keystore's) */
    bool has_fd; /* writing: the part is in fd instead (made for the bundle: the token's) */
    int fd;
};

/* A value of the source's TPM anchor table that the target writes into its own (docs/MIGRATION.md
 * "Carried keys"): kind "vtpm", "sstore" or "sstore-keys", named for the manifest's UUID. */
struct bundle_anchor {
    char kind[16];
    uint8_t value[BUNDLE_ANCHOR_VALUE_MAX];
    size_t len;
};

/* A tamper-proof object: "sstore-tp/<uuid>/<id>" of the source's table. */
struct bundle_tp {
    char id[BUNDLE_TP_ID_MAX + 1];
    uint8_t value[BUNDLE_TP_VALUE_MAX];
    size_t len;
};

struct bundle_header {
    char bundle_id[BUNDLE_ID_LEN + 1];
    char offer_id[BUNDLE_ID_LEN + 1];
    char target_ak[2 * 34 + 1]; /* the AK's TPM name, hex */
    char uuid[37];
    char name[128];
    char guestos[160]; /* "NAME VERSION" or "-" */
    uint32_t uid_base; /* the source's first host uid of the container (its files on the volume) */
    struct bundle_part parts[BUNDLE_PARTS_MAX];
    size_t nparts;
    struct bundle_anchor anchors[BUNDLE_ANCHORS_MAX];
    size_t nanchors;
    /* The tamper-proof index "sstore-tp/<uuid>" (its ids, each NUL-terminated; has_tp_index: the
     * manifest has one) and the objects it lists, in its order. Parsed bundles hold exactly the
     * objects the index lists, at most BUNDLE_TP_MAX. */
    bool has_tp_index;
    uint8_t tp_index[BUNDLE_TP_INDEX_MAX];
    size_t tp_index_len;
    struct bundle_tp tp[BUNDLE_TP_MAX];
    size_t ntp;
    /* SHA-256 (hex) of the bundle's head: the manifest, the wrapped K, the IV and the sealed keys.
     * With the manifest's part digests it names every byte of the bundle; a receipt names it, so
     * a receipt for a bundle the network made from the public offer (its own K and keys, the
     * genuine ids) is not one for the bundle the source exported. Filled by write and open. */
    char digest[65];
};

/* Write the bundle at path (a new file: O_EXCL, refused if it exists) from the files of dir
 * named in h->parts (sizes and digests are filled here), with K wrapped to the RSA public key
 * key_spki (DER SubjectPublicKeyInfo) and secrets sealed under K. The file is synced. */
int bundle_write(const char *path, const char *dir, struct bundle_header *h, const uint8_t *key_spki,
                 size_t key_spki_len, const struct secret *secrets, tm_err *err);

struct bundle_in {
    int fd;
    struct bundle_header h;
    char *manifest;
    size_t manifest_len;
    uint8_t wrapped[512];
    size_t wrapped_len;
    uint8_t iv[12];
    uint8_t sealed[BUNDLE_SECRETS_LEN + 16];
    uint64_t tail_offset; /* after the last part: the source's signature (source_auth.h) */
    uint64_t size; /* of the file */
};

/* Open and parse a bundle and check every part's size and SHA-256 against the manifest (the
 * manifest's own authenticity comes with source_auth_check and bundle_unseal). err names the
 * failing check. What follows the parts is source_auth_check's to read. */
int bundle_open(const char *path, struct bundle_in *ret, tm_err *err);
void bundle_close(struct bundle_in *b);
/* AES-256-GCM open of the secrets under K, with the manifest as associated data. */
int bundle_unseal(const struct bundle_in *b, const uint8_t *k, size_t k_len, struct secret **ret, tm_err *err);
/* Copy part i into a new file at dest (mode 0600), synced, and check the copy against the
 * manifest's digest again (the bundle file may have changed since bundle_open). */
int bundle_extract(const struct bundle_in *b, size_t i, const char *dest, tm_err *err);
/* Part i into dir/<its name>, making the directories of a carried part's name (0700) first. */
int bundle_extract_into(const struct bundle_in *b, size_t i, const char *dir, tm_err *err);
/* The ids a tamper-proof index lists (each NUL-terminated, 1..15 bytes of [A-Za-z0-9._-], none
 * twice): how many, or -1 if it is malformed or lists more than BUNDLE_TP_MAX. */
int bundle_tp_ids(const uint8_t *v, size_t len, char ids[BUNDLE_TP_MAX][BUNDLE_TP_ID_MAX + 1]);
/* A part name below one of the carried directories ("vtpm/", "keystore/"). */
bool bundle_carried_dir(const char *name);
