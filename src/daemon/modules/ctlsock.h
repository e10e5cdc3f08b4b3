/* SPDX-License-Identifier: GPL-2.0-or-later */
/* module_ctlsock: the control socket inside a container (docs/ROLES.md).
 *
 * c0 (the admin role) and containers with "control": "restricted" get a listening socket at
 * /run/trustme/control.sock inside. The setup process mounts a small tmpfs there (in the
 * container's mount namespace only), binds the socket in it and hands the listening fd to
 * trustmed, which gives it the container's role. No path of it exists on the host; it goes with
 * the container's last process. */
#pragma once

#include <sys/types.h>

#include "error.h"

struct container;

#define CTLSOCK_DIR "run/trustme"
#define CTLSOCK_NAME "control.sock"

/* Bind and listen on CTLSOCK_NAME in the directory dirfd (replacing a stale socket), owned by
 * uid:gid, mode 0660. Returns the listening fd. */
int ctlsock_bind(int dirfd, uid_t uid, gid_t gid, tm_err *err);
/* The same for another socket in that directory (the keystore's, keystore.c). */
int ctlsock_bind_named(int dirfd, const char *name, uid_t uid, gid_t gid, tm_err *err);
/* trustmed: the setup process handed over the listening socket (TM_SYNC_CONTROL). */
void ctlsock_received(struct container *c, int fd);
/* trustmed, at start-up: a re-adopted container's socket died with the previous trustmed;
 * make a new one in the same place, through /proc/<init>/root resolved inside the root. */
void ctlsock_readopt(struct container *c);
