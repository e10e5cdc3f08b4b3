/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "uuid.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

int tm_uuid_new(char out[TM_UUID_STR_LEN + 1])
{
    uint8_t b[16];
    if (getrandom(b, sizeof(b), 0) != sizeof(b))
        return -errno;
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    snprintf(out, TM_UUID_STR_LEN + 1, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
    return 0;
}

bool tm_uuid_valid(const char *s)
{
    if (strlen(s) != TM_UUID_STR_LEN)
        return false;
    for (int i = 0; i < TM_UUID_STR_LEN; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
            return false;
    }
    return true;
}
