/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The store: superblocks, object files, commits and the checks at open and read
 * (docs/SECURE_STORAGE.md has the formats and the reasoning). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <stdarg.h>

#include "cleanup.h"
#include "crypto.h"
#include "fileio.h"
#include "hex.h"
#include "secmem.h"
#include "sstore.h"
#include "sstore_crypto.h"
#include "sstore_internal.h"
#include "test_hooks.h"

#define SB_MAGIC "TMSSTOR1"
/* Objects up to INLINE_MAX bytes live in the superblock itself (a commit writes and syncs one
 * file, in place: no object file, no directory sync, no old version to remove), as long as the
 * inline bytes stay below INLINE_TOTAL_MAX. A commit then rewrites every inline object (at most
 * INLINE_TOTAL_MAX), which costs less than the file, the directory sync and the removal a
 * separate object file costs (docs/BENCHMARKS.md "Secure storage"). */
#define INLINE_MAX (64u * 1024)
#define INLINE_TOTAL_MAX (256u * 1024)
#define ENTRY_MAX (1 + SSTORE_ID_MAX + 8 + 4 + 1 + 32)
#define SB_MAX (64u + SSTORE_OBJECTS_MAX * ENTRY_MAX + INLINE_TOTAL_MAX + 200)
#define FLAG_INLINE 1u
#define FLAG_SLOTTED 2u /* the object's file is slot 0 or 1 of its id (FLAG_SLOT1) */
#define FLAG_SLOT1 4u
#define ANCHOR_FORMAT 1
#define SALT "trustme-sstore v1"

static bool valid_chars(const char *s, size_t max, bool slash_ok)
{
    size_t n = strnlen(s, max + 1);
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] <= 0x20 || s[i] >= 0x7f || (!slash_ok && s[i] == '/'))
            return false;
    return true;
}

int sstore_check_id(const char *id, tm_err *err)
{
    if (!id || !valid_chars(id, SSTORE_ID_MAX, true))
        return tm_err_set(err, EINVAL, "an object id is 1..%d printable ASCII bytes without spaces", SSTORE_ID_MAX);
    return 0;
}

int sstore_anchor_name(const char *store_id, char name[160], tm_err *err)
{
    if (!store_id || !valid_chars(store_id, SSTORE_STORE_ID_MAX, false))
        return tm_err_set(err, EINVAL, "a store id is 1..%d printable ASCII bytes without spaces or '/'",
                          SSTORE_STORE_ID_MAX);
    snprintf(name, 160, SSTORE_ANCHOR_PREFIX "%s", store_id);
    return 0;
}

/* ---- helpers ----------------------------------------------------------------------------------- */

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}
static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}
static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = v >> 24, p[1] = v >> 16, p[2] = v >> 8, p[3] = (uint8_t)v;
}
static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int refuse(struct sstore *s, tm_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int refuse(struct sstore *s, tm_err *err, int code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    s->refused = -code;
    snprintf(s->last_error, sizeof(s->last_error), "%s", msg);
    if (s->report)
        s->report(s->report_ctx, s->store_id, code, msg);
    return tm_err_set(err, code, "store %s: %s", s->store_id, msg);
}

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct sstore_entry *)a)->id, ((const struct sstore_entry *)b)->id);
}

static struct sstore_entry *find(struct sstore_entry *e, size_t n, const char *id)
{
    struct sstore_entry key;
    if (n == 0)
        return NULL; /* an empty store has no array (bsearch wants one) */
    snprintf(key.id, sizeof(key.id), "%s", id);
    return bsearch(&key, e, n, sizeof(*e), entry_cmp);
}

/* obj/<16 hex of HMAC(name key, id)>-s0 or -s1: the id stays hidden; an object's two slot files
 * take its versions in turn, so a new version never overwrites the one the anchored superblock
 * names (out of place), yet each commit overwrites a file that exists (in place: no new file, no
 * directory sync). Slot -1 is a store's file from before the slots: -<16 hex version>. */
static void object_path(const struct sstore *s, const char *id, uint64_t version, int slot, char *out, size_t size)
{
    uint8_t mac[32];
    char hex[17];
    sstore_hmac(s->keys->data + KEY_NAME, id, strlen(id), mac, NULL);
    tm_hex(mac, 8, hex);
    if (slot >= 0)
        snprintf(out, size, "%s/obj/%s-s%d", s->dir, hex, slot);
    else
        snprintf(out, size, "%s/obj/%s-%016llx", s->dir, hex, (unsigned long long)version);
}

