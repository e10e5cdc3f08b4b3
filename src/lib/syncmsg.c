/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "syncmsg.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "wire.h"

int tm_sync_socketpair(int fds[2])
{
    return socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) < 0 ? -errno : 0;
}

int tm_sync_send(int fd, uint32_t type, const void *payload, uint32_t len, int pass_fd)
{
    if (len > TM_SYNC_MAX_PAYLOAD)
        return -EMSGSIZE;
    uint8_t hdr[TM_WIRE_SYNC_HDR];
    tm_wire_encode(TM_WIRE_SYNC, &(struct tm_wire_hdr){.type = type, .len = len}, hdr);
    struct iovec iov[2] = {{.iov_base = hdr, .iov_len = sizeof(hdr)}, {.iov_base = (void *)payload, .iov_len = len}};
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = len ? 2 : 1};
    if (pass_fd >= 0) {
        memset(&ctl, 0, sizeof(ctl));
        mh.msg_control = ctl.buf;
        mh.msg_controllen = sizeof(ctl.buf);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
    }
    for (;;) {
        ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        return (size_t)n == sizeof(hdr) + len ? 0 : -EIO;
    }
}

int tm_sync_send_pid(int fd, int32_t pid)
{
    return tm_sync_send(fd, TM_SYNC_PID, &pid, sizeof(pid), -1);
}

int tm_sync_send_text(int fd, uint32_t type, const char *text)
{
    size_t len = strnlen(text, TM_SYNC_MAX_PAYLOAD);
    return tm_sync_send(fd, type, text, (uint32_t)len, -1);
}

void tm_sync_send_error(int fd, const tm_err *err)
{
    char buf[TM_SYNC_MAX_PAYLOAD];
    int32_t code = err->code > 0 ? err->code : EIO;
    memcpy(buf, &code, sizeof(code));
    size_t len = strnlen(err->msg, sizeof(err->msg));
    memcpy(buf + sizeof(code), err->msg, len);
    (void)tm_sync_send(fd, TM_SYNC_ERROR, buf, (uint32_t)(sizeof(code) + len), -1);
}

int tm_sync_recv(int fd, tm_sync_msg *msg)
{
    uint8_t hdr[TM_WIRE_SYNC_HDR];
    struct iovec iov[2] = {{.iov_base = hdr, .iov_len = sizeof(hdr)},
                           {.iov_base = msg->payload, .iov_len = TM_SYNC_MAX_PAYLOAD}};
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf)};
    ssize_t n;
    do
        n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    if (n == 0)
        return 0;
    msg->fd = -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            size_t nfds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            int fds[4];
            memcpy(fds, CMSG_DATA(c), (nfds < 4 ? nfds : 4) * sizeof(int));
            for (size_t i = 0; i < nfds && i < 4; i++) {
                if (msg->fd < 0)
                    msg->fd = fds[i];
                else
                    close(fds[i]); /* more fds than the protocol allows: drop them */
            }
        }
    }
    struct tm_wire_hdr h;
    bool bad = (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
               tm_wire_decode_packet(TM_WIRE_SYNC, hdr, (size_t)n, &h) < 0 || h.type < TM_SYNC_PROGRESS ||
               h.type > TM_SYNC_LAST;
    if (bad) {
        if (msg->fd >= 0)
            close(msg->fd);
        msg->fd = -1;
        return -EBADMSG;
    }
    msg->type = h.type;
    msg->len = h.len;
    msg->payload[h.len] = '\0';
    return 1;
}

int tm_sync_recv_exact(int fd, uint32_t type, void *buf, uint32_t len)
{
    uint8_t hdr[TM_WIRE_SYNC_HDR];
    struct iovec iov[2] = {{.iov_base = hdr, .iov_len = sizeof(hdr)}, {.iov_base = buf, .iov_len = len}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
    struct pollfd p = {.fd = fd, .events = POLLIN};
    ssize_t n;
    for (;;) {
        if (poll(&p, 1, -1) < 0 && errno != EINTR)
            return -errno;
        n = recvmsg(fd, &mh, MSG_DONTWAIT);
        if (n >= 0 || (errno != EINTR && errno != EAGAIN))
            break;
    }
    if (n < 0)
        return -errno;
    if (n == 0)
        return -EPIPE;
    struct tm_wire_hdr h;
    if ((mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || tm_wire_decode_packet(TM_WIRE_SYNC, hdr, (size_t)n, &h) < 0 ||
        h.type != type || h.len != len) {
        explicit_bzero(buf, len);
        return -EBADMSG;
    }
    return 0;
}
