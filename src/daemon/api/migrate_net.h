/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The migration endpoint (docs/MIGRATION.md "Over TCP"): device.json migrate.address, off by
 * default. A source's `trustme migrate send` fetches an offer for its own nonce here, streams the
 * bundle, and gets the receipt or signed refusal back. Framed MigrateNetRequest/Response
 * (proto/control.proto) as the attestation endpoint frames its own; the transport adds no trust:
 * the offer is quoted and certified, the bundle signed, the answer signed, as with files. */
#pragma once

#include <stdint.h>

#include "control.pb-c.h"
#include "daemon.h"
#include "error.h"

/* At most this many connections, this many from one address (conn_table.h, the attestation
 * endpoint's rule: a new client evicts the longest-waiting idle one, of its own address first). */
#define MIGRATE_NET_MAX_CONNS 16
#define MIGRATE_NET_MAX_PER_PEER 4
/* Announcements being checked (a tpmd round trip, a chain check in scd), counting those whose
 * connection was closed or evicted meanwhile: their answer is dropped. Such a connection may be
 * evicted like an idle one, so forged announcements cannot hold the slots; the caps keep one
 * address (and all together) from queueing the checks without bound ahead of the genuine source's.
 * Beyond them an announcement is refused at once (EAGAIN). */
#define MIGRATE_NET_CHECKS_PER_PEER 2
#define MIGRATE_NET_MAX_CHECKS 32
/* Uploads in progress at once: at most one per signer (the announcement's AK certificate), so a
 * key the Device CA certified for another device of the PKI cannot keep the genuine source out by
 * holding the slot; and this many in all, each with its own reservation of the free space. */
#define MIGRATE_NET_MAX_UPLOADS 4
/* A bundle's chunk: every chunk but the last is exactly this large, so a peer that holds an
 * upload slot must send 1 MiB per timeout. */
#define MIGRATE_NET_CHUNK (1024u * 1024)
/* The largest request frame: a chunk and its framing. Anything larger closes the connection. */
#define MIGRATE_NET_REQUEST_MAX (MIGRATE_NET_CHUNK + 1024)
/* A request (or the next chunk) must arrive whole within this; trustmed's own work (the quote,
 * the import) is not timed here. */
#define MIGRATE_NET_TIMEOUT_MS 30000
/* Offers over the endpoint: anyone who reaches it can ask, and each one is a TPM key and an NV
 * write of the anchor table. Its entry stays until 7 days after the offer expired (tpmd's sweep,
 * MIGRATE_OFFER_KEEP_EXPIRED: a late import still gets its signed refusal), so the rate bounds the
 * entries: at most MIGRATE_NET_OFFER_BURST at once, then one per MIGRATE_NET_OFFER_REFILL_MS, i.e.
 * at most 8 + 4 x 169 h = 684 entries of the table's 4096 (ANCHOR_ENTRIES_MAX). At one a minute
 * a paced peer filled the table in under 3 days, and then every anchored state of the device
 * (starts, tokens, exports) failed with ENOSPC. Each offer is valid MIGRATE_NET_OFFER_LIFETIME
 * seconds: `migrate send` exports right after it has the offer. */
#define MIGRATE_NET_OFFER_BURST 8
#define MIGRATE_NET_OFFER_REFILL_MS (15 * 60 * 1000)
#define MIGRATE_NET_OFFER_LIFETIME 3600
/* What an import needs beside the bundle: it copies the parts once more into the container. */
#define MIGRATE_NET_SPARE_BYTES (64ull << 20)

/* Listen on d->device.migrate_address (nothing when it is ""); received bundles that a killed
 * trustmed left in <data>/migrate-in go first. */
int migrate_net_start(struct daemon *d, tm_err *err);
void migrate_net_stop(struct daemon *d);
/* The answer to the request of connection net_id: m (an offer, receipt or refusal), or an error
 * (code > 0, msg). A connection that has gone gets nothing. */
void migrate_net_reply(struct daemon *d, uint64_t net_id, const Trustme__MigrateMessage *m, int code, const char *msg);
