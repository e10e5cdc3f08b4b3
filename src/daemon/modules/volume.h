/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include "config.h"
#include "error.h"

/* Check at create time that the config's root file system exists and is what it says. */
int volume_check_rootfs(const struct container_config *cfg, tm_err *err);
