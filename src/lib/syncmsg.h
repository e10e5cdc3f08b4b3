/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Parent/child synchronisation across clone(): framed messages over a SOCK_SEQPACKET socketpair.
 *
 * Each message is a fixed header {magic, type, length} plus a payload of that length, optionally
 * carrying one fd (SCM_RIGHTS). The receiver checks all three header fields against what arrived,
 * so the meaning of a message never depends on its position in the stream. The setup process and
 * the container child report progress, pids, errors and pty masters this way; EOF after the last
 * sender has exec'd (the fd is O_CLOEXEC) means "exec succeeded". */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define TM_SYNC_MAX_PAYLOAD 2048

enum tm_sync_type {
    TM_SYNC_PROGRESS = 1, /* payload: text */
    TM_SYNC_PID = 2, /* payload: int32 pid (in the receiver's pid namespace) */
    TM_SYNC_ERROR = 3, /* payload: int32 errno, then text */
    TM_SYNC_PTY = 4, /* no payload; carries the pty master fd */
    TM_SYNC_USERNS = 5, /* no payload; carries the container's user namespace fd */
    TM_SYNC_DATAFS = 6, /* no payload; carries the root of the mounted data volume, for its key */
    TM_SYNC_CONTINUE = 7, /* trustmed to setup: the data volume is unlocked / netns pinned, rules applied: go on */
    TM_SYNC_KEYREQ = 8, /* setup to trustmed: send the data key (dm-crypt: setup installs it) */
    TM_SYNC_KEY = 9, /* payload: the data key, received straight into locked memory */
    TM_SYNC_CONTROL = 10, /* no payload; carries the listening control socket made inside */
    TM_SYNC_NETNS = 11, /* no payload; carries the container's network namespace, to pin */
    TM_SYNC_KEYSTORE = 12, /* no payload; carries the listening keystore socket made inside */
    TM_SYNC_IMAGE = 13, /* payload: struct image_verified_msg; carries the GuestOS image just hashed */
    TM_SYNC_VTPM_READY = 14, /* trustmed to init: its vTPM is measured and serving, exec now */
    TM_SYNC_RESULT = 15, /* a worker's result, its own format (migrate: the bundle's head digest) */
    TM_SYNC_IMAGE_MOUNT = 16, /* payload: struct image_verified_msg; carries a detached mount of it */
    TM_SYNC_PREPARED = 17, /* trustmed to setup: the prepare hooks run after the fork are done */
    TM_SYNC_MNTNS = 18, /* init to trustmed: no payload; carries init's mount namespace, to keep */
    TM_SYNC_LAST = TM_SYNC_MNTNS,
};

typedef struct tm_sync_msg {
    uint32_t type;
    uint32_t len;
    int fd; /* received fd or -1 */
    char payload[TM_SYNC_MAX_PAYLOAD + 1]; /* NUL-terminated for text payloads */
} tm_sync_msg;

int tm_sync_socketpair(int fds[2]);
int tm_sync_send(int fd, uint32_t type, const void *payload, uint32_t len, int pass_fd);
int tm_sync_send_pid(int fd, int32_t pid);
int tm_sync_send_text(int fd, uint32_t type, const char *text);
/* Report err to the parent; used by children right before they _exit(). */
void tm_sync_send_error(int fd, const tm_err *err);
/* Receive one message. Returns 1 on a message, 0 on EOF, -EAGAIN if none is ready on a
 * non-blocking socket, -EBADMSG if the message is malformed, other -errno. */
int tm_sync_recv(int fd, tm_sync_msg *msg);
/* Wait for one message that must be of type with exactly len payload bytes, received straight
 * into buf (a secret: it passes through no other buffer of ours). 0, -EBADMSG for anything
 * else, -EPIPE on EOF, other -errno. */
int tm_sync_recv_exact(int fd, uint32_t type, void *buf, uint32_t len);
