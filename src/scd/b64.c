/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "b64.h"

#include <errno.h>
#include <openssl/evp.h>
#include <string.h>

#define B64_MAX_CHARS (4 * ((B64_MAX_BYTES + 2) / 3))

void b64_encode(const uint8_t *in, size_t len, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}

int b64_decode_exact(const char *path, const char *s, uint8_t *out, size_t want, tm_err *err)
{
    if (want == 0 || want > B64_MAX_BYTES)
        return tm_err_set(err, EINVAL, "%s: cannot decode %zu bytes", path, want);
    size_t chars = 4 * ((want + 2) / 3), len = strlen(s);
    if (len != chars)
        return tm_err_set(err, EINVAL,
                          "%s: expected %zu bytes as %zu base64 characters, got %zu "
                          "characters",
                          path, want, chars, len);
    for (size_t i = 0; i < len; i++)
        if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=", s[i]))
            return tm_err_set(err, EINVAL, "%s: invalid base64 character at offset %zu", path, i);
    /* EVP_DecodeBlock counts padding as data and skips surrounding blanks; encoding the result
     * again and comparing settles every such detail at once. */
    uint8_t buf[B64_MAX_CHARS / 4 * 3];
    char again[B64_MAX_CHARS + 1];
    int n = EVP_DecodeBlock(buf, (const unsigned char *)s, (int)len);
    if (n < (int)want)
        return tm_err_set(err, EINVAL, "%s: not valid base64", path);
    b64_encode(buf, want, again);
    if (strcmp(again, s) != 0)
        return tm_err_set(err, EINVAL, "%s: not canonical base64 for %zu bytes", path, want);
    memcpy(out, buf, want);
    return 0;
}
