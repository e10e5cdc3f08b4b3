/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Code that runs outside trustmed: the setup process and the container's init (before exec). */
#pragma once

#include <sys/types.h>

#include "child.h"
#include "module.h"

/* The setup process: private mount namespace, setup hooks, then clone init with CLONE_PARENT
 * (so trustmed is init's parent) and report its pid. Never returns. */
_Noreturn void setup_main(struct start_ctx *ctx, pid_t daemon_pid);
/* The container's init: child hooks (root, pivot_root, hostname, caps, seccomp), then exec. */
_Noreturn void init_main(struct start_ctx *ctx);
/* The environment of a container process: defaults, then the config's, then extra (KEY=VALUE). */
char **build_env(const struct container_config *cfg, char *const *extra, size_t nextra);
