/* SPDX-License-Identifier: GPL-2.0-or-later */
/* `trustme migrate` (commands_migrate.c; docs/MIGRATION.md). */
#pragma once

#include "control.h"

/* MigrateRequest: offer, export, import, commit or abort, by its verb. */
void cmd_migrate(struct conn *conn, uint64_t id, const Trustme__Request *req);
