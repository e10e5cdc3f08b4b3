/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "migrate_nonce.h"

#include <string.h>

#include "crypto.h"

static void commitment(const uint8_t ak_id[MIGRATE_AK_ID_LEN], const uint8_t r[MIGRATE_NONCE_RANDOM_LEN],
                       uint8_t out[32])
{
    struct tm_sha256_ctx c;
    tm_sha256_init(&c);
    tm_sha256_update(&c, MIGRATE_NONCE_LABEL, strlen(MIGRATE_NONCE_LABEL));
    tm_sha256_update(&c, ak_id, MIGRATE_AK_ID_LEN);
    tm_sha256_update(&c, r, MIGRATE_NONCE_RANDOM_LEN);
    tm_sha256_final(&c, out);
}

void migrate_nonce_bind(const uint8_t ak_id[MIGRATE_AK_ID_LEN], uint8_t nonce[MIGRATE_NONCE_LEN])
{
    uint8_t h[32];
    commitment(ak_id, nonce, h);
    memcpy(nonce + MIGRATE_NONCE_RANDOM_LEN, h, MIGRATE_NONCE_LEN - MIGRATE_NONCE_RANDOM_LEN);
}

bool migrate_nonce_names(const uint8_t nonce[MIGRATE_NONCE_LEN], const uint8_t ak_id[MIGRATE_AK_ID_LEN])
{
    uint8_t h[32];
    commitment(ak_id, nonce, h);
    /* Public values on both sides: no need for a constant-time compare. */
    return memcmp(nonce + MIGRATE_NONCE_RANDOM_LEN, h, MIGRATE_NONCE_LEN - MIGRATE_NONCE_RANDOM_LEN) == 0;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

bool migrate_offer_entry_decode(const uint8_t *value, size_t len, struct migrate_offer_entry *ret)
{
    if ((len != MIGRATE_OFFER_VALUE_LEN && len != MIGRATE_OFFER_VALUE_LEN_V1) ||
        (value[0] != MIGRATE_OFFER_OPEN && value[0] != MIGRATE_OFFER_SPENT && value[0] != MIGRATE_OFFER_INSTALLED))
        return false;
    ret->state = value[0];
    ret->created = get_u64(value + 1);
    ret->expires = get_u64(value + 9);
    memcpy(ret->pub_sha256, value + 17, 32);
    ret->has_nonce = len == MIGRATE_OFFER_VALUE_LEN;
    memset(ret->nonce, 0, sizeof(ret->nonce));
    if (ret->has_nonce)
        memcpy(ret->nonce, value + MIGRATE_OFFER_VALUE_LEN_V1, MIGRATE_NONCE_LEN);
    return true;
}
