/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What `list` and `state` report about a container (container_info.c). */
#pragma once

#include "container.h"

/* Fill a ContainerInfo (and its Encryption, enc); its strings point into c and stay valid until
 * c changes. */
void container_info(const struct container *c, Trustme__ContainerInfo *info, Trustme__Encryption *enc);
