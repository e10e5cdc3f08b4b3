/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A migration offer's life in the anchor table (migrate_spend.h, docs/MIGRATION.md). */
#include "migrate_spend.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "crypto.h"
#include "fileio.h"
#include "log.h"
#include "migrate_nonce.h"

#define PREFIX MIGRATE_OFFER_PREFIX
#define VALUE_LEN_V1 MIGRATE_OFFER_VALUE_LEN_V1 /* an older tpmd's entry: no source nonce kept */
#define VALUE_LEN MIGRATE_OFFER_VALUE_LEN
#define STATE_OPEN MIGRATE_OFFER_OPEN
#define STATE_SPENT MIGRATE_OFFER_SPENT /* spent, and no container was installed from it (so far) */
#define STATE_INSTALLED MIGRATE_OFFER_INSTALLED /* spent, and a container was installed from it: never a refusal */
#define SWEEP_MAX 32 /* entries swept per update: the table stays bounded, an update stays small */
#define PUB_MAX 4096

/* The entry's layout is migrate_nonce.h's (trustmed's migration endpoint reads it too). */

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static void rec_encode(const struct migrate_offer_entry *r, uint8_t out[VALUE_LEN])
{
    out[0] = r->state;
    put_u64(out + 1, r->created);
    put_u64(out + 9, r->expires);
    memcpy(out + 17, r->pub_sha256, 32);
    memcpy(out + VALUE_LEN_V1, r->nonce, MIGRATE_NONCE_LEN);
}

static bool rec_decode(const struct anchor_entry *e, struct migrate_offer_entry *r)
{
    return migrate_offer_entry_decode(e->value, e->len, r);
}

static uint64_t now_s(void)
{
    return (uint64_t)time(NULL);
}

static void remove_files(const char *data_dir, const char *offer_id)
{
    static const char *const suffix[] = {".pub", ".priv", ".pub.used", ".priv.used"};
    char p[PATH_MAX];
    for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
        snprintf(p, sizeof(p), "%s/migrate/%s%s", data_dir, offer_id, suffix[i]);
        (void)unlink(p);
    }
}

/* ENOLCK for any failure of the table itself: trustmed signs no refusal on it (the offer's state
 * is unknown), whatever the table's own code said. */
static int anchor_failed(tm_err *err, const char *what)
{
    tm_err_prefix(err, "%s", what);
    err->code = ENOLCK;
    return -ENOLCK;
}

static bool id_ok(const char *id)
{
    return id && strlen(id) == 32 && strspn(id, "0123456789abcdef") == 32;
}

static int ensure_loaded(ESYS_CONTEXT *esys, const char *data_dir, struct anchor_table *t, tm_err *err)
{
    int r = t->loaded ? 0 : anchor_load(esys, data_dir, t, err);
    return r < 0 ? anchor_failed(err, "offer: the anchor table") : 0;
}

int migrate_spend_open(ESYS_CONTEXT *esys, const char *data_dir, struct anchor_table *t, const char *offer_id,
                       const uint8_t *pub, size_t pub_len, const uint8_t *nonce, size_t nonce_len, uint32_t lifetime,
                       uint64_t *ret_expires, tm_err *err)
{
    if (nonce_len != MIGRATE_NONCE_LEN)
        return tm_err_set(err, EINVAL, "the source's nonce must be %d bytes", MIGRATE_NONCE_LEN);
    int r = ensure_loaded(esys, data_dir, t, err);
    if (r < 0)
        return r;
    if (lifetime == 0)
        lifetime = MIGRATE_OFFER_LIFETIME_DEFAULT;
    if (lifetime > MIGRATE_OFFER_LIFETIME_MAX)
        return tm_err_set(err, EINVAL, "an offer lives at most %d seconds", MIGRATE_OFFER_LIFETIME_MAX);
    uint64_t now = now_s();
    struct migrate_offer_entry rec = {
        .state = STATE_OPEN, .created = now, .expires = now + lifetime, .has_nonce = true};
    tm_sha256(pub, pub_len, rec.pub_sha256);
    memcpy(rec.nonce, nonce, MIGRATE_NONCE_LEN);
    uint8_t value[VALUE_LEN];
    rec_encode(&rec, value);
    char name[sizeof(PREFIX) + 64];
    snprintf(name, sizeof(name), PREFIX "%s", offer_id);

    /* Sweep what expired long ago, in the same NV write. The names are copied: the update
     * replaces the table they point into. */
    char swept[SWEEP_MAX][sizeof(PREFIX) + 64];
    struct anchor_change c[SWEEP_MAX + 1];
    size_t n = 0;
    for (size_t i = 0; i < t->n && n < SWEEP_MAX; i++) {
        struct migrate_offer_entry o;
        if (strncmp(t->e[i].name, PREFIX, strlen(PREFIX)) != 0 || strlen(t->e[i].name) >= sizeof(swept[0]))
            continue;
        if (rec_decode(&t->e[i], &o) && o.expires + MIGRATE_OFFER_KEEP_EXPIRED > now)
            continue;
        snprintf(swept[n], sizeof(swept[n]), "%s", t->e[i].name);
        c[n] = (struct anchor_change){.name = swept[n], .remove = true};
        n++;
    }
    c[n++] = (struct anchor_change){.name = name, .value = value, .len = sizeof(value)};
    if ((r = anchor_update(esys, data_dir, t, c, n, err)) < 0)
        return anchor_failed(err, "offer: anchoring it");
    for (size_t i = 0; i + 1 < n; i++) {
        remove_files(data_dir, swept[i] + strlen(PREFIX));
        log_info("migration offer %s swept (expired)", swept[i] + strlen(PREFIX));
    }
    *ret_expires = rec.expires;
    return 0;
}

