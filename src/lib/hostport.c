/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "hostport.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int tm_split_hostport(const char *s, unsigned min_port, char host[TM_HOST_MAX], char port[TM_PORT_MAX], tm_err *err)
{
    const char *h = s, *colon;
    size_t hlen;
    if (*s == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':')
            return tm_err_set(err, EINVAL, "%s: expected [IPv6]:PORT", s);
        h = s + 1;
        hlen = (size_t)(end - h);
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || strchr(s, ':') != colon)
            return tm_err_set(err, EINVAL, "%s: expected HOST:PORT (an IPv6 address in [])", s);
        hlen = (size_t)(colon - s);
    }
    const char *p = colon + 1;
    size_t plen = strlen(p);
    bool digits = plen > 0 && plen < TM_PORT_MAX && strspn(p, "0123456789") == plen;
    unsigned long v = digits ? strtoul(p, NULL, 10) : 0;
    if (hlen == 0 || hlen >= TM_HOST_MAX || !digits || v < min_port || v > 65535)
        return tm_err_set(err, EINVAL, "%s: expected HOST:PORT with a port %u..65535", s, min_port);
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    snprintf(port, TM_PORT_MAX, "%lu", v);
    return 0;
}
