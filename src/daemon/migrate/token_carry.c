/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The bundle's token part (token_carry.h). Its layout:
 *   "TMTOKv1\n", 12 bytes IV, the sealed 106 bytes, 16 bytes GCM tag
 * sealed: wrong PINs (1), wrong PUKs (1), scrypt N (8, big-endian), the PIN's salt (16) and
 * scrypt output (32), the PUK's salt (16) and scrypt output (32); under HKDF-SHA256(the data key,
 * salt = the UUID, "trustme migrate token v1"), the UUID in the associated data. */
#include "token_carry.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cleanup.h"
#include "crypto.h"
#include "fdutil.h"
#include "fileio.h"
#include "tokens_migrated.h"

#define MAGIC "TMTOKv1\n"
#define INFO "trustme migrate token v1"
#define PLAIN_LEN (2 + 8 + 2 * (TOKENS_CARRY_SALT_LEN + TOKENS_CARRY_IKM_LEN))
#define PART_LEN (8 + 12 + PLAIN_LEN + 16)

static void part_key(const struct secret *data_key, const char *uuid, uint8_t out[32])
{
    tm_hkdf_sha256(data_key->data, data_key->len, uuid, strlen(uuid), INFO, strlen(INFO), out, 32);
}

static void aad_of(const char *uuid, char out[96])
{
    snprintf(out, 96, INFO "|%s", uuid);
}

int token_carry_add(struct bundle_header *h, const char *uuid, const struct secret *data_key,
                    const struct tokens_carried *t, int *ret_fd, tm_err *err)
{
    if (h->nparts == BUNDLE_PARTS_MAX)
        return tm_err_set(err, E2BIG, "more than %d files to carry", BUNDLE_PARTS_MAX);
    if (!t || !t->ikm || t->ikm->len != 2 * TOKENS_CARRY_IKM_LEN)
        return tm_err_set(err, EINVAL, "the token's carried form is missing");
    _cleanup_secret_ struct secret *plain = NULL;
    uint8_t part[PART_LEN], key[32];
    char aad[96];
    int r = secret_new(PLAIN_LEN, &plain, err);
    if (r < 0)
        return r;
    uint8_t *p = plain->data;
    p[0] = t->pin_failures, p[1] = t->puk_failures;
    for (int i = 0; i < 8; i++)
        p[2 + i] = (uint8_t)(t->kdf_n >> (56 - 8 * i));
    p += 10;
    memcpy(p, t->pin_salt, TOKENS_CARRY_SALT_LEN);
    memcpy(p + TOKENS_CARRY_SALT_LEN, t->ikm->data, TOKENS_CARRY_IKM_LEN);
    p += TOKENS_CARRY_SALT_LEN + TOKENS_CARRY_IKM_LEN;
    memcpy(p, t->puk_salt, TOKENS_CARRY_SALT_LEN);
    memcpy(p + TOKENS_CARRY_SALT_LEN, t->ikm->data + TOKENS_CARRY_IKM_LEN, TOKENS_CARRY_IKM_LEN);
    memcpy(part, MAGIC, 8);
    if ((r = secure_random(part + 8, 12, err)) < 0)
        return r;
    part_key(data_key, uuid, key);
    aad_of(uuid, aad);
    bool ok = tokens_migrated_gcm(true, key, part + 8, aad, plain->data, PLAIN_LEN, part + 20, part + 20 + PLAIN_LEN);
    explicit_bzero(key, sizeof(key));
    if (!ok)
        return tm_err_set(err, EIO, "cannot seal the token's part");
    /* A memory file: nothing of it is written to the source's disk but the bundle. */
    _cleanup_close_ int fd = memfd_create("trustme-token-part", MFD_CLOEXEC);
    if (fd < 0)
        return tm_err_sys(err, "cannot make the token's part");
    if ((r = write_all(fd, part, sizeof(part))) < 0) {
        errno = -r;
        return tm_err_sys(err, "cannot write the token's part");
    }
    struct bundle_part *bp = &h->parts[h->nparts++];
    *bp = (struct bundle_part){.has_fd = true, .fd = fd};
    snprintf(bp->name, sizeof(bp->name), "%s", TOKEN_CARRY_PART);
    *ret_fd = fd;
    fd = -1;
    return 0;
}