/* The object key and associated data of (id, version): both bind the store id too. */
static int object_key(const struct sstore *s, const char *id, uint64_t version, uint8_t key[32], uint8_t *aad,
                      size_t *aad_len, tm_err *err)
{
    size_t sl = strlen(s->store_id), il = strlen(id);
    uint8_t info[32 + SSTORE_ID_MAX + 16];
    size_t n = 0;
    memcpy(info, "trustme-sstore object", 22), n = 22; /* with its NUL */
    memcpy(info + n, id, il + 1), n += il + 1;
    put_be64(info + n, version), n += 8;
    /* aad: store id NUL id NUL version */
    memcpy(aad, s->store_id, sl + 1);
    memcpy(aad + sl + 1, id, il + 1);
    put_be64(aad + sl + il + 2, version);
    *aad_len = sl + il + 10;
    return sstore_hkdf(s->keys->data + KEY_STORE, s->key_len, s->store_id, sl, info, n, key, err);
}

/* ---- the superblock ---------------------------------------------------------------------------- */

/* id len u8 | id | version u64 | size u32 | flags u8 (inline; or slot file 0/1) | SHA-256 of the object's ciphertext[32] */
static size_t entry_encode(const struct sstore_entry *e, uint8_t *b)
{
    size_t il = strlen(e->id), k = 0;
    b[k++] = (uint8_t)il;
    memcpy(b + k, e->id, il), k += il;
    put_be64(b + k, e->version), k += 8;
    put_be32(b + k, e->size), k += 4;
    b[k++] = e->data ? FLAG_INLINE : e->slot < 0 ? 0 : FLAG_SLOTTED | (e->slot ? FLAG_SLOT1 : 0);
    memcpy(b + k, e->sha, 32), k += 32;
    return k;
}

static void compute_root(const struct sstore_entry *e, size_t n, uint8_t root[32])
{
    struct tm_sha256_ctx c;
    tm_sha256_init(&c);
    tm_sha256_update(&c, "trustme-sstore root v1", 22);
    for (size_t i = 0; i < n; i++) {
        uint8_t b[ENTRY_MAX];
        tm_sha256_update(&c, b, entry_encode(&e[i], b));
    }
    tm_sha256_final(&c, root);
}

/* magic | store id len u8 | store id | version u64 | n u32 | root[32] | entries | the inline
 * objects' ciphertexts, in entry order | HMAC[32]. */
static int sb_encode(const struct sstore *s, uint64_t version, const struct sstore_entry *e, size_t n, uint8_t **ret,
                     size_t *ret_len, uint8_t root[32], tm_err *err)
{
    _cleanup_free_ uint8_t *b = malloc(SB_MAX);
    if (!b)
        return tm_err_set(err, ENOMEM, "out of memory");
    size_t k = 0, sl = strlen(s->store_id);
    memcpy(b, SB_MAGIC, 8), k = 8;
    b[k++] = (uint8_t)sl;
    memcpy(b + k, s->store_id, sl), k += sl;
    put_be64(b + k, version), k += 8;
    put_be32(b + k, (uint32_t)n), k += 4;
    compute_root(e, n, root);
    memcpy(b + k, root, 32), k += 32;
    for (size_t i = 0; i < n; i++)
        k += entry_encode(&e[i], b + k);
    for (size_t i = 0; i < n; i++)
        if (e[i].data) {
            size_t dl = (size_t)e[i].size + SSTORE_NONCE_LEN + SSTORE_TAG_LEN;
            if (k + dl + 32 > SB_MAX)
                return tm_err_set(err, ENOSPC, "the superblock is full");
            memcpy(b + k, e[i].data, dl), k += dl;
        }
    int r = sstore_hmac(s->keys->data + KEY_SB, b, k, b + k, err);
    if (r < 0)
        return r;
    *ret_len = k + 32;
    *ret = steal_ptr(b);
    return 0;
}

struct sb {
    uint8_t *buf; /* the slot's bytes: inline objects point into it */
    size_t len;
    bool present, valid;
    uint64_t version;
    uint8_t sha[32], root[32];
    struct sstore_entry *e;
    size_t n;
    char why[160];
};

