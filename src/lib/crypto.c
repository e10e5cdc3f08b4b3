/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "crypto.h"

#include <string.h>

#include <nettle/hkdf.h>
#include <nettle/hmac.h>

int tm_sha256_hex(const void *data, size_t len, char out[TM_SHA256_HEX_LEN + 1])
{
    uint8_t md[32];
    int r = tm_sha256(data, len, md);
    if (r < 0)
        return r;
    tm_hex(md, sizeof(md), out);
    return 0;
}

void tm_hkdf_sha256(const void *ikm, size_t ikm_len, const void *salt, size_t salt_len, const void *info,
                    size_t info_len, uint8_t *out, size_t out_len)
{
    static const uint8_t zeros[SHA256_DIGEST_SIZE];
    struct hmac_sha256_ctx ctx;
    uint8_t prk[SHA256_DIGEST_SIZE];
    if (!salt) {
        salt = zeros;
        salt_len = sizeof(zeros);
    }
    hmac_sha256_set_key(&ctx, salt_len, salt);
    hkdf_extract(&ctx, (nettle_hash_update_func *)hmac_sha256_update, (nettle_hash_digest_func *)hmac_sha256_digest,
                 SHA256_DIGEST_SIZE, ikm_len, ikm, prk);
    hmac_sha256_set_key(&ctx, sizeof(prk), prk);
    hkdf_expand(&ctx, (nettle_hash_update_func *)hmac_sha256_update, (nettle_hash_digest_func *)hmac_sha256_digest,
                SHA256_DIGEST_SIZE, info_len, info, out_len, out);
    explicit_bzero(prk, sizeof(prk));
    explicit_bzero(&ctx, sizeof(ctx));
}
