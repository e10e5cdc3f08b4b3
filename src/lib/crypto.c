/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "crypto.h"

int tm_sha256_hex(const void *data, size_t len, char out[TM_SHA256_HEX_LEN + 1])
{
    uint8_t md[32];
    int r = tm_sha256(data, len, md);
    if (r < 0)
        return r;
    tm_hex(md, sizeof(md), out);
    return 0;
}
