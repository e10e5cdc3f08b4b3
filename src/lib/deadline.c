/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "deadline.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "hostport.h"

int64_t tm_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int tm_wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - tm_now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, left > INT32_MAX ? INT32_MAX : (int)left);
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
        int r = tm_wait_fd(fd, POLLOUT, deadline);
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

int tm_dial(const char *hostport, int64_t deadline, tm_err *err)
{
    char host[TM_HOST_MAX], port[TM_PORT_MAX];
    int r = tm_split_hostport(hostport, 1, host, port, err);
    if (r < 0)
        return r;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int g = getaddrinfo(host, port, &hints, &res);
    if (g != 0)
        return tm_err_set(err, EHOSTUNREACH, "%s: %s", hostport, gai_strerror(g));
    r = -EHOSTUNREACH;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
        if ((r = connect_one(ai, deadline, err)) >= 0)
            break;
    freeaddrinfo(res);
    return r < 0 ? tm_err_prefix(err, "%s", hostport) : r;
}

int tm_send_all(int fd, const void *buf, size_t len, int64_t deadline)
{
    const uint8_t *p = buf;
    size_t off = 0;
    while (off < len) {
        ssize_t k = send(fd, p + off, len - off, MSG_NOSIGNAL);
        if (k >= 0) {
            off += (size_t)k;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        int r = tm_wait_fd(fd, POLLOUT, deadline);
        if (r < 0)
            return r;
    }
    return 0;
}

int tm_recv_all(int fd, void *buf, size_t len, int64_t deadline)
{
    uint8_t *p = buf;
    size_t got = 0;
    while (got < len) {
        ssize_t k = recv(fd, p + got, len - got, 0);
        if (k > 0) {
            got += (size_t)k;
            continue;
        }
        if (k == 0)
            return got ? -EPROTO : -EPIPE;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        int r = tm_wait_fd(fd, POLLIN, deadline);
        if (r < 0)
            return r;
    }
    return 0;
}
