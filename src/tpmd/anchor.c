/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "anchor.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "crypto.h"
#include "fileio.h"
#include "hex.h"
#include "log.h"
#include "test_hooks.h"
#include "tpm_util.h"

#define MAGIC "trustme-anchor 1\n"
#define NV_SIZE 40
/* Owner auth only (empty on swtpm and on a TPM nobody took ownership of): tpmd is the only
 * process that talks to the TPM. NO_DA: a failed owner authorization of this index must not
 * count towards the TPM's global lockout. */
#define NV_ATTRS (TPMA_NV_OWNERREAD | TPMA_NV_OWNERWRITE | TPMA_NV_NO_DA)
#define NV_STATE_ATTRS (TPMA_NV_WRITTEN | TPMA_NV_READLOCKED | TPMA_NV_WRITELOCKED)
#define FILE_MAX ((size_t)ANCHOR_ENTRIES_MAX * (ANCHOR_NAME_MAX + 2 * ANCHOR_VALUE_MAX + 2) + 64)

int anchor_check_name(const char *name, tm_err *err)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > ANCHOR_NAME_MAX)
        return tm_err_set(err, EINVAL, "anchor name must have 1..%d bytes", ANCHOR_NAME_MAX);
    for (size_t i = 0; i < n; i++)
        if (name[i] < 0x21 || name[i] > 0x7e)
            return tm_err_set(err, EINVAL, "anchor name must be printable ASCII without spaces");
    return 0;
}

void anchor_free(struct anchor_table *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->e[i].name);
    free(t->e);
    *t = (struct anchor_table){0};
}

const struct anchor_entry *anchor_find(const struct anchor_table *t, const char *name)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(t->e[mid].name, name);
        if (c == 0)
            return &t->e[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

bool anchor_holds(const struct anchor_table *t, const char *name, const uint8_t *value, size_t len, bool absent)
{
    const struct anchor_entry *e = anchor_find(t, name);
    if (absent || !e)
        return absent && !e;
    return e->len == len && (len == 0 || memcmp(e->value, value, len) == 0);
}

/* ---- the file ---------------------------------------------------------------------------------- */

/* Strict: exactly the form serialize() writes, so one table has one digest. */
int anchor_parse(const char *data, size_t len, struct anchor_table *ret, tm_err *err)
{
    struct anchor_table t = {0};
    const char *p = data, *end = data + len;
    if (len < sizeof(MAGIC) - 1 || memcmp(p, MAGIC, sizeof(MAGIC) - 1) != 0)
        return tm_err_set(err, EBADMSG, "not an anchor table");
    p += sizeof(MAGIC) - 1;
    if (end - p < 9 || memcmp(p, "version ", 8) != 0 || p[8] < '0' || p[8] > '9')
        return tm_err_set(err, EBADMSG, "anchor table: no version line");
    /* Digits up to end, not strtoull: data need not be NUL-terminated. */
    uint64_t v = 0;
    const char *e = p + 8;
    for (; e < end && *e >= '0' && *e <= '9'; e++) {
        if (v > (UINT64_MAX - (uint64_t)(*e - '0')) / 10)
            return tm_err_set(err, EBADMSG, "anchor table: bad version line");
        v = v * 10 + (uint64_t)(*e - '0');
    }
    if (e >= end || *e != '\n')
        return tm_err_set(err, EBADMSG, "anchor table: bad version line");
    t.version = v;
    p = e + 1;
    int r = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *sp = nl ? memchr(p, ' ', (size_t)(nl - p)) : NULL;
        if (!nl || !sp) {
            r = tm_err_set(err, EBADMSG, "anchor table: malformed line %zu", t.n + 1);
            goto fail;
        }
        size_t hexlen = (size_t)(nl - sp - 1);
        if (t.n == ANCHOR_ENTRIES_MAX || hexlen % 2 || hexlen / 2 > ANCHOR_VALUE_MAX) {
            r = tm_err_set(err, EBADMSG, "anchor table: line %zu too long", t.n + 1);
            goto fail;
        }
        if (t.n % 64 == 0) {
            struct anchor_entry *ne = realloc(t.e, (t.n + 64) * sizeof(*ne));
            if (!ne) {
                r = tm_err_set(err, ENOMEM, "out of memory");
                goto fail;
            }
            t.e = ne;
        }
        struct anchor_entry *en = &t.e[t.n];
        *en = (struct anchor_entry){.name = strndup(p, (size_t)(sp - p)), .len = hexlen / 2};
        if (!en->name) {
            r = tm_err_set(err, ENOMEM, "out of memory");
            goto fail;
        }
        t.n++;
        if (anchor_check_name(en->name, NULL) < 0 || (t.n > 1 && strcmp(t.e[t.n - 2].name, en->name) >= 0)) {
            r = tm_err_set(err, EBADMSG, "anchor table: bad or unsorted name on line %zu", t.n);
            goto fail;
        }
        if (tm_hex_decode(sp + 1, hexlen, en->value, en->len, 0, NULL) < 0) {
            r = tm_err_set(err, EBADMSG, "anchor table: bad value on line %zu", t.n);
            goto fail;
        }
        p = nl + 1;
    }
    t.loaded = true;
    *ret = t;
    return 0;
fail:
    anchor_free(&t);
    return r;
}