/* Parse and authenticate one slot's bytes; sb->valid false with sb->why when it does not. */
static void sb_decode(const struct sstore *s, const uint8_t *b, size_t len, struct sb *sb)
{
    uint8_t mac[32], root[32];
    size_t sl = strlen(s->store_id), k = 0;
    tm_sha256(b, len, sb->sha);
    if (len < 8 + 1 + sl + 8 + 4 + 32 + 32 || memcmp(b, SB_MAGIC, 8) != 0) {
        snprintf(sb->why, sizeof(sb->why), "not a superblock");
        return;
    }
    if (sstore_hmac(s->keys->data + KEY_SB, b, len - 32, mac, NULL) < 0 || CRYPTO_memcmp(mac, b + len - 32, 32) != 0) {
        snprintf(sb->why, sizeof(sb->why), "does not authenticate (edited, or not made with this store's key)");
        return;
    }
    k = 8;
    if (b[k] != sl || memcmp(b + k + 1, s->store_id, sl) != 0) {
        snprintf(sb->why, sizeof(sb->why), "belongs to another store");
        return;
    }
    k += 1 + sl;
    sb->version = get_be64(b + k), k += 8;
    uint32_t n = get_be32(b + k);
    k += 4;
    memcpy(sb->root, b + k, 32), k += 32;
    if (n > SSTORE_OBJECTS_MAX || !(sb->e = calloc(n ? n : 1, sizeof(*sb->e)))) {
        snprintf(sb->why, sizeof(sb->why), "too many objects");
        return;
    }
    size_t end = len - 32;
    for (uint32_t i = 0; i < n; i++) {
        if (k >= end || b[k] == 0 || b[k] > SSTORE_ID_MAX || k + 1 + b[k] + 45 > end) {
            snprintf(sb->why, sizeof(sb->why), "malformed object list");
            return;
        }
        size_t il = b[k++];
        memcpy(sb->e[i].id, b + k, il), k += il;
        sb->e[i].id[il] = '\0';
        sb->e[i].version = get_be64(b + k), k += 8;
        sb->e[i].size = get_be32(b + k), k += 4;
        uint8_t flags = b[k++];
        sb->e[i].data = flags & FLAG_INLINE ? b : NULL; /* placed below */
        sb->e[i].slot = flags & FLAG_SLOTTED ? (flags & FLAG_SLOT1 ? 1 : 0) : -1;
        memcpy(sb->e[i].sha, b + k, 32), k += 32;
        if (sstore_check_id(sb->e[i].id, NULL) < 0 || (i > 0 && strcmp(sb->e[i - 1].id, sb->e[i].id) >= 0) ||
            (flags != 0 && flags != FLAG_INLINE && flags != FLAG_SLOTTED && flags != (FLAG_SLOTTED | FLAG_SLOT1)) ||
            sb->e[i].size > SSTORE_OBJECT_MAX) {
            snprintf(sb->why, sizeof(sb->why), "malformed object list");
            return;
        }
    }
    compute_root(sb->e, n, root);
    for (uint32_t i = 0; i < n; i++)
        if (sb->e[i].data) {
            size_t dl = (size_t)sb->e[i].size + SSTORE_NONCE_LEN + SSTORE_TAG_LEN;
            if (k + dl > end) {
                snprintf(sb->why, sizeof(sb->why), "malformed inline objects");
                return;
            }
            sb->e[i].data = b + k, k += dl;
        }
    if (k != end || memcmp(root, sb->root, 32) != 0) {
        snprintf(sb->why, sizeof(sb->why), "the root hash does not match the object list");
        return;
    }
    sb->n = n;
    sb->valid = true;
}

static int sb_load(const struct sstore *s, int slot, struct sb *sb, tm_err *err)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/super.%d", s->dir, slot);
    char *data = NULL;
    size_t len = 0;
    tm_err e2;
    int r = read_file(path, SB_MAX, &data, &len, &e2);
    if (r == -ENOENT)
        return 0;
    sb->present = true;
    if (r < 0) {
        snprintf(sb->why, sizeof(sb->why), "unreadable: %s", e2.msg);
        return 0;
    }
    sb->buf = (uint8_t *)data;
    sb->len = len;
    sb_decode(s, sb->buf, len, sb);
    return 0;
}

/* ---- open -------------------------------------------------------------------------------------- */

static int parse_anchor(const uint8_t *v, size_t len, uint64_t *version, uint8_t sha[32])
{
    if (len != SSTORE_ANCHOR_LEN || v[0] != ANCHOR_FORMAT)
        return -EBADMSG;
    *version = get_be64(v + 1);
    memcpy(sha, v + 9, 32);
    return 0;
}

/* Remove object files that the current superblock does not name: what a commit that crashed
 * or failed before its anchor left, and the versions a later commit replaced. Both slot files
 * of a big object stay (the next commit of it overwrites the one not named). */
