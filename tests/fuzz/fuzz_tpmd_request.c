/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What trustme-tpmd does with a packet from its link to trustmed before it needs the TPM: the
 * input is the whole packet, frame header included (src/lib/packet.c), sent on a SOCK_SEQPACKET
 * socketpair and read back with tm_packet_recv as on_link (src/tpmd/server.c) reads it, then
 * decoded and checked by tpmd_request_decode (src/tpmd/request.c), the step on_link takes before
 * dispatching to a handler that calls the TPM.
 *
 * Every input must end as one of: refused by the framing (-EBADMSG, -EMSGSIZE: on_link answers
 * with an Error), refused by the decode with a code and a message (answered with an Error), or
 * accepted as a request of a known kind whose checked fields hold what the handlers rely on. No
 * crash, no leak (the request lives in the packet's arena or heap and goes with it). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "anchor.h"
#include "csr.h"
#include "packet.h"
#include "proto.h"
#include "request.h"
#include "seal.h"
#include "server.h"

typedef Trustme__Tpmd__Request Request;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fds[2];
static bool verbose; /* $FUZZ_VERBOSE: print what each input ends as (to check the seeds) */

#define fail(...)                                           \
    do {                                                    \
        fprintf(stderr, "fuzz_tpmd_request: " __VA_ARGS__); \
        fputc('\n', stderr);                                \
        abort();                                            \
    } while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    if (tm_packet_socketpair(fds) < 0)
        fail("socketpair: %s", strerror(errno));
    verbose = getenv("FUZZ_VERBOSE") != NULL;
    /* One packet must fit the socket's buffers (run.sh caps inputs well below). */
    int buf = 1 << 20;
    setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
    setsockopt(fds[1], SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
    return 0;
}

/* What the handlers take for granted once the decode accepted a request. */
static void check_accepted(const Request *rq)
{
    if (!rq->has_version || rq->version != TM_PROTOCOL_VERSION)
        fail("accepted version %u", rq->version);
    switch (rq->body_case) {
    case TRUSTME__TPMD__REQUEST__BODY_MEASURE:
        for (size_t i = 0; i < rq->measure->n_items; i++) {
            const Trustme__Attest__Event *it = rq->measure->items[i];
            if (!it->has_pcr || !it->has_sha256 || it->sha256.len != 32 || !it->type || !it->name)
                fail("accepted measure item %zu without a PCR, a type, a name or 32 bytes", i);
        }
        break;
    case TRUSTME__TPMD__REQUEST__BODY_RESEAL:
        if (rq->reseal->recovery_key.len != RECOVERY_KEY_LEN)
            fail("accepted a recovery key of %zu bytes", rq->reseal->recovery_key.len);
        break;
    case TRUSTME__TPMD__REQUEST__BODY_ANCHOR:
        if (rq->anchor->n_get > ANCHOR_ENTRIES_MAX || rq->anchor->n_set > ANCHOR_ENTRIES_MAX)
            fail("accepted %zu gets, %zu sets", rq->anchor->n_get, rq->anchor->n_set);
        for (size_t i = 0; i < rq->anchor->n_get; i++)
            if (anchor_check_name(rq->anchor->get[i], NULL) < 0)
                fail("accepted anchor name %zu", i);
        break;
    case TRUSTME__TPMD__REQUEST__BODY_CERT_INSTALL:
        if (!rq->cert_install->has_chain_pem || rq->cert_install->chain_pem.len == 0 ||
            rq->cert_install->chain_pem.len > CERT_CHAIN_PEM_MAX)
            fail("accepted a chain of %zu bytes", rq->cert_install->chain_pem.len);
        break;
    case TRUSTME__TPMD__REQUEST__BODY_GET_LOG:
    case TRUSTME__TPMD__REQUEST__BODY_STORAGE_SECRET:
    case TRUSTME__TPMD__REQUEST__BODY_DEVICE_CSR:
    case TRUSTME__TPMD__REQUEST__BODY_DEVICE_INFO:
    case TRUSTME__TPMD__REQUEST__BODY_ATTEST:
        if (!rq->measure) /* the oneof's member (a union) is set */
            fail("accepted body %d without its message", (int)rq->body_case);
        break;
    default: fail("accepted unknown body %d", (int)rq->body_case);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > TPMD_REQUEST_MAX + 8)
        return 0;
    if (send(fds[0], data, size, MSG_NOSIGNAL) != (ssize_t)size)
        fail("send of %zu bytes: %s", size, strerror(errno));
    struct tm_packet pkt;
    int r = tm_packet_recv(fds[1], TPMD_REQUEST_MAX, &pkt);
    if (r == -EBADMSG || r == -EMSGSIZE) {
        if (verbose)
            fprintf(stderr, "framing: %s\n", strerror(-r));
        return 0; /* on_link: an Error, the next packet as usual */
    }
    if (r != 1)
        fail("tm_packet_recv: %d", r);
    Request *rq = NULL;
    tm_err err = {0};
    r = tpmd_request_decode(&pkt, &rq, &err);
    if (r < 0) {
        if (r != -err.code || err.code <= 0 || !err.msg[0])
            fail("refused with %d, code %d, message \"%s\"", r, err.code, err.msg);
    } else {
        if (r != 0 || !rq)
            fail("accepted with %d, request %p", r, (void *)rq);
        check_accepted(rq);
    }
    if (verbose)
        fprintf(stderr, "%s: %s\n", r < 0 ? "refused" : "accepted", r < 0 ? err.msg : "known body");
    tm_packet_free(&pkt);
    return 0;
}
