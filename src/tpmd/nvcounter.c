/* Start values. TPM2_NV_Increment on a counter that was never written first sets it to the
 * largest value any counter on this TPM ever had (the TPM remembers the value of every deleted
 * counter, so a counter cannot be rolled back by deleting and redefining it), then adds one.
 * On a TPM that never deleted a counter, like a fresh swtpm, a new counter therefore reads 1
 * after its first increment; after deleted counters it may read far more (tests/unit/test_seal.c
 * checks both on swtpm 0.7).
 *
 * We keep the simplest correct model: the counter's value IS the highest version recorded. A
 * counter that starts above the version being recorded stays there, and that version is refused
 * with ESTALE, naming the reason: failing closed is the only choice that never lets an older
 * version in, and it cannot happen on a TPM where nobody deleted counters (trustme never
 * deletes one). Storing an offset would need a second, also rollback-proof, place. */
#include "nvcounter.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "crypto.h"
#include "tpm_util.h"

#define NV_BASE 0x01540000u
#define NV_SIZE 8
/* A counter, read and incremented with owner auth. authread/authwrite with the index's empty
 * authValue let anyone with TPM access count it up too: that can only make versions be refused,
 * never let an older one in, and tpmd is the only process with access to the TPM. */
#define NV_ATTRS                                                                                   \
    (TPMA_NV_OWNERREAD | TPMA_NV_OWNERWRITE | TPMA_NV_AUTHREAD | TPMA_NV_AUTHWRITE |             \
     ((TPMA_NV)TPM2_NT_COUNTER << TPMA_NV_TPM2_NT_SHIFT))
/* Set by the TPM as the index is used, not by its definer. */
#define NV_STATE_ATTRS (TPMA_NV_WRITTEN | TPMA_NV_READLOCKED | TPMA_NV_WRITELOCKED)

uint32_t nvcounter_index(const char *name)
{
    static const char prefix[] = "trustme-guestos:";
    struct tm_sha256_ctx c;
    uint8_t md[32];
    tm_sha256_init(&c);
    tm_sha256_update(&c, prefix, sizeof(prefix) - 1);
    tm_sha256_update(&c, name, strlen(name));
    tm_sha256_final(&c, md);
    return NV_BASE | ((uint32_t)md[0] << 8) | md[1];
}

struct counter {
    ESYS_TR tr;
    uint32_t index;
    bool written;
};

static void counter_close(ESYS_CONTEXT *esys, struct counter *c)
{
    /* An NV index handle is ESYS's record only: close it, never flush it. */
    if (c->tr != ESYS_TR_NONE)
        (void)Esys_TR_Close(esys, &c->tr);
    c->tr = ESYS_TR_NONE;
}

/* 0 and c->tr set: the index exists and is a trustme counter; -ENOENT (err untouched): it does
 * not exist; -EEXIST: it is someone else's. */
static int counter_open(ESYS_CONTEXT *esys, const char *name, struct counter *c, tm_err *err)
{
    *c = (struct counter){.tr = ESYS_TR_NONE, .index = nvcounter_index(name)};
    /* Asked first, because ESYS logs an ERROR to stderr for Esys_TR_FromTPMPublic on an index
     * that is not there, which is the normal case for a name never recorded. */
    TPMS_CAPABILITY_DATA *cap = NULL;
    TSS2_RC rc = Esys_GetCapability(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                    TPM2_CAP_HANDLES, c->index, 1, NULL, &cap);
    if (rc != TSS2_RC_SUCCESS)
        return tpm_err(err, rc, "cannot list NV indices");
    bool exists = cap->data.handles.count > 0 && cap->data.handles.handle[0] == c->index;
    Esys_Free(cap);
    if (!exists)
        return -ENOENT;
    rc = Esys_TR_FromTPMPublic(esys, c->index, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &c->tr);
    if (rc != TSS2_RC_SUCCESS) {
        c->tr = ESYS_TR_NONE;
        return tpm_err(err, rc, "cannot read the public area of NV index 0x%08x", c->index);
    }
    TPM2B_NV_PUBLIC *pub = NULL;
    rc = Esys_NV_ReadPublic(esys, c->tr, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, NULL);
    if (rc != TSS2_RC_SUCCESS) {
        counter_close(esys, c);
        return tpm_err(err, rc, "cannot read the public area of NV index 0x%08x", c->index);
    }
    const TPMS_NV_PUBLIC *p = &pub->nvPublic;
    int r = 0;
    if ((p->attributes & ~NV_STATE_ATTRS) != NV_ATTRS || p->dataSize != NV_SIZE ||
        p->nameAlg != TPM2_ALG_SHA256 || p->authPolicy.size != 0)
        r = tm_err_set(err, EEXIST,
                       "NV index 0x%08x (the anti-rollback counter of \"%s\") is defined, but "
                       "not as a trustme counter (attributes 0x%08x, %u bytes): someone else uses "
                       "it; trustme leaves it alone",
                       c->index, name, (unsigned)p->attributes, (unsigned)p->dataSize);
    else
        c->written = (p->attributes & TPMA_NV_WRITTEN) != 0;
    Esys_Free(pub);
    if (r < 0)
        counter_close(esys, c);
    return r;
}