static void collect_garbage(struct sstore *s)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/obj", s->dir);
    _cleanup_(closedirp) DIR *d = opendir(path);
    if (!d)
        return;
    for (struct dirent *de; (de = readdir(d));) {
        if (de->d_name[0] == '.')
            continue;
        bool keep = false;
        for (size_t i = 0; i < s->n && !keep; i++) {
            if (s->e[i].data)
                continue;
            char p[4096];
            for (int k = 0; k < (s->e[i].slot < 0 ? 1 : 2) && !keep; k++) {
                object_path(s, s->e[i].id, s->e[i].version, s->e[i].slot < 0 ? -1 : k, p, sizeof(p));
                keep = strcmp(strrchr(p, '/') + 1, de->d_name) == 0;
            }
        }
        if (!keep)
            unlinkat(dirfd(d), de->d_name, 0);
    }
    /* Not synced: a removal lost in a crash leaves a file no anchored superblock names, which
     * the next open removes again. */
}

static int derive_keys(struct sstore *s, const uint8_t *key, size_t key_len, tm_err *err)
{
    int r;
    if ((r = secret_new(KEY_STORE + SSTORE_KEY_MAX, &s->keys, err)) < 0)
        return r;
    memcpy(s->keys->data + KEY_STORE, key, key_len);
    s->key_len = key_len;
    size_t sl = strlen(s->store_id);
    if ((r = sstore_hkdf(key, key_len, s->store_id, sl, "trustme-sstore superblock", 25, s->keys->data + KEY_SB, err)) <
            0 ||
        (r = sstore_hkdf(key, key_len, s->store_id, sl, "trustme-sstore names", 20, s->keys->data + KEY_NAME, err)) <
            0 ||
        (r = sstore_hkdf(key, key_len, s->store_id, sl, "trustme-sstore tp", 17, s->keys->data + KEY_TP, err)) < 0)
        return r;
    return 0;
}

static int lock_dir(struct sstore *s, tm_err *err)
{
    char path[4096];
    if (mkdir(s->dir, 0700) < 0 && errno != EEXIST)
        return tm_err_sys(err, "cannot create %s", s->dir);
    snprintf(path, sizeof(path), "%s/obj", s->dir);
    if (mkdir(path, 0700) < 0 && errno != EEXIST)
        return tm_err_sys(err, "cannot create %s", path);
    snprintf(path, sizeof(path), "%s/lock", s->dir);
    s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (s->lock_fd < 0)
        return tm_err_sys(err, "cannot open %s", path);
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0)
        return errno == EWOULDBLOCK ? tm_err_set(err, EBUSY, "store %s is in use by another process", s->store_id)
                                    : tm_err_sys(err, "cannot lock %s", path);
    return 0;
}