static int serialize(const struct anchor_table *t, char **ret, size_t *ret_len, tm_err *err)
{
    size_t cap = 64;
    for (size_t i = 0; i < t->n; i++)
        cap += strlen(t->e[i].name) + 2 * t->e[i].len + 2;
    char *buf = malloc(cap);
    if (!buf)
        return tm_err_set(err, ENOMEM, "out of memory");
    size_t n = (size_t)snprintf(buf, cap, MAGIC "version %llu\n", (unsigned long long)t->version);
    for (size_t i = 0; i < t->n; i++) {
        size_t l = strlen(t->e[i].name);
        memcpy(buf + n, t->e[i].name, l);
        n += l;
        buf[n++] = ' ';
        tm_hex(t->e[i].value, t->e[i].len, buf + n);
        n += 2 * t->e[i].len;
        buf[n++] = '\n';
    }
    *ret = buf;
    *ret_len = n;
    return 0;
}

/* ---- the NV index ------------------------------------------------------------------------------ */

struct nv {
    ESYS_TR tr;
    bool defined, written;
    uint64_t version;
    uint8_t digest[32];
};

static void nv_close(ESYS_CONTEXT *esys, struct nv *nv)
{
    if (nv->tr != ESYS_TR_NONE)
        (void)Esys_TR_Close(esys, &nv->tr);
    nv->tr = ESYS_TR_NONE;
}

static int nv_open(ESYS_CONTEXT *esys, struct nv *nv, tm_err *err)
{
    *nv = (struct nv){.tr = ESYS_TR_NONE};
    TPMS_CAPABILITY_DATA *cap = NULL;
    TSS2_RC rc = Esys_GetCapability(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_HANDLES, ANCHOR_NV_INDEX,
                                    1, NULL, &cap);
    if (rc != TSS2_RC_SUCCESS)
        return tpm_err(err, rc, "cannot list NV indices");
    nv->defined = cap->data.handles.count > 0 && cap->data.handles.handle[0] == ANCHOR_NV_INDEX;
    Esys_Free(cap);
    if (!nv->defined)
        return 0;
    rc = Esys_TR_FromTPMPublic(esys, ANCHOR_NV_INDEX, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &nv->tr);
    if (rc != TSS2_RC_SUCCESS) {
        nv->tr = ESYS_TR_NONE;
        return tpm_err(err, rc, "cannot read the public area of NV index 0x%08x", ANCHOR_NV_INDEX);
    }
    TPM2B_NV_PUBLIC *pub = NULL;
    rc = Esys_NV_ReadPublic(esys, nv->tr, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, NULL);
    if (rc != TSS2_RC_SUCCESS) {
        nv_close(esys, nv);
        return tpm_err(err, rc, "cannot read the public area of NV index 0x%08x", ANCHOR_NV_INDEX);
    }
    const TPMS_NV_PUBLIC *p = &pub->nvPublic;
    bool ours = (p->attributes & ~NV_STATE_ATTRS) == NV_ATTRS && p->dataSize == NV_SIZE &&
                p->nameAlg == TPM2_ALG_SHA256 && p->authPolicy.size == 0;
    nv->written = (p->attributes & TPMA_NV_WRITTEN) != 0;
    Esys_Free(pub);
    if (!ours) {
        nv_close(esys, nv);
        return tm_err_set(err, EEXIST,
                          "NV index 0x%08x (the anchor table's) is defined, but "
                          "not by trustme: someone else uses it; trustme leaves it alone",
                          ANCHOR_NV_INDEX);
    }
    if (!nv->written)
        return 0;
    TPM2B_MAX_NV_BUFFER *data = NULL;
    rc = Esys_NV_Read(esys, ESYS_TR_RH_OWNER, nv->tr, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, NV_SIZE, 0, &data);
    if (rc != TSS2_RC_SUCCESS) {
        nv_close(esys, nv);
        return tpm_err(err, rc, "cannot read NV index 0x%08x", ANCHOR_NV_INDEX);
    }
    int r = 0;
    if (data->size != NV_SIZE) {
        r = tm_err_set(err, EIO, "NV index 0x%08x: read %u bytes", ANCHOR_NV_INDEX, (unsigned)data->size);
    } else {
        nv->version = 0;
        for (int i = 0; i < 8; i++)
            nv->version = nv->version << 8 | data->buffer[i];
        memcpy(nv->digest, data->buffer + 8, 32);
    }
    Esys_Free(data);
    if (r < 0)
        nv_close(esys, nv);
    return r;
}

