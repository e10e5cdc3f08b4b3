/* SPDX-License-Identifier: GPL-2.0-or-later */
/* `trustme migrate` (commands_migrate.c; docs/MIGRATION.md). */
#pragma once

#include "control.h"

/* MigrateRequest: offer, export, import, commit or abort, by its verb. */
void cmd_migrate(struct conn *conn, uint64_t id, const Trustme__Request *req);
/* The migration endpoint's two requests (migrate_net.c; docs/MIGRATION.md "Over TCP"), answered
 * by migrate_net_reply(d, net_id, ...): an offer with its quote over the source's nonce, and the
 * import of a bundle it received whole (an absolute path). actor names the peer in the audit. */
void migrate_net_offer(struct daemon *d, uint64_t net_id, const char *actor, const uint8_t nonce[32],
                       const uint32_t *pcrs, size_t npcrs);
struct migrate_announced;
/* ... the bundle must be the one its authenticated announcement a named (migrate_announce.h). */
void migrate_net_import(struct daemon *d, uint64_t net_id, const char *actor, const char *path,
                        const struct migrate_announced *a);
/* An authenticated announcement for an offer that was used already: no upload. Installed from it:
 * the receipt again, if a container here was installed from that very bundle; spent without an
 * install: the signed refusal (as the import of the bundle would answer). */
void migrate_net_used(struct daemon *d, uint64_t net_id, const char *actor, const struct migrate_announced *a,
                      bool installed);
