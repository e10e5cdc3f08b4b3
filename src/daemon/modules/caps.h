/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

/* Capabilities removed from a container's processes (bit n = capability n). */
uint64_t caps_drop_mask(const struct container_config *cfg, bool userns);
/* What a config keeps of the default drops without a user namespace: there the container's root
 * is the host's root, and any of them reaches beyond the container (docs/SECURITY.md
 * "Privileged containers"). 0 for a container with a user namespace, where the kernel checks such
 * capabilities against the host's namespace and the container's root has none there. */
uint64_t caps_privileged(const struct container_config *cfg);
/* "CAP_SYS_ADMIN,CAP_SYS_PTRACE" for a mask (cut short if out is too small). */
void caps_names(uint64_t mask, char *out, size_t size);