/* The index of a previous update read again (its version and digest): 0, or <0 when the
 * handle no longer reads (then the caller lists and checks the index afresh). */
static int nv_reread(ESYS_CONTEXT *esys, ESYS_TR tr, struct nv *nv)
{
    *nv = (struct nv){.tr = ESYS_TR_NONE};
    TPM2B_MAX_NV_BUFFER *data = NULL;
    TSS2_RC rc =
        Esys_NV_Read(esys, ESYS_TR_RH_OWNER, tr, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, NV_SIZE, 0, &data);
    if (rc != TSS2_RC_SUCCESS)
        return -EIO;
    int r = data->size == NV_SIZE ? 0 : -EIO;
    if (r == 0) {
        for (int i = 0; i < 8; i++)
            nv->version = nv->version << 8 | data->buffer[i];
        memcpy(nv->digest, data->buffer + 8, 32);
        nv->tr = tr;
        nv->defined = nv->written = true;
    }
    Esys_Free(data);
    return r;
}

static int nv_write(ESYS_CONTEXT *esys, struct nv *nv, uint64_t version, const uint8_t digest[32], tm_err *err)
{
    TSS2_RC rc;
    if (!nv->defined) {
        TPM2B_AUTH no_auth = {0};
        TPM2B_NV_PUBLIC pub = {
            .nvPublic = {
                .nvIndex = ANCHOR_NV_INDEX, .nameAlg = TPM2_ALG_SHA256, .attributes = NV_ATTRS, .dataSize = NV_SIZE}};
        rc = Esys_NV_DefineSpace(esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &no_auth, &pub,
                                 &nv->tr);
        if (rc != TSS2_RC_SUCCESS) {
            nv->tr = ESYS_TR_NONE;
            return tpm_err(err, rc, "cannot define NV index 0x%08x for the anchor table", ANCHOR_NV_INDEX);
        }
        nv->defined = true;
    }
    TPM2B_MAX_NV_BUFFER data = {.size = NV_SIZE};
    for (int i = 0; i < 8; i++)
        data.buffer[i] = (uint8_t)(version >> (56 - 8 * i));
    memcpy(data.buffer + 8, digest, 32);
    rc = Esys_NV_Write(esys, ESYS_TR_RH_OWNER, nv->tr, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &data, 0);
    if (rc != TSS2_RC_SUCCESS)
        return tpm_err(err, rc, "cannot write NV index 0x%08x", ANCHOR_NV_INDEX);
    nv->written = true;
    nv->version = version;
    memcpy(nv->digest, digest, 32);
    return 0;
}

/* ---- load and update --------------------------------------------------------------------------- */

/* The files a table can be in: the two slots, then the two names tables had before the slots
 * (a data dir from an older trustme: adopted into a slot at the first load). */
enum { SLOT0, SLOT1, LEGACY, LEGACY_NEW, N_FILES };
static const char *const file_names[N_FILES] = {"anchor.table.0", "anchor.table.1", "anchor.table", "anchor.table.new"};

struct table_file {
    char path[PATH_MAX];
    char *data;
    size_t len;
    uint8_t digest[32];
    bool have;
};

static void file_path(const char *dir, int i, char *buf, size_t size)
{
    snprintf(buf, size, "%s/%s", dir, file_names[i]);
}

/* 0 (f->have says whether it exists), or <0 when it cannot be read (not a regular file, too large). */
static int read_table(const char *dir, int i, struct table_file *f, tm_err *err)
{
    file_path(dir, i, f->path, sizeof(f->path));
    tm_err rerr = {0};
    int r = read_file(f->path, FILE_MAX, &f->data, &f->len, &rerr);
    if (r == -ENOENT)
        return 0;
    if (r < 0) {
        *err = rerr;
        return r;
    }
    f->have = true;
    tm_sha256(f->data, f->len, f->digest);
    return 0;
}

/* The version a table file claims, for the error message only (it is not to be believed). */
static unsigned long long claimed_version(const char *data, size_t len)
{
    const char *v = len > sizeof(MAGIC) + 8 ? memmem(data, len, "version ", 8) : NULL;
    return v ? strtoull(v + 8, NULL, 10) : 0;
}

