/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A request from trustmed as tpmd first sees it: one packet off the link, decoded and checked
 * as far as that goes without the TPM (request.c). server.c answers a failure here with an
 * Error and never reaches the TPM; tests/fuzz/fuzz_tpmd_request.c runs it on arbitrary packets. */
#pragma once

#include "error.h"
#include "packet.h"
#include "tpmd.pb-c.h"

/* pkt: as tm_packet_recv returned it. 0 and *ret: a request of a known kind whose fields passed
 * every check made before a TPM call (the rest belongs to the handlers in server.c). <0: err
 * says why (-EBADMSG not a Request, -EPROTO another protocol version, -EOPNOTSUPP an unknown
 * body, -EINVAL / -E2BIG bad fields); *ret is the request when it decoded (its id goes into the
 * Error), else NULL. *ret lives in pkt: tm_packet_free frees it. */
int tpmd_request_decode(struct tm_packet *pkt, Trustme__Tpmd__Request **ret, tm_err *err);
