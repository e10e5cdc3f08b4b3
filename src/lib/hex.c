/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "hex.h"

#include <errno.h>
#include <string.h>

void tm_hex(const uint8_t *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0xf];
    }
    out[2 * len] = '\0';
}

int tm_hex_digit(char c, unsigned flags)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if ((flags & TM_HEX_ANY_CASE) && c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int tm_hex_decode(const char *hex, size_t hex_len, uint8_t *out, size_t n, unsigned flags, tm_err *err)
{
    if (hex_len % 2)
        return tm_err_set(err, EINVAL, "an odd number of hex digits (%zu)", hex_len);
    if (hex_len != 2 * n)
        return tm_err_set(err, EINVAL, "%zu hex digits where %zu are expected", hex_len, 2 * n);
    /* Check every digit before writing: out is left alone on failure. */
    for (size_t i = 0; i < hex_len; i++)
        if (tm_hex_digit(hex[i], flags) < 0)
            return tm_err_set(err, EINVAL, "character %zu is not a %shex digit", i + 1,
                              flags & TM_HEX_ANY_CASE ? "" : "lower-case ");
    for (size_t i = 0; i < n; i++)
        out[i] = (uint8_t)(tm_hex_digit(hex[2 * i], flags) << 4 | tm_hex_digit(hex[2 * i + 1], flags));
    return 0;
}

int tm_hex_decode_str(const char *hex, uint8_t *out, size_t n, unsigned flags, tm_err *err)
{
    return tm_hex_decode(hex, strlen(hex), out, n, flags, err);
}
