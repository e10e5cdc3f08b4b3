/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "client.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "attest.pb-c.h"
#include "attest_check.h"
#include "buf.h"
#include "cleanup.h"
#include "frame.h"
#include "hostport.h"

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for events on fd until the deadline; -ETIMEDOUT when it passes. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, (int)left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n > 0)
            return 0;
    }
}

static int connect_one(const struct addrinfo *ai, int64_t deadline, tm_err *err)
{
    _cleanup_close_ int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0)
        return tm_err_sys(err, "socket");
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        if (errno != EINPROGRESS)
            return tm_err_sys(err, "cannot connect");
        int r = wait_fd(fd, POLLOUT, deadline);
        if (r < 0)
            return tm_err_set(err, -r, "cannot connect: %s", strerror(-r));
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
            return tm_err_sys(err, "getsockopt");
        if (soerr)
            return tm_err_set(err, soerr, "cannot connect: %s", strerror(soerr));
    }
    return steal_fd(fd);
}

static int dial(const char *hostport, int64_t deadline, tm_err *err)
{
    char host[TM_HOST_MAX], port[TM_PORT_MAX];
    int r = tm_split_hostport(hostport, 1, host, port, err);
    if (r < 0)
        return r;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int g = getaddrinfo(host, port, &hints, &res);
    if (g != 0)
        return tm_err_set(err, EHOSTUNREACH, "%s: %s", host, gai_strerror(g));
    r = -EHOSTUNREACH;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
        if ((r = connect_one(ai, deadline, err)) >= 0)
            break;
    freeaddrinfo(res);
    return r < 0 ? tm_err_prefix(err, "%s", hostport) : r;
}

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
        if ((r = wait_fd(fd, POLLOUT, deadline)) < 0)
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
            r = wait_fd(fd, POLLIN, deadline);
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
    int64_t deadline = now_ms() + timeout_ms;
    _cleanup_close_ int fd = dial(hostport, deadline, err);
    if (fd < 0)
        return fd;
    int r = send_request(fd, id, nonce, nonce_len, pcrs, npcrs, deadline, err);
    if (r < 0)
        return r;
    return read_response(fd, deadline, ret_buf, ret_len, err);
}
