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
