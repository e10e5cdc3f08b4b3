/* SPDX-License-Identifier: GPL-2.0-or-later */
/* tm_sync_recv's validation of what arrives on the sync socket: the input is sent as one raw
 * SOCK_SEQPACKET datagram and received the way the daemon receives it. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "syncmsg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fds[2] = {-1, -1};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fds[0] < 0 && tm_sync_socketpair(fds) < 0)
        abort();
    if (size > 60000)
        return 0;
    if (send(fds[0], data, size, MSG_NOSIGNAL) != (ssize_t)size)
        abort();
    tm_sync_msg msg;
    int r = tm_sync_recv(fds[1], &msg);
    if (r == 1) {
        if (msg.len > TM_SYNC_MAX_PAYLOAD || msg.payload[msg.len] != '\0' || msg.type < TM_SYNC_PROGRESS ||
            msg.type > TM_SYNC_PTY || msg.fd != -1 || msg.len + 12 != size)
            abort();
    } else if (r != -EBADMSG && !(r == 0 && size == 0)) {
        abort();
    }
    /* Nothing may be left over for the next message. */
    if (tm_sync_recv(fds[1], &msg) != -EAGAIN)
        abort();
    return 0;
}
