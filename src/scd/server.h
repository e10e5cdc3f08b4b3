/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include "token.h"

/* Serve trustmed on fd until it closes the connection (0) or the stream breaks (-errno). */
int server_run(int fd, const struct token_ctx *tctx);
