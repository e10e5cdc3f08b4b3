/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "client.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attest.pb-c.h"
#include "attest_check.h"
#include "buf.h"
#include "cleanup.h"
#include "deadline.h"
#include "frame.h"

static int send_request(int fd, uint64_t id, const uint8_t *nonce, size_t nonce_len, const uint32_t *pcrs, size_t npcrs,
                        int64_t deadline, tm_err *err)
{
    Trustme__Attest__AttestRequest rq = TRUSTME__ATTEST__ATTEST_REQUEST__INIT;
    rq.has_version = true;
    rq.version = ATTEST_VERSION;
    rq.has_id = true;
    rq.id = id;
    rq.has_nonce = true;
    rq.nonce.data = (uint8_t *)nonce;
    rq.nonce.len = nonce_len;
    rq.pcrs = (uint32_t *)pcrs;
    rq.n_pcrs = npcrs;
    size_t len = trustme__attest__attest_request__get_packed_size(&rq);
    if (len > ATTEST_REQUEST_MAX)
        return tm_err_set(err, EINVAL, "request of %zu bytes, at most %d", len, ATTEST_REQUEST_MAX);
    _cleanup_(tm_buf_free) tm_buf out = {0};
    uint8_t *payload = tm_frame_reserve(&out, len);
    if (!payload)
        return tm_err_set(err, ENOMEM, "out of memory");
    trustme__attest__attest_request__pack(&rq, payload);
    for (;;) {
        int r = tm_buf_flush(&out, fd);
        if (r == 0)
            return 0;
        if (r < 0)
            return tm_err_set(err, -r, "cannot send the request: %s", strerror(-r));
        if ((r = tm_wait_fd(fd, POLLOUT, deadline)) < 0)
            return tm_err_set(err, -r, "cannot send the request: %s", strerror(-r));
    }
}

static int read_response(int fd, int64_t deadline, uint8_t **ret_buf, size_t *ret_len, tm_err *err)
{
    tm_frame_reader rd = {.max = ATTEST_RESPONSE_MAX};
    for (;;) {
        int r = tm_frame_read(&rd, fd);
        if (r == 1) {
            uint32_t len = 0;
            *ret_buf = tm_frame_take(&rd, &len);
            *ret_len = len;
            return 0;
        }
        if (r == 0)
            r = tm_wait_fd(fd, POLLIN, deadline);
        if (r < 0) {
            tm_frame_reader_reset(&rd);
            if (r == -EPIPE)
                return tm_err_set(err, EPROTO,
                                  "the device closed the connection without "
                                  "answering");
            if (r == -EMSGSIZE)
                return tm_err_set(err, EPROTO,
                                  "the response is larger than %u bytes (is "
                                  "this a trustme-tpmd attestation endpoint?)",
                                  ATTEST_RESPONSE_MAX);
            if (r == -EPROTO)
                return tm_err_set(err, EPROTO, "the response was cut short");
            return tm_err_set(err, -r, "cannot read the response: %s", strerror(-r));
        }
    }
}

int attest_fetch(const char *hostport, int timeout_ms, uint64_t id, const uint8_t *nonce, size_t nonce_len,
                 const uint32_t *pcrs, size_t npcrs, uint8_t **ret_buf, size_t *ret_len, tm_err *err)
{
    int64_t deadline = tm_now_ms() + timeout_ms;
    _cleanup_close_ int fd = tm_dial(hostport, deadline, err);
    if (fd < 0)
        return fd;
    int r = send_request(fd, id, nonce, nonce_len, pcrs, npcrs, deadline, err);
    if (r < 0)
        return r;
    return read_response(fd, deadline, ret_buf, ret_len, err);
}
