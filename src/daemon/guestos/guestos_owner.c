/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "guestos_owner.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "crypto.h"
#include "guestos.h"
#include "hex.h"

void guestos_anchor_name(const char *name, char out[GUESTOS_ANCHOR_NAME_MAX + 1])
{
    snprintf(out, GUESTOS_ANCHOR_NAME_MAX + 1, "guestos/%s", name);
}

int guestos_anchor_parse(const ProtobufCBinaryData *value, struct guestos_anchor *ret, tm_err *err)
{
    *ret = (struct guestos_anchor){0};
    if (!value)
        return 0;
    if (value->len != GUESTOS_ANCHOR_VALUE_LEN)
        return tm_err_set(err, EBADMSG, "the TPM-anchored GuestOS entry has %zu bytes, not %d", value->len,
                          GUESTOS_ANCHOR_VALUE_LEN);
    for (int i = 0; i < 8; i++)
        ret->version = (ret->version << 8) | value->data[i];
    static const uint8_t zero[32];
    if (memcmp(value->data + 8, zero, 32) != 0)
        tm_hex(value->data + 8, 32, ret->owner);
    return 0;
}

void guestos_anchor_encode(const struct guestos_anchor *a, uint8_t out[GUESTOS_ANCHOR_VALUE_LEN])
{
    memset(out, 0, GUESTOS_ANCHOR_VALUE_LEN);
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(a->version >> (56 - 8 * i));
    /* owner is empty (no owner yet: zeros) or tm_hex's 64 digits */
    (void)tm_hex_decode_str(a->owner, out + 8, 32, 0, NULL);
}

void guestos_owner_want(struct daemon *d, const char *name, const struct guestos_anchor *a, char ret[65],
                        bool *ret_bound)
{
    *ret_bound = false;
    for (size_t i = 0; i < d->device.n_guestos_owners; i++)
        if (strcmp(d->device.guestos_owners[i].name, name) == 0) {
            memcpy(ret, d->device.guestos_owners[i].ca_sha256, 65);
            *ret_bound = true;
            return;
        }
    memcpy(ret, a->owner, 65);
    if (ret[0])
        return;
    /* Nothing anchored with an owner, but the store holds signed versions of the name: a crash
     * between an install's store write and its anchor write, or a store from before the anchor
     * table (both anchored at the next container start). Until then the store's record says
     * whose the name is; otherwise any registered vendor could take the name in that window. */
    for (const struct guestos *g = d->guestos; g; g = g->next)
        if (strcmp(g->cfg->name, name) == 0 && g->ca_sha256[0])
            memcpy(ret, g->ca_sha256, 65); /* sorted: the newest signed version's wins */
}
