/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "measurement.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "crypto.h"

static const char *const event_types[] = {TM_EVENT_BINARY,        TM_EVENT_DEVICE_CONFIG,    TM_EVENT_GUESTOS_CONFIG,
                                          TM_EVENT_GUESTOS_IMAGE, TM_EVENT_CONTAINER_CONFIG, TM_EVENT_VTPM_EK,
                                          TM_EVENT_VTPM_OWNER};

int tm_event_check(uint32_t pcr, const char *type, const char *name, size_t sha256_len, tm_err *err)
{
    if (pcr > TM_PCR_MAX)
        return tm_err_set(err, EINVAL, "event PCR %u is not 0..%d", pcr, TM_PCR_MAX);
    bool known = false;
    for (size_t i = 0; type && i < sizeof(event_types) / sizeof(event_types[0]); i++)
        known |= strcmp(type, event_types[i]) == 0;
    if (!known)
        return tm_err_set(err, EINVAL, "event type %s is unknown", type ? type : "(missing)");
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > TM_EVENT_NAME_MAX)
        return tm_err_set(err, EINVAL, "event name must have 1..%d bytes", TM_EVENT_NAME_MAX);
    for (size_t i = 0; i < n; i++)
        if (name[i] < 0x20 || name[i] > 0x7e)
            return tm_err_set(err, EINVAL,
                              "event name has a byte 0x%02x that is not printable "
                              "ASCII",
                              (unsigned char)name[i]);
    if (sha256_len != 32)
        return tm_err_set(err, EINVAL, "event hash has %zu bytes, not 32", sha256_len);
    return 0;
}

static void put_len16(struct tm_sha256_ctx *c, const char *s)
{
    size_t n = strlen(s);
    uint8_t be[2] = {(uint8_t)(n >> 8), (uint8_t)n};
    tm_sha256_update(c, be, sizeof(be));
    tm_sha256_update(c, s, n);
}

void tm_event_digest(uint32_t pcr, const char *type, const char *name, const uint8_t sha256[32], uint8_t out[32])
{
    static const char tag[] = "trustme-event-v1";
    uint8_t be[4] = {(uint8_t)(pcr >> 24), (uint8_t)(pcr >> 16), (uint8_t)(pcr >> 8), (uint8_t)pcr};
    struct tm_sha256_ctx c;
    tm_sha256_init(&c);
    tm_sha256_update(&c, tag, sizeof(tag) - 1);
    tm_sha256_update(&c, be, sizeof(be));
    put_len16(&c, type);
    put_len16(&c, name);
    tm_sha256_update(&c, sha256, 32);
    tm_sha256_final(&c, out);
}

void tm_pcr_extend(uint8_t pcr_value[32], const uint8_t digest[32])
{
    struct tm_sha256_ctx c;
    tm_sha256_init(&c);
    tm_sha256_update(&c, pcr_value, 32);
    tm_sha256_update(&c, digest, 32);
    tm_sha256_final(&c, pcr_value);
}