static void drop_files(struct table_file *f, int from, int to)
{
    for (int i = from; i < to; i++)
        if (f[i].have)
            unlink(f[i].path);
}

int anchor_load(ESYS_CONTEXT *esys, const char *dir, struct anchor_table *t, tm_err *err)
{
    anchor_free(t);
    struct nv nv;
    int r = nv_open(esys, &nv, err);
    if (r < 0)
        return r;
    nv_close(esys, &nv);
    struct table_file f[N_FILES] = {0};
    for (int i = 0; i < N_FILES && r == 0; i++)
        r = read_table(dir, i, &f[i], err);
    if (r < 0)
        goto out;
    unsigned long long newest = 0;
    bool any = false;
    for (int i = 0; i < N_FILES; i++)
        if (f[i].have) {
            any = true;
            unsigned long long cv = claimed_version(f[i].data, f[i].len);
            newest = cv > newest ? cv : newest;
        }

    if (!nv.written) {
        /* Never anchored: a table here did not come from this TPM's history. A slot claiming
         * version 1 (or nothing readable) is a first update that crashed before its NV write, as
         * is a .new from before the slots. */
        if (f[LEGACY].have || newest > 1) {
            r = tm_err_set(err, EBADMSG,
                           "the anchor table in %s exists (claims version %llu) but this TPM holds "
                           "no anchor for it: the TPM was cleared or replaced, or the table "
                           "was copied from another device; refusing it",
                           dir, newest);
            goto out;
        }
        drop_files(f, SLOT0, N_FILES);
        t->loaded = true;
        goto out;
    }
    /* The table is the file whose SHA-256 the TPM holds, whichever name it has (the digest pins
     * every byte, so a copy is the same table). */
    int use = -1, slot = (int)(nv.version % 2);
    for (int i = 0; i < N_FILES && use < 0; i++) {
        int j = i < 2 ? (slot + i) % 2 : i; /* its own slot first */
        if (f[j].have && memcmp(f[j].digest, nv.digest, 32) == 0)
            use = j;
    }
    if (use < 0) {
        if (!any)
            r = tm_err_set(err, ENOENT,
                           "%s/anchor.table is missing, but the TPM anchors version %llu of "
                           "it: refusing to start from an empty table",
                           dir, (unsigned long long)nv.version);
        else if (newest < nv.version)
            r = tm_err_set(err, ESTALE,
                           "%s/anchor.table is older (claims version %llu) than version %llu "
                           "anchored in the TPM: a restored copy; refusing it",
                           dir, newest, (unsigned long long)nv.version);
        else
            r = tm_err_set(err, EBADMSG,
                           "%s/anchor.table does not match the digest of version %llu anchored "
                           "in the TPM: it was edited or replaced; refusing it",
                           dir, (unsigned long long)nv.version);
        goto out;
    }
    if ((r = anchor_parse(f[use].data, f[use].len, t, err)) < 0) {
        tm_err_prefix(err, "%s", f[use].path);
        goto out;
    }
    if (t->version != nv.version) {
        anchor_free(t);
        r = tm_err_set(err, EBADMSG, "%s: version %llu inside, %llu in the TPM", f[use].path,
                       (unsigned long long)t->version, (unsigned long long)nv.version);
        goto out;
    }
    if (use != slot) {
        /* Not in its own slot (a table from before the slots, or a copy put into the other slot,
         * which the next update overwrites in place): write it there before anything relies on
         * that slot. The same bytes, so a crash here changes nothing. */
        if ((r = write_file_in_place(f[slot].path, f[use].data, f[use].len, 0600, err)) < 0) {
            anchor_free(t);
            goto out;
        }
    }
    drop_files(f, LEGACY, N_FILES); /* no longer read once the slot holds the table */
out:
    for (int i = 0; i < N_FILES; i++)
        free(f[i].data);
    return r;
}

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const struct anchor_entry *)a)->name, ((const struct anchor_entry *)b)->name);
}