int token_carry_read(const struct bundle_in *b, const struct secret *data_key, struct tokens_carried **ret, tm_err *err)
{
    const struct bundle_part *bp = NULL;
    for (size_t i = 0; i < b->h.nparts; i++)
        if (token_carry_is_part(b->h.parts[i].name))
            bp = &b->h.parts[i];
    if (!bp)
        return tm_err_set(err, EBADMSG,
                          "part " TOKEN_CARRY_PART ": missing (the source's token would not come with its PIN, PUK "
                          "and lockout counts; a source with this trustme exports it)");
    uint8_t part[PART_LEN], got[32], key[32];
    char aad[96];
    if (bp->size != PART_LEN)
        return tm_err_set(err, EBADMSG, "part " TOKEN_CARRY_PART ": %llu bytes, not %d", (unsigned long long)bp->size,
                          PART_LEN);
    if (pread(b->fd, part, sizeof(part), (off_t)bp->offset) != (ssize_t)sizeof(part))
        return tm_err_sys(err, "part " TOKEN_CARRY_PART ": cannot read it");
    /* Read again from a file that may have changed since bundle_open hashed it. */
    tm_sha256(part, sizeof(part), got);
    if (memcmp(got, bp->sha256, 32) != 0)
        return tm_err_set(err, EBADMSG, "part " TOKEN_CARRY_PART ": it changed after its digest was checked (altered)");
    if (memcmp(part, MAGIC, 8) != 0)
        return tm_err_set(err, EBADMSG, "part " TOKEN_CARRY_PART ": not a token part (format)");
    _cleanup_secret_ struct secret *plain = NULL;
    int r = secret_new(PLAIN_LEN, &plain, err);
    if (r < 0)
        return r;
    part_key(data_key, b->h.uuid, key);
    aad_of(b->h.uuid, aad);
    bool ok = tokens_migrated_gcm(false, key, part + 8, aad, part + 20, PLAIN_LEN, plain->data, part + 20 + PLAIN_LEN);
    explicit_bzero(key, sizeof(key));
    if (!ok)
        return tm_err_set(err, EBADMSG,
                          "part " TOKEN_CARRY_PART ": it does not open with the carried data key (altered)");
    struct tokens_carried *t = calloc(1, sizeof(*t));
    if (!t)
        return tm_err_set(err, ENOMEM, "out of memory");
    if ((r = secret_new(2 * TOKENS_CARRY_IKM_LEN, &t->ikm, err)) < 0) {
        free(t);
        return r;
    }
    const uint8_t *p = plain->data;
    if (p[0] > 3 || p[1] > 10) {
        tokens_carried_done(t);
        return tm_err_set(err, EBADMSG, "part " TOKEN_CARRY_PART ": counts of %u wrong PINs and %u wrong PUKs", p[0],
                          p[1]);
    }
    t->pin_failures = p[0], t->puk_failures = p[1];
    for (int i = 0; i < 8; i++)
        t->kdf_n = t->kdf_n << 8 | p[2 + i];
    p += 10;
    memcpy(t->pin_salt, p, TOKENS_CARRY_SALT_LEN);
    memcpy(t->ikm->data, p + TOKENS_CARRY_SALT_LEN, TOKENS_CARRY_IKM_LEN);
    p += TOKENS_CARRY_SALT_LEN + TOKENS_CARRY_IKM_LEN;
    memcpy(t->puk_salt, p, TOKENS_CARRY_SALT_LEN);
    memcpy(t->ikm->data + TOKENS_CARRY_IKM_LEN, p + TOKENS_CARRY_SALT_LEN, TOKENS_CARRY_IKM_LEN);
    *ret = t;
    return 0;
}
