/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Answers to clients, for the code below api/ (docs/ARCHITECTURE.md, "Replies").
 *
 * There a request is known only as (client, req_id): the id of the connection it came on and its
 * own id, kept by whatever answers later (a waiter, a session, a token or install operation).
 * api/ supplies the operations (struct reply_ops, main.c sets d->reply); domain code never sees
 * a connection. A client that has gone meanwhile gets nothing: the calls return false. client 0
 * is nobody (an operation trustmed started itself). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "control.pb-c.h"
#include "daemon.h"

/* A request to answer later: who asked (client, req_id) and as whom (actor, for the audit log).
 * api/ makes one per request (conn_reply_to in control.h). */
struct reply_to {
    uint64_t client, req_id;
    const char *actor;
};

struct reply_ops {
    /* Is the client still connected? */
    bool (*alive)(struct daemon *d, uint64_t client);
    bool (*send)(struct daemon *d, uint64_t client, uint64_t req_id, Trustme__Response *resp);
    /* Answer with what `trustme state` shows of c. */
    bool (*container)(struct daemon *d, uint64_t client, uint64_t req_id, const struct container *c);
    /* Is the client's output backed up (stop reading what is sent to it)? */
    bool (*congested)(struct daemon *d, uint64_t client);
    /* Is reading the client's input paused, and pause (true) or resume it. */
    bool (*input_paused)(struct daemon *d, uint64_t client);
    void (*pause_input)(struct daemon *d, uint64_t client, bool paused);
    /* Did the client come through a restricted socket (it learns nothing of the host)? */
    bool (*restricted)(struct daemon *d, uint64_t client);
    /* Should a failed GuestOS install this client asked for be audited one by one? (A restricted
     * socket's are rate-limited, docs/ROLES.md.) */
    bool (*install_failure_audit_due)(struct daemon *d, uint64_t client);
};

bool reply_send(struct daemon *d, uint64_t client, uint64_t req_id, Trustme__Response *resp);
bool reply_error(struct daemon *d, uint64_t client, uint64_t req_id, int code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
bool reply_container_info(struct daemon *d, uint64_t client, uint64_t req_id, const struct container *c);
/* Is the client still connected? */
bool reply_alive(struct daemon *d, uint64_t client);
bool reply_congested(struct daemon *d, uint64_t client);
bool reply_input_paused(struct daemon *d, uint64_t client);
void reply_pause_input(struct daemon *d, uint64_t client, bool paused);
bool reply_restricted(struct daemon *d, uint64_t client);
bool reply_install_failure_audit_due(struct daemon *d, uint64_t client);