static int counter_value(ESYS_CONTEXT *esys, struct counter *c, uint64_t *ret, tm_err *err)
{
    if (!c->written) {
        *ret = 0;
        return 0;
    }
    TPM2B_MAX_NV_BUFFER *data = NULL;
    TSS2_RC rc = Esys_NV_Read(esys, ESYS_TR_RH_OWNER, c->tr, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                              ESYS_TR_NONE, NV_SIZE, 0, &data);
    if (rc != TSS2_RC_SUCCESS)
        return tpm_err(err, rc, "cannot read NV counter 0x%08x", c->index);
    int r = 0;
    if (data->size != NV_SIZE)
        r = tm_err_set(err, EIO, "NV counter 0x%08x: read %u bytes, not %d", c->index,
                       (unsigned)data->size, NV_SIZE);
    else {
        uint64_t v = 0;
        for (int i = 0; i < NV_SIZE; i++)
            v = (v << 8) | data->buffer[i];
        *ret = v;
    }
    Esys_Free(data);
    return r;
}

static int counter_increment(ESYS_CONTEXT *esys, struct counter *c, tm_err *err)
{
    TSS2_RC rc = Esys_NV_Increment(esys, ESYS_TR_RH_OWNER, c->tr, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                   ESYS_TR_NONE);
    if (rc != TSS2_RC_SUCCESS)
        return tpm_err(err, rc, "cannot increment NV counter 0x%08x", c->index);
    c->written = true;
    return 0;
}

int nvcounter_read(ESYS_CONTEXT *esys, const char *name, uint64_t *ret_value, tm_err *err)
{
    struct counter c;
    int r = counter_open(esys, name, &c, err);
    if (r == -ENOENT) {
        *ret_value = 0;
        return 0;
    }
    if (r < 0)
        return r;
    r = counter_value(esys, &c, ret_value, err);
    counter_close(esys, &c);
    return r;
}

static int stale(tm_err *err, uint64_t value, uint64_t current)
{
    return tm_err_set(err, ESTALE, "version %llu is older than version %llu recorded in the TPM",
                      (unsigned long long)value, (unsigned long long)current);
}

int nvcounter_raise(ESYS_CONTEXT *esys, const char *name, uint64_t value, uint64_t *ret_value,
                    tm_err *err)
{
    struct counter c;
    uint64_t current = 0;
    int r = counter_open(esys, name, &c, err);
    if (r < 0 && r != -ENOENT)
        return r;
    bool defined = r == 0;
    if (defined && (r = counter_value(esys, &c, &current, err)) < 0)
        goto out;
    if (current > value) {
        r = stale(err, value, current);
        goto out;
    }
    if (value - current > NVCOUNTER_MAX_STEP) {
        r = tm_err_set(err, E2BIG,
                       "version %llu is more than %d versions above version %llu recorded in "
                       "the TPM (a TPM counter counts up by one)",
                       (unsigned long long)value, NVCOUNTER_MAX_STEP,
                       (unsigned long long)current);
        goto out;
    }
    if (value == current) { /* also: version 0 needs no counter */
        *ret_value = current;
        r = 0;
        goto out;
    }

    if (!defined) {
        TPM2B_AUTH no_auth = {0};
        TPM2B_NV_PUBLIC pub = {
            .nvPublic = {
                .nvIndex = c.index,
                .nameAlg = TPM2_ALG_SHA256,
                .attributes = NV_ATTRS,
                .dataSize = NV_SIZE,
            },
        };
        TSS2_RC rc = Esys_NV_DefineSpace(esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                         ESYS_TR_NONE, &no_auth, &pub, &c.tr);
        if (rc != TSS2_RC_SUCCESS) {
            c.tr = ESYS_TR_NONE;
            r = tpm_err(err, rc, "cannot define NV counter 0x%08x for \"%s\"", c.index, name);
            goto out;
        }
        c.written = false;
    }
    if (!c.written) {
        /* The first increment shows where this TPM starts the counter (see the top). */
        if ((r = counter_increment(esys, &c, err)) < 0 ||
            (r = counter_value(esys, &c, &current, err)) < 0)
            goto out;
        if (current > value) {
            r = tm_err_set(err, ESTALE,
                           "version %llu is older than version %llu recorded in the TPM: the TPM "
                           "started this GuestOS's new counter at %llu, above every counter it "
                           "deleted before",
                           (unsigned long long)value, (unsigned long long)current,
                           (unsigned long long)current);
            goto out;
        }
    }
    /* A failure part way leaves the counter between the old and the new value: still never
     * below a version that was recorded, and the next raise goes on from there. */
    for (; current < value; current++)
        if ((r = counter_increment(esys, &c, err)) < 0)
            goto out;
    r = counter_value(esys, &c, ret_value, err);
out:
    counter_close(esys, &c);
    return r;
}