int sstore_open(const char *dir, const char *store_id, const uint8_t *key, size_t key_len,
                const struct sstore_anchor_ops *anchor, sstore_report_fn report, void *report_ctx, struct sstore **ret,
                tm_err *err)
{
    int r;
    char aname[160];
    if ((r = sstore_anchor_name(store_id, aname, err)) < 0)
        return r;
    if (!key || key_len < SSTORE_KEY_MIN || key_len > SSTORE_KEY_MAX)
        return tm_err_set(err, EINVAL, "a store key is %d..%d bytes", SSTORE_KEY_MIN, SSTORE_KEY_MAX);
    if (!anchor || !anchor->get || !anchor->set)
        return tm_err_set(err, EINVAL, "a store needs its anchor");
    _cleanup_(sstore_closep) struct sstore *s = calloc(1, sizeof(*s));
    if (!s || !(s->dir = strdup(dir)))
        return tm_err_set(err, ENOMEM, "out of memory");
    s->lock_fd = -1;
    snprintf(s->store_id, sizeof(s->store_id), "%s", store_id);
    snprintf(s->anchor_name, sizeof(s->anchor_name), "%s", aname);
    s->anchor = *anchor;
    s->report = report;
    s->report_ctx = report_ctx;
    if ((r = lock_dir(s, err)) < 0 || (r = derive_keys(s, key, key_len, err)) < 0)
        return r;

    uint8_t value[128], asha[32];
    size_t alen = 0;
    bool found = false;
    uint64_t aver = 0;
    tm_err aerr = {0};
    if ((r = anchor->get(anchor->ctx, aname, value, &alen, &found, &aerr)) < 0)
        return refuse(s, err, -r, "its TPM anchor cannot be read, so nothing in it is believed: %s", aerr.msg);
    if (found && parse_anchor(value, alen, &aver, asha) < 0)
        return refuse(s, err, EBADMSG, "its anchor entry is malformed");

    struct sb sb[2] = {0};
    for (int i = 0; i < 2; i++)
        sb_load(s, i, &sb[i], NULL);
    int cur = -1;
    for (int i = 0; i < 2; i++)
        if (found && sb[i].valid && sb[i].version == aver && memcmp(sb[i].sha, asha, 32) == 0)
            cur = i;
    if (cur < 0 && found) {
        /* Nothing matches what the TPM anchors: say why as precisely as the files allow. */
        uint64_t newest = 0;
        bool any_valid = false;
        for (int i = 0; i < 2; i++) {
            if (sb[i].valid && sb[i].version == aver) {
                r = refuse(s, err, EBADMSG,
                           "superblock %d claims the anchored version %llu but is not the anchored one", i,
                           (unsigned long long)aver);
                goto out;
            }
            if (sb[i].valid && sb[i].version <= aver) {
                any_valid = true;
                newest = sb[i].version > newest ? sb[i].version : newest;
            }
        }
        for (int i = 0; i < 2; i++)
            if (sb[i].present && !sb[i].valid) {
                r = refuse(s, err, EBADMSG, "superblock %d %s; the TPM anchors version %llu", i, sb[i].why,
                           (unsigned long long)aver);
                goto out;
            }
        if (any_valid)
            r = refuse(s, err, ESTALE,
                       "rolled back: the store is at version %llu, the TPM anchors version %llu (restored from an "
                       "older copy)",
                       (unsigned long long)newest, (unsigned long long)aver);
        else
            r = refuse(s, err, ENOENT, "the store is missing, but the TPM anchors version %llu",
                       (unsigned long long)aver);
        goto out;
    }
    if (cur >= 0) {
        s->version = aver;
        s->slot = cur;
        memcpy(s->sb_sha, asha, 32);
        memcpy(s->root, sb[cur].root, 32);
        s->e = steal_ptr(sb[cur].e);
        s->n = sb[cur].n;
        s->sb_buf = steal_ptr(sb[cur].buf);
    }
    /* A slot above the anchor is a commit that never got anchored: it is dead and the next
     * commit overwrites it. Without an anchor (a new or wiped store) every slot is such. */
    collect_garbage(s);
    if ((r = tp_load_index(s, err)) < 0)
        goto out;
    *ret = steal_ptr(s);
    r = 0;
out:
    for (int i = 0; i < 2; i++) {
        free(sb[i].e);
        free(sb[i].buf);
    }
    return r;
}

void sstore_close(struct sstore *s)
{
    if (!s)
        return;
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    secret_free(s->keys);
    free(s->e);
    free(s->sb_buf);
    free(s->dir);
    free(s);
}

void sstore_get_status(const struct sstore *s, struct sstore_status *ret)
{
    memset(ret, 0, sizeof(*ret));
    ret->version = s->version;
    memcpy(ret->root, s->root, 32);
    ret->objects = s->n;
    ret->tp_objects = s->tp_n;
    ret->refused = s->refused;
    ret->uncertain = s->uncertain;
    snprintf(ret->last_error, sizeof(ret->last_error), "%s", s->last_error);
}

/* ---- read -------------------------------------------------------------------------------------- */

static int usable(struct sstore *s, tm_err *err)
{
    if (s->uncertain)
        return tm_err_set(err, EIO,
                          "store %s: an anchor update failed and its outcome is unknown; open the store again",
                          s->store_id);
    return 0;
}

