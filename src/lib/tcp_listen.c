/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "tcp_listen.h"

#include <errno.h>
#include <netdb.h>
#include <sys/socket.h>

#include "cleanup.h"
#include "hostport.h"

int tm_tcp_listen(const char *address, unsigned min_port, int backlog, const char *what, tm_err *err)
{
    char host[TM_HOST_MAX], port[TM_PORT_MAX];
    int r = tm_split_hostport(address, min_port, host, port, err);
    if (r < 0)
        return tm_err_prefix(err, "%s", what);
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV},
                    *ai = NULL;
    int gai = getaddrinfo(host, port, &hints, &ai);
    if (gai != 0)
        return tm_err_set(err, EINVAL, "%s %s: %s", what, address, gai_strerror(gai));
    _cleanup_close_ int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    /* A restarted server must get its port back while old connections sit in TIME_WAIT. */
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, backlog) < 0) {
        r = tm_err_sys(err, "%s: cannot listen on %s", what, address);
        freeaddrinfo(ai);
        return r;
    }
    freeaddrinfo(ai);
    return steal_fd(fd);
}
