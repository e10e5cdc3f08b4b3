/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Tamper-proof objects: small values kept in the anchor table itself, so that they outlive the
 * store's directory (a wipe of the container's data) and share the table's TPM-anchored
 * freshness. Entry "sstore-tp/<store id>" lists the ids (the quota's count); entry
 * "sstore-tp/<store id>/<id>" holds the value sealed under the store's TP key. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "sstore.h"
#include "sstore_crypto.h"
#include "sstore_internal.h"

static int check_tp_id(const char *id, tm_err *err)
{
    size_t n = id ? strnlen(id, SSTORE_TP_ID_MAX + 1) : 0;
    bool ok = n > 0 && n <= SSTORE_TP_ID_MAX;
    for (size_t i = 0; ok && i < n; i++)
        ok = (id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z') || (id[i] >= '0' && id[i] <= '9') ||
             id[i] == '.' || id[i] == '_' || id[i] == '-';
    if (!ok)
        return tm_err_set(err, EINVAL, "a tamper-proof object id is 1..%d bytes of [A-Za-z0-9._-]", SSTORE_TP_ID_MAX);
    return 0;
}

static void index_name(const struct sstore *s, char out[160])
{
    snprintf(out, 160, SSTORE_TP_PREFIX "%s", s->store_id);
}

static void value_name(const struct sstore *s, const char *id, char out[160])
{
    snprintf(out, 160, SSTORE_TP_PREFIX "%s/%s", s->store_id, id);
}

static size_t aad_of(const struct sstore *s, const char *id, uint8_t *aad)
{
    size_t sl = strlen(s->store_id), il = strlen(id);
    memcpy(aad, "tp", 3);
    memcpy(aad + 3, s->store_id, sl + 1);
    memcpy(aad + 4 + sl, id, il);
    return 4 + sl + il;
}

int tp_load_index(struct sstore *s, tm_err *err)
{
    char name[160];
    uint8_t v[128];
    size_t len = 0;
    bool found = false;
    int r;
    index_name(s, name);
    s->tp_n = 0;
    if ((r = s->anchor.get(s->anchor.ctx, name, v, &len, &found, err)) < 0)
        return r;
    for (size_t k = 0; found && k < len;) {
        const uint8_t *end = memchr(v + k, '\0', len - k);
        if (!end || s->tp_n >= SSTORE_TP_MAX)
            return tm_err_set(err, EBADMSG, "store %s: the tamper-proof index is malformed", s->store_id);
        snprintf(s->tp_ids[s->tp_n], sizeof(s->tp_ids[0]), "%.*s", (int)(end - (v + k)), (const char *)v + k);
        if (check_tp_id(s->tp_ids[s->tp_n], err) < 0)
            return -EBADMSG;
        s->tp_n++;
        k = (size_t)(end - v) + 1;
    }
    return 0;
}

static void index_value(char ids[][SSTORE_TP_ID_MAX + 1], size_t n, struct sstore_anchor_entry *e)
{
    e->len = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(ids[i]) + 1;
        memcpy(e->value + e->len, ids[i], l);
        e->len += l;
    }
    e->remove = n == 0;
}

static ssize_t tp_find(const struct sstore *s, const char *id)
{
    for (size_t i = 0; i < s->tp_n; i++)
        if (strcmp(s->tp_ids[i], id) == 0)
            return (ssize_t)i;
    return -1;
}

int sstore_tp_write(struct sstore *s, const char *id, const uint8_t *data, size_t len, tm_err *err)
{
    int r;
    if ((r = check_tp_id(id, err)) < 0)
        return r;
    if (len > SSTORE_TP_DATA_MAX)
        return tm_err_set(err, EFBIG, "a tamper-proof object holds at most %d bytes", SSTORE_TP_DATA_MAX);
    char ids[SSTORE_TP_MAX][SSTORE_TP_ID_MAX + 1];
    memcpy(ids, s->tp_ids, sizeof(ids));
    size_t n = s->tp_n;
    if (tp_find(s, id) < 0) {
        if (n >= SSTORE_TP_MAX)
            return tm_err_set(err, EDQUOT, "store %s holds its %d tamper-proof objects already", s->store_id,
                              SSTORE_TP_MAX);
        snprintf(ids[n++], sizeof(ids[0]), "%s", id);
    }
    struct sstore_anchor_entry e[2] = {0};
    uint8_t aad[SSTORE_STORE_ID_MAX + SSTORE_TP_ID_MAX + 8];
    size_t aad_len = aad_of(s, id, aad);
    value_name(s, id, e[0].name);
    if ((r = sstore_seal(s->keys->data + KEY_TP, aad, aad_len, data, len, e[0].value, err)) < 0)
        return r;
    e[0].len = len + SSTORE_NONCE_LEN + SSTORE_TAG_LEN;
    index_name(s, e[1].name);
    index_value(ids, n, &e[1]);
    if ((r = s->anchor.set(s->anchor.ctx, e, 2, err)) < 0)
        return tm_err_prefix(err, "anchoring tamper-proof object %s", id);
    memcpy(s->tp_ids, ids, sizeof(ids));
    s->tp_n = n;
    return 0;
}

int sstore_tp_read(struct sstore *s, const char *id, uint8_t *data, size_t *len, tm_err *err)
{
    int r;
    if ((r = check_tp_id(id, err)) < 0)
        return r;
    char name[160];
    uint8_t v[128];
    size_t vlen = 0;
    bool found = false;
    value_name(s, id, name);
    if ((r = s->anchor.get(s->anchor.ctx, name, v, &vlen, &found, err)) < 0)
        return r;
    if (!found)
        return tm_err_set(err, ENOENT, "no tamper-proof object %s", id);
    if (vlen < SSTORE_NONCE_LEN + SSTORE_TAG_LEN || vlen > SSTORE_TP_DATA_MAX + SSTORE_NONCE_LEN + SSTORE_TAG_LEN)
        return tm_err_set(err, EBADMSG, "tamper-proof object %s is malformed", id);
    uint8_t aad[SSTORE_STORE_ID_MAX + SSTORE_TP_ID_MAX + 8];
    size_t aad_len = aad_of(s, id, aad);
    if (sstore_open_sealed(s->keys->data + KEY_TP, aad, aad_len, v, vlen, data, NULL) < 0)
        return tm_err_set(err, EBADMSG,
                          "tamper-proof object %s does not authenticate (another store's, or the key changed)", id);
    *len = vlen - SSTORE_NONCE_LEN - SSTORE_TAG_LEN;
    return 0;
}

int sstore_tp_delete(struct sstore *s, const char *id, tm_err *err)
{
    int r;
    if ((r = check_tp_id(id, err)) < 0)
        return r;
    ssize_t at = tp_find(s, id);
    if (at < 0)
        return tm_err_set(err, ENOENT, "no tamper-proof object %s", id);
    char ids[SSTORE_TP_MAX][SSTORE_TP_ID_MAX + 1];
    memcpy(ids, s->tp_ids, sizeof(ids));
    size_t n = s->tp_n;
    memmove(ids[at], ids[at + 1], (n - (size_t)at - 1) * sizeof(ids[0]));
    n--;
    struct sstore_anchor_entry e[2] = {0};
    value_name(s, id, e[0].name);
    e[0].remove = true;
    index_name(s, e[1].name);
    index_value(ids, n, &e[1]);
    if ((r = s->anchor.set(s->anchor.ctx, e, 2, err)) < 0)
        return tm_err_prefix(err, "anchoring the removal of tamper-proof object %s", id);
    memcpy(s->tp_ids, ids, sizeof(ids));
    s->tp_n = n;
    return 0;
}