int sstore_read(struct sstore *s, const char *id, uint8_t **ret_data, size_t *ret_len, uint64_t *ret_version,
                tm_err *err)
{
    int r;
    if ((r = usable(s, err)) < 0 || (r = sstore_check_id(id, err)) < 0)
        return r;
    const struct sstore_entry *e = find(s->e, s->n, id);
    if (!e)
        return tm_err_set(err, ENOENT, "no object %s", id);
    char path[4096];
    _cleanup_free_ char *file_buf = NULL;
    const char *file;
    size_t len = 0;
    if (e->data) {
        file = (const char *)e->data;
        len = (size_t)e->size + SSTORE_NONCE_LEN + SSTORE_TAG_LEN;
    } else {
        tm_err e2;
        object_path(s, id, e->version, e->slot, path, sizeof(path));
        if ((r = read_file(path, SSTORE_OBJECT_MAX + SSTORE_NONCE_LEN + SSTORE_TAG_LEN, &file_buf, &len, &e2)) < 0)
            return refuse(s, err, EBADMSG, "object %s (version %llu) is missing or unreadable: %s", id,
                          (unsigned long long)e->version, e2.msg);
        file = file_buf;
    }
    uint8_t sha[32];
    tm_sha256(file, len, sha);
    if (len != (size_t)e->size + SSTORE_NONCE_LEN + SSTORE_TAG_LEN || memcmp(sha, e->sha, 32) != 0)
        return refuse(s, err, EBADMSG,
                      "object %s does not match the superblock (replaced by another version, swapped or edited)", id);
    uint8_t key[32], aad[SSTORE_STORE_ID_MAX + SSTORE_ID_MAX + 12];
    size_t aad_len;
    if ((r = object_key(s, id, e->version, key, aad, &aad_len, err)) < 0)
        return r;
    _cleanup_free_ uint8_t *out = malloc(e->size ? e->size : 1);
    if (!out)
        return tm_err_set(err, ENOMEM, "out of memory");
    r = sstore_open_sealed(key, aad, aad_len, (const uint8_t *)file, len, out, NULL);
    explicit_bzero(key, sizeof(key));
    if (r < 0)
        return refuse(s, err, EBADMSG, "object %s does not authenticate", id);
    *ret_len = e->size;
    if (ret_version)
        *ret_version = e->version;
    *ret_data = steal_ptr(out);
    return 0;
}

int sstore_list(struct sstore *s, struct sstore_object_info **ret, size_t *ret_n, tm_err *err)
{
    int r;
    if ((r = usable(s, err)) < 0)
        return r;
    struct sstore_object_info *o = calloc(s->n ? s->n : 1, sizeof(*o));
    if (!o)
        return tm_err_set(err, ENOMEM, "out of memory");
    for (size_t i = 0; i < s->n; i++) {
        snprintf(o[i].id, sizeof(o[i].id), "%s", s->e[i].id);
        o[i].version = s->e[i].version;
        o[i].size = s->e[i].size;
    }
    *ret = o;
    *ret_n = s->n;
    return 0;
}

int sstore_verify(struct sstore *s, tm_err *err)
{
    for (size_t i = 0; i < s->n; i++) {
        _cleanup_free_ uint8_t *d = NULL;
        size_t len;
        int r = sstore_read(s, s->e[i].id, &d, &len, NULL, err);
        if (d)
            explicit_bzero(d, len);
        if (r < 0)
            return r;
    }
    return 0;
}

/* ---- transactions and commits ------------------------------------------------------------------ */

struct change {
    char id[SSTORE_ID_MAX + 1];
    uint8_t *data;
    size_t len;
    bool remove, create_only;
};

struct sstore_txn {
    struct sstore *s;
    struct change c[SSTORE_TXN_MAX];
    uint8_t *sealed[SSTORE_TXN_MAX]; /* the inline objects' ciphertexts until the superblock has them */
    size_t n;
    uint8_t *sb;
    size_t sb_len;
    /* filled by prepare */
    struct sstore_entry *e;
    size_t ne;
    uint8_t root[32], sb_sha[32];
};

int sstore_txn_new(struct sstore *s, struct sstore_txn **ret, tm_err *err)
{
    int r;
    if ((r = usable(s, err)) < 0)
        return r;
    struct sstore_txn *t = calloc(1, sizeof(*t));
    if (!t)
        return tm_err_set(err, ENOMEM, "out of memory");
    t->s = s;
    *ret = t;
    return 0;
}

void sstore_txn_free(struct sstore_txn *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++) {
        if (t->c[i].data)
            explicit_bzero(t->c[i].data, t->c[i].len);
        free(t->c[i].data);
        free(t->sealed[i]);
    }
    free(t->sb);
    free(t->e);
    free(t);
}

static int add_change(struct sstore_txn *t, const char *id, tm_err *err)
{
    int r;
    if ((r = sstore_check_id(id, err)) < 0)
        return r;
    if (t->n >= SSTORE_TXN_MAX)
        return tm_err_set(err, E2BIG, "at most %d changes in one commit", SSTORE_TXN_MAX);
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->c[i].id, id) == 0)
            return tm_err_set(err, EINVAL, "object %s is changed twice in one commit", id);
    snprintf(t->c[t->n].id, sizeof(t->c[t->n].id), "%s", id);
    return 0;
}