/* t with the changes applied, as a new table (t untouched). */
static int apply(const struct anchor_table *t, const struct anchor_change *c, size_t n, struct anchor_table *ret,
                 tm_err *err)
{
    struct anchor_table nt = {.version = t->version + 1, .loaded = true};
    nt.e = calloc(t->n + n + 1, sizeof(*nt.e));
    if (!nt.e)
        return tm_err_set(err, ENOMEM, "out of memory");
    int r = 0;
    for (size_t i = 0; i < t->n; i++) {
        nt.e[nt.n] = t->e[i];
        if (!(nt.e[nt.n].name = strdup(t->e[i].name))) {
            r = tm_err_set(err, ENOMEM, "out of memory");
            goto fail;
        }
        nt.n++;
    }
    for (size_t i = 0; i < n; i++) {
        struct anchor_entry *hit = NULL;
        for (size_t j = 0; j < nt.n; j++)
            if (strcmp(nt.e[j].name, c[i].name) == 0)
                hit = &nt.e[j];
        if (c[i].remove) {
            if (hit) {
                free(hit->name);
                *hit = nt.e[--nt.n];
            }
            continue;
        }
        if (!hit) {
            if (nt.n == ANCHOR_ENTRIES_MAX) {
                r = tm_err_set(err, ENOSPC, "the anchor table is full (%d entries)", ANCHOR_ENTRIES_MAX);
                goto fail;
            }
            hit = &nt.e[nt.n];
            *hit = (struct anchor_entry){.name = strdup(c[i].name)};
            if (!hit->name) {
                r = tm_err_set(err, ENOMEM, "out of memory");
                goto fail;
            }
            nt.n++;
        }
        memcpy(hit->value, c[i].value, c[i].len);
        hit->len = c[i].len;
    }
    qsort(nt.e, nt.n, sizeof(*nt.e), cmp_entry);
    *ret = nt;
    return 0;
fail:
    anchor_free(&nt);
    return r;
}

int anchor_update(ESYS_CONTEXT *esys, const char *dir, struct anchor_table *t, const struct anchor_change *c, size_t n,
                  tm_err *err)
{
    if (!t->loaded)
        return tm_err_set(err, EIO, "the anchor table is not loaded");
    if (n > ANCHOR_ENTRIES_MAX)
        return tm_err_set(err, E2BIG, "too many changes in one update");
    for (size_t i = 0; i < n; i++) {
        int r = anchor_check_name(c[i].name, err);
        if (r < 0)
            return r;
        if (!c[i].remove && (c[i].len > ANCHOR_VALUE_MAX || (c[i].len && !c[i].value)))
            return tm_err_set(err, EINVAL, "anchor value of \"%s\": at most %d bytes", c[i].name, ANCHOR_VALUE_MAX);
    }
    struct anchor_table nt;
    int r = apply(t, c, n, &nt, err);
    if (r < 0)
        return r;
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    uint8_t digest[32];
    struct nv nv = {.tr = ESYS_TR_NONE};
    if ((r = serialize(&nt, &data, &len, err)) < 0)
        goto fail;
    tm_sha256(data, len, digest);
    /* Check the TPM still holds the version we have: a table replaced under a running tpmd
     * can't be, but another tpmd on the same TPM (a second data dir) can have moved it. The
     * index as the last update found it (listed, its public area checked to be trustme's) is
     * only read again: two TPM commands fewer per update. */
    bool cached = t->nv_cached;
    t->nv_cached = false;
    if (!cached || (r = nv_reread(esys, t->nv_tr, &nv)) < 0) {
        if (cached)
            (void)Esys_TR_Close(esys, &t->nv_tr);
        if ((r = nv_open(esys, &nv, err)) < 0)
            goto fail;
    }
    if (nv.written ? nv.version != t->version : t->version != 0) {
        r = tm_err_set(err, ESTALE,
                       "the TPM anchors version %llu of the anchor table, this "
                       "process has version %llu: another trustme on this TPM? refusing",
                       (unsigned long long)nv.version, (unsigned long long)t->version);
        goto fail_nv;
    }
    /* The slot of the new version holds the version before the current one (or nothing yet):
     * dead, so it is written in place, one fdatasync, no temporary file, rename or directory
     * sync (but for its first write). It must be on the disk before the NV write names it. */
    char path[PATH_MAX];
    file_path(dir, (int)(nt.version % 2), path, sizeof(path));
    if ((r = write_file_in_place(path, data, len, 0600, err)) < 0)
        goto fail_nv;
    /* A failed NV write leaves the slot as written: when the TPM did the write and only its
     * answer was lost (the swtpm killed mid-command), the slot is the table the TPM now vouches
     * for, and the next load finds it; when the TPM did not, it is dead as before. */
    if ((r = nv_write(esys, &nv, nt.version, digest, err)) < 0)
        goto fail_nv;
    test_crash_point(dir, "tpmd-anchor-written"); /* the TPM wrote it, the caller never hears */
    /* From here the TPM holds the new version, and its slot is the table. */
    anchor_free(t);
    *t = nt;
    t->nv_cached = true; /* kept open for the next update */
    t->nv_tr = nv.tr;
    return 0;
fail_nv:
    nv_close(esys, &nv);
fail:
    anchor_free(&nt);
    return r;
}
