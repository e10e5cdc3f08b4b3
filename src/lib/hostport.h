/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A network address as the command lines and configuration take it: HOST:PORT, or [IPv6]:PORT. */
#pragma once

#include "error.h"

#define TM_HOST_MAX 256 /* a host name or address, with its NUL */
#define TM_PORT_MAX 6 /* "65535" and its NUL */

/* Split s into host (without the brackets) and port (decimal, min_port..65535: 0 lets a listener
 * take any free port). EINVAL naming s for anything else, e.g. an IPv6 address without brackets. */
int tm_split_hostport(const char *s, unsigned min_port, char host[TM_HOST_MAX], char port[TM_PORT_MAX], tm_err *err);