int sstore_txn_put(struct sstore_txn *t, const char *id, const uint8_t *data, size_t len, bool create_only, tm_err *err)
{
    int r;
    if ((r = add_change(t, id, err)) < 0)
        return r;
    if (len > SSTORE_OBJECT_MAX)
        return tm_err_set(err, EFBIG, "object %s: at most %u bytes", id, SSTORE_OBJECT_MAX);
    struct change *c = &t->c[t->n];
    if (!(c->data = malloc(len ? len : 1)))
        return tm_err_set(err, ENOMEM, "out of memory");
    if (len)
        memcpy(c->data, data, len);
    c->len = len;
    c->create_only = create_only;
    t->n++;
    return 0;
}

int sstore_txn_delete(struct sstore_txn *t, const char *id, tm_err *err)
{
    int r;
    if ((r = add_change(t, id, err)) < 0)
        return r;
    t->c[t->n].remove = true;
    t->n++;
    return 0;
}

/* Seal one object version: inline (the ciphertext handed back in *ret_inline for the
 * superblock) or into the slot file of its id that the current superblock does not name (cur:
 * the object's current entry, or NULL), synced. That file is dead until the anchor names the new
 * superblock, so it is written in place: no temporary file, no rename; the directory is synced
 * only when the file is new (write_file_in_place). */
static int write_object(struct sstore *s, const struct change *c, uint64_t version, bool inline_it,
                        const struct sstore_entry *cur, struct sstore_entry *e, uint8_t **ret_inline, tm_err *err)
{
    uint8_t key[32], aad[SSTORE_STORE_ID_MAX + SSTORE_ID_MAX + 12];
    size_t aad_len, flen = c->len + SSTORE_NONCE_LEN + SSTORE_TAG_LEN;
    int r;
    _cleanup_free_ uint8_t *file = malloc(flen);
    if (!file)
        return tm_err_set(err, ENOMEM, "out of memory");
    if ((r = object_key(s, c->id, version, key, aad, &aad_len, err)) < 0)
        return r;
    r = sstore_seal(key, aad, aad_len, c->data, c->len, file, err);
    explicit_bzero(key, sizeof(key));
    if (r < 0)
        return r;
    snprintf(e->id, sizeof(e->id), "%s", c->id);
    e->version = version;
    e->size = (uint32_t)c->len;
    tm_sha256(file, flen, e->sha);
    e->data = NULL;
    e->slot = -1;
    if (inline_it) {
        e->data = file;
        *ret_inline = steal_ptr(file);
        return 0;
    }
    e->slot = cur && !cur->data && cur->slot == 0 ? 1 : 0;
    char path[4096];
    object_path(s, c->id, version, e->slot, path, sizeof(path));
    return write_file_in_place(path, file, flen, 0600, err);
}

/* Write the superblock into its slot in place: the slot holds a dead version (two below the
 * next, or an unanchored leftover), so a torn write harms nothing, and no rename is needed. The
 * directory is synced only when the slot file is new; a superblock of the same size as the dead
 * one changes no metadata (no journal commit in its fdatasync). */
static int write_slot(struct sstore *s, int slot, const uint8_t *sb, size_t len, tm_err *err)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/super.%d", s->dir, slot);
    return write_file_in_place(path, sb, len, 0600, err);
}

/* Everything of a commit but its anchor: the new object files and the next superblock slot,
 * all synced. Until the anchor names that superblock, it is dead. */