static int mark(ESYS_CONTEXT *esys, const char *data_dir, struct anchor_table *t, const char *name,
                struct migrate_offer_entry *rec, uint8_t state, tm_err *err)
{
    rec->state = state;
    uint8_t value[VALUE_LEN];
    rec_encode(rec, value);
    struct anchor_change c = {.name = name, .value = value, .len = sizeof(value)};
    int r = anchor_update(esys, data_dir, t, &c, 1, err);
    return r < 0 ? anchor_failed(err, "offer: recording its state") : 0;
}

int migrate_spend(ESYS_CONTEXT *esys, const char *data_dir, struct anchor_table *t, const char *offer_id,
                  const uint8_t *source_ak_id, size_t source_ak_id_len, tm_err *err)
{
    if (!id_ok(offer_id))
        return tm_err_set(err, EINVAL, "an offer id is 32 lower-case hex digits");
    if (source_ak_id_len != MIGRATE_AK_ID_LEN)
        return tm_err_set(err, EINVAL, "the bundle signer's AK id must be %d bytes", MIGRATE_AK_ID_LEN);
    int r = ensure_loaded(esys, data_dir, t, err);
    if (r < 0)
        return r;
    char name[sizeof(PREFIX) + 64];
    snprintf(name, sizeof(name), PREFIX "%s", offer_id);
    const struct anchor_entry *e = anchor_find(t, name);
    struct migrate_offer_entry rec;
    if (!e)
        return tm_err_set(err, ENOENT,
                          "offer %s is unknown or was used already (this TPM has no record of it; a bundle imports "
                          "once)",
                          offer_id);
    if (!rec_decode(e, &rec))
        return tm_err_set(err, EBADMSG, "offer %s: its anchor entry is malformed", offer_id);
    /* The offer is good for the one source whose AK its nonce names, whatever its state: another
     * device of the PKI that saw the public offer spends nothing and gets no signed answer. */
    if (!rec.has_nonce)
        return tm_err_set(err, EPERM,
                          "source binding: offer %s keeps no source nonce (made by an older trustme): make a new "
                          "offer",
                          offer_id);
    if (!migrate_nonce_names(rec.nonce, source_ak_id))
        return tm_err_set(err, EPERM,
                          "source binding: offer %s was made for another source device (its nonce does not name "
                          "the AK that signed this bundle)",
                          offer_id);
    if (rec.state != STATE_OPEN) {
        /* The private blob of a spend that was killed before its decryption (or put back) goes:
         * it is of no use any more. */
        char p[PATH_MAX];
        snprintf(p, sizeof(p), "%s/migrate/%s.priv.used", data_dir, offer_id);
        (void)unlink(p);
        snprintf(p, sizeof(p), "%s/migrate/%s.priv", data_dir, offer_id);
        (void)unlink(p);
    }
    if (rec.state == STATE_INSTALLED)
        return tm_err_set(err, EALREADY,
                          "offer %s was used already: a container was installed from it here (a bundle imports once)",
                          offer_id);
    if (rec.state == STATE_SPENT)
        return tm_err_set(err, ESTALE,
                          "offer %s is unknown or was used already (spent here, as the TPM records; no container "
                          "installed)",
                          offer_id);
    if (now_s() >= rec.expires) {
        /* Spent now, so that no later clock (set back) makes it usable again. */
        if ((r = mark(esys, data_dir, t, name, &rec, STATE_SPENT, err)) < 0)
            return r;
        return tm_err_set(err, ETIME, "offer expired: offer %s was valid until %" PRIu64 " (unix time)", offer_id,
                          rec.expires);
    }
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/migrate/%s.pub", data_dir, offer_id);
    _cleanup_free_ char *pub = NULL;
    size_t len = 0;
    uint8_t got[32];
    if ((r = read_file(p, PUB_MAX, &pub, &len, err)) < 0) {
        /* Open in the TPM, its key gone from the disk: it never decrypts; a refusal is true. */
        if ((r = mark(esys, data_dir, t, name, &rec, STATE_SPENT, err)) < 0)
            return r;
        return tm_err_set(err, ESTALE, "offer %s: its key is gone from %s/migrate (spent now)", offer_id, data_dir);
    }
    tm_sha256(pub, len, got);
    if (memcmp(got, rec.pub_sha256, 32) != 0) {
        /* Spent too: a refusal may follow, and the genuine key must not decrypt after it. */
        if ((r = mark(esys, data_dir, t, name, &rec, STATE_SPENT, err)) < 0)
            return r;
        return tm_err_set(err, EBADMSG, "offer %s: the key in %s is not the one this TPM recorded for the offer",
                          offer_id, p);
    }
    return mark(esys, data_dir, t, name, &rec, STATE_SPENT, err);
}

int migrate_spend_installed(ESYS_CONTEXT *esys, const char *data_dir, struct anchor_table *t, const char *offer_id,
                            tm_err *err)
{
    if (!id_ok(offer_id))
        return tm_err_set(err, EINVAL, "an offer id is 32 lower-case hex digits");
    int r = ensure_loaded(esys, data_dir, t, err);
    if (r < 0)
        return r;
    char name[sizeof(PREFIX) + 64];
    snprintf(name, sizeof(name), PREFIX "%s", offer_id);
    const struct anchor_entry *e = anchor_find(t, name);
    struct migrate_offer_entry rec;
    if (!e || !rec_decode(e, &rec) || rec.state == STATE_OPEN)
        return tm_err_set(err, EINVAL, "offer %s: not spent here, so nothing was installed from it", offer_id);
    return rec.state == STATE_INSTALLED ? 0 : mark(esys, data_dir, t, name, &rec, STATE_INSTALLED, err);
}
