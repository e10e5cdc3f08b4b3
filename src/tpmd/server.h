/* SPDX-License-Identifier: GPL-2.0-or-later */
/* tpmd's side of the link to trustmed (proto/tpmd.proto): one SOCK_SEQPACKET packet per request,
 * answered in order on tpmd's event loop. */
#pragma once

#include "error.h"
#include "tpmd.h"

#define TPMD_REQUEST_MAX (1024u * 1024)
#define TPMD_REPLY_MAX (4u * 1024 * 1024) /* trustmed's limit: a log or a quote with it */

/* Serve d->link_fd on d->loop and send Ready. At EOF (trustmed is gone) the loop is quit,
 * d->stop_clean untouched (main decides whether trustmed also asked for a stop). */
int server_start(struct tpmd *d, tm_err *err);
void server_stop(struct tpmd *d);
/* A request came (from trustmed or a verifier): once none has come for TM_IDLE_RELEASE_MS, the
 * heap is trimmed and the library pages the request touched are dropped (idle_memory.h). */
void tpmd_busy(struct tpmd *d);
/* A recovery key in the data dir (the first seal writes it there, seal.h) is moved to
 * d->recovery_out and the data dir's copy overwritten and removed; ret_path: where it is now
 * ("" when there was none). */
int recovery_key_move(struct tpmd *d, char *ret_path, size_t size, tm_err *err);
