/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The migration bundle file (docs/MIGRATION.md "Bundle"): a manifest naming every part with its
 * size and SHA-256, the bundle key K wrapped with RSA-OAEP to the target's TPM-held migration
 * key, the container's keys sealed with AES-256-GCM under K with the manifest as associated
 * data, then the parts. The GCM tag therefore authenticates every part (through its digest),
 * the offer id and the target's AK name. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "secmem.h"

#define BUNDLE_MAGIC "TMMIGv1\n"
#define BUNDLE_ID_LEN 32 /* hex digits, as offer ids */
#define BUNDLE_PARTS_MAX 16
#define BUNDLE_PART_NAME_MAX 64
#define BUNDLE_MANIFEST_MAX 8192
#define BUNDLE_SECRETS_LEN 64 /* the data key */

struct bundle_part {
    char name[BUNDLE_PART_NAME_MAX]; /* a file of the container's data dir */
    uint64_t size;
    uint8_t sha256[32];
    uint64_t offset; /* in the bundle file (reading) */
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
};

/* Open and parse a bundle and check every part's size and SHA-256 against the manifest (the
 * manifest's own authenticity comes with bundle_unseal). err names the failing check. */
int bundle_open(const char *path, struct bundle_in *ret, tm_err *err);
void bundle_close(struct bundle_in *b);
/* AES-256-GCM open of the secrets under K, with the manifest as associated data. */
int bundle_unseal(const struct bundle_in *b, const uint8_t *k, size_t k_len, struct secret **ret, tm_err *err);
/* Copy part i into a new file at dest (mode 0600), synced, and check the copy against the
 * manifest's digest again (the bundle file may have changed since bundle_open). */
int bundle_extract(const struct bundle_in *b, size_t i, const char *dest, tm_err *err);