static int prepare(struct sstore_txn *t, struct sstore_anchor_entry *a, tm_err *err)
{
    struct sstore *s = t->s;
    int r;
    if ((r = usable(s, err)) < 0)
        return r;
    uint64_t v = s->version + 1;
    size_t cap = s->n + t->n;
    if (!(t->e = calloc(cap ? cap : 1, sizeof(*t->e))))
        return tm_err_set(err, ENOMEM, "out of memory");
    if (s->n)
        memcpy(t->e, s->e, s->n * sizeof(*s->e));
    t->ne = s->n;
    for (size_t i = 0; i < t->n; i++) {
        struct change *c = &t->c[i];
        bool exists = find(s->e, s->n, c->id) != NULL;
        if (c->remove && !exists)
            return tm_err_set(err, ENOENT, "no object %s", c->id);
        if (!c->remove && c->create_only && exists)
            return tm_err_set(err, EEXIST, "object %s exists", c->id);
    }
    size_t inline_total = 0;
    for (size_t i = 0; i < s->n; i++)
        if (s->e[i].data)
            inline_total += s->e[i].size + SSTORE_NONCE_LEN + SSTORE_TAG_LEN;
    for (size_t i = 0; i < t->n; i++) {
        struct change *c = &t->c[i];
        struct sstore_entry *e = find(t->e, t->ne, c->id);
        if (e && e->data)
            inline_total -= e->size + SSTORE_NONCE_LEN + SSTORE_TAG_LEN;
        if (c->remove) {
            size_t at = (size_t)(e - t->e);
            memmove(e, e + 1, (t->ne - at - 1) * sizeof(*e));
            t->ne--;
            continue;
        }
        struct sstore_entry ne;
        size_t sealed_len = c->len + SSTORE_NONCE_LEN + SSTORE_TAG_LEN;
        bool inline_it = c->len <= INLINE_MAX && inline_total + sealed_len <= INLINE_TOTAL_MAX;
        if ((r = write_object(s, c, v, inline_it, e, &ne, &t->sealed[i], err)) < 0)
            return r;
        if (inline_it)
            inline_total += sealed_len;
        if (e) {
            *e = ne;
        } else {
            if (t->ne >= SSTORE_OBJECTS_MAX)
                return tm_err_set(err, ENOSPC, "at most %d objects in a store", SSTORE_OBJECTS_MAX);
            t->e[t->ne++] = ne;
            qsort(t->e, t->ne, sizeof(*t->e), entry_cmp);
        }
    }
    test_crash_point(s->dir, "sstore-objects-written");

    if ((r = sb_encode(s, v, t->e, t->ne, &t->sb, &t->sb_len, t->root, err)) < 0 ||
        (r = write_slot(s, (int)(v % 2), t->sb, t->sb_len, err)) < 0)
        return r;
    tm_sha256(t->sb, t->sb_len, t->sb_sha);
    snprintf(a->name, sizeof(a->name), "%s", s->anchor_name);
    a->value[0] = ANCHOR_FORMAT;
    put_be64(a->value + 1, v);
    memcpy(a->value + 9, t->sb_sha, 32);
    a->len = SSTORE_ANCHOR_LEN;
    a->remove = false;
    return 0;
}

static void finish(struct sstore_txn *t)
{
    struct sstore *s = t->s;
    /* The new superblock's bytes become the store's: its entries point into them. */
    struct sb sb = {0};
    sb_decode(s, t->sb, t->sb_len, &sb);
    if (!sb.valid) {
        free(sb.e);
        s->uncertain = true; /* cannot happen: we just encoded it */
        return;
    }
    free(s->e);
    free(s->sb_buf);
    s->e = sb.e;
    s->n = sb.n;
    s->sb_buf = steal_ptr(t->sb);
    s->version++;
    s->slot = (int)(s->version % 2);
    memcpy(s->root, t->root, 32);
    memcpy(s->sb_sha, t->sb_sha, 32);
    collect_garbage(s);
}

int sstore_commit_batch(struct sstore_txn **t, size_t n, tm_err *err)
{
    int r = 0;
    _cleanup_free_ struct sstore_anchor_entry *a = calloc(n ? n : 1, sizeof(*a));
    if (!a) {
        r = tm_err_set(err, ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (t[i]->s->anchor.set != t[0]->s->anchor.set || t[i]->s->anchor.ctx != t[0]->s->anchor.ctx) {
            r = tm_err_set(err, EINVAL, "the stores of one batch must share their anchor");
            goto out;
        }
        for (size_t j = 0; j < i; j++)
            if (t[j]->s == t[i]->s) {
                r = tm_err_set(err, EINVAL, "two transactions of store %s in one batch", t[i]->s->store_id);
                goto out;
            }
        if ((r = prepare(t[i], &a[i], err)) < 0) {
            tm_err_prefix(err, "store %s", t[i]->s->store_id);
            goto out;
        }
    }
    if (n == 0)
        goto out;
    test_crash_point(t[0]->s->dir, "sstore-before-anchor");
    const struct sstore_anchor_ops *ops = &t[0]->s->anchor;
    if ((r = ops->set(ops->ctx, a, n, err)) < 0) {
        /* Whether the TPM took it is unknown (the answer may be what got lost): no further
         * commit on top of either state until the store is opened again and asks the TPM. */
        for (size_t i = 0; i < n; i++)
            t[i]->s->uncertain = true;
        tm_err_prefix(err, "anchoring the commit");
        goto out;
    }
    test_crash_point(t[0]->s->dir, "sstore-after-anchor");
    for (size_t i = 0; i < n; i++)
        finish(t[i]);
out:
    for (size_t i = 0; i < n; i++)
        sstore_txn_free(t[i]);
    return r;
}

int sstore_commit(struct sstore_txn *t, uint64_t *ret_version, tm_err *err)
{
    struct sstore *s = t->s;
    int r = sstore_commit_batch(&t, 1, err);
    if (r == 0 && ret_version)
        *ret_version = s->version;
    return r;
}
