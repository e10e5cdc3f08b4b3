/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Control roles and the core container (docs/ROLES.md).
 *
 * A request's role is its connection's, and a connection's is the socket it arrived on: the host's
 * admin socket and c0's are admin, the socket inside a container with "control": "restricted"
 * is restricted to that container. Nothing in a request can change it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "control.h"

/* Is the request allowed on this connection? If not, it has been answered (EPERM) and audited. */
bool roles_permit(struct conn *conn, const Trustme__Request *req);
/* Is the peer of an accepted socket (fd, cred) a process of container uuid? why says why not. */
bool roles_peer_in_container(struct daemon *d, const char *uuid, int fd, const struct ucred *cred, char *why,
                             size_t size);
/* The control socket a container gets inside: admin (c0), restricted, or none (false). */
bool roles_container_socket(const struct container *c, enum conn_role *role);
