/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Every control request in one table (requests.c): its handler, which role may send it, the
 * container it is about, the secrets it carries and the audit events it writes.
 *
 * Dispatch (commands.c), the role check (roles.c) and the wiping of secrets all read this table,
 * and docs/ROLES.md's table of requests is printed from it (tests/unit/test_requests.c checks
 * both that every body of trustme.Request has exactly one row and that the doc matches). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "control.h"

typedef void (*request_handler_fn)(struct conn *conn, uint64_t id, const Trustme__Request *req);

/* What a role may do with a request. */
enum request_access {
    REQ_NO = 0, /* refused: EPERM, audit control.denied */
    REQ_YES, /* allowed */
    REQ_OWN, /* allowed about the socket's own container only (named by target) */
    REQ_NOT_LOCKOUT, /* allowed, except on c0 while c0's socket is the only way in
                      * (device.json admin_socket_in_root false): it would lock the admin out */
};

#define REQUEST_MAX_SECRETS 3

struct request_row {
    Trustme__Request__BodyCase body;
    request_handler_fn handler;
    enum request_access admin; /* the host's admin socket and c0's */
    enum request_access restricted; /* the socket inside a "control": "restricted" container */
    /* The string field of the body naming the container the request is about ("id"), or NULL
     * for requests about no container (or about a session of the connection). */
    const char *target;
    /* The bytes fields of the body holding PINs, PUKs or keys: wiped once the handler returns
     * (passed on to scd/tpmd by then, or refused), and when the request is refused. */
    const char *secrets[REQUEST_MAX_SECRETS];
    /* The audit events the request may write besides control.denied (docs/AUDIT.md),
     * space-separated; "" for none. */
    const char *audit;
};

/* The rows, in the order of the protocol's field numbers. */
extern const struct request_row request_table[];
extern const size_t request_table_len;

/* The row of a request body, or NULL if this daemon does not know the body. */
const struct request_row *requests_row(Trustme__Request__BodyCase body);
/* What the role may do with the request described by row. */
enum request_access requests_access(const struct request_row *row, enum conn_role role);
/* The request's name on the wire ("state", "guestos_install"), "unknown" for an unknown body. */
const char *requests_name(const Trustme__Request *req);
/* The container the request names (its row's target field), "" for the others. */
const char *requests_target(const Trustme__Request *req);
/* Wipe the PINs, PUKs and keys the request carries (its row's secrets). */
void requests_wipe_secrets(Trustme__Request *req);
