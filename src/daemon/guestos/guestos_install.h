/* SPDX-License-Identifier: GPL-2.0-or-later */
/* `trustme guestos install DIR`: verify a GuestOS and put it into the store, atomically.
 *
 *   1. read guestos.json, .sig and .chain.pem from DIR (no symlinks, sizes bounded)
 *   2. parse it strictly; refuse another architecture and any version not above the installed
 *   3. scd checks the signature through the chain the name requires (trust.h); an unsigned one
 *      passes only where the device policy allows it
 *   4. a worker process copies each image into a staging directory in the store, hashing what
 *      it copies, and compares size and SHA-256 (progress goes to the client)
 *   5. install.json is written, and the staging directory renamed to <name>-<version>
 *
 * Any failure removes the staging directory; a crash leaves it behind, and trustmed's next start
 * removes it (guestos_store_init). The store holds either the whole GuestOS or nothing of it. */
#pragma once

#include "daemon.h"
#include "reply.h"

/* path is the host's, or with root_fd >= 0 (a container's root, container_root.h) resolved
 * inside that root only: a restricted client names a directory of its own container. */
void guestos_install(struct daemon *d, struct reply_to to, const char *path, int root_fd);
/* An install under way reports to connection conn_id (which is not idle meanwhile). */
bool guestos_install_serves(const struct daemon *d, uint64_t conn_id);
/* trustmed is shutting down: stop the worker. */
void guestos_install_abort(struct daemon *d);
