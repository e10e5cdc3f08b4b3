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
