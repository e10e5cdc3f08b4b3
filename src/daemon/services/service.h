/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A helper service trustmed starts and supervises (trustme-scd, trustme-tpmd): one child process
 * behind a SOCK_SEQPACKET pair, talked to without ever blocking the event loop (service.c).
 *
 * Requests go onto the socket at once, one packet each, and are answered through callbacks
 * matched by request id. A request the socket cannot take yet waits in a queue. If the child
 * dies, every pending request is answered with an error and it is started again, with a growing
 * delay if it keeps dying. What differs between services (how the child is confined, what its
 * messages look like) comes in through struct service_ops. */
#pragma once

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"

struct daemon;
struct service;

/* The caller's typed callback, stored untyped; ops->deliver casts it back. */
typedef void (*service_fn)(void);

struct service_ops {
    const char *name; /* "trustme-scd": for logs and the audit event "<short>.exit" */
    const char *audit_name; /* "scd" */
    const char *what; /* "the token service (trustme-scd)": for errors shown to users */
    const ProtobufCMessageDescriptor *response;
    size_t reply_max, request_max;
    unsigned stop_wait_ms; /* how long the child may take to exit after EOF */
    int stop_signal; /* sent before the EOF on a clean stop (0: none) */
    /* In the forked child: confine and exec the service with sock as fd 3 and exe (already
     * opened and measured by the parent) as the program. Never returns. */
    void (*exec_child)(const void *ctx, int sock, int exe, pid_t daemon_pid);
    uint64_t (*response_id)(const ProtobufCMessage *resp);
    /* True if resp is the service's Ready message (then on_ready is called). */
    bool (*is_ready)(const ProtobufCMessage *resp);
    /* If resp is an Error: fill err and return true. */
    bool (*is_error)(const ProtobufCMessage *resp, tm_err *err);
    /* Call the typed callback fn (as given to service_call) with resp/err. */
    void (*deliver)(service_fn fn, struct daemon *d, const ProtobufCMessage *resp, const tm_err *err, void *userdata);
    void (*on_spawned)(struct service *s, int exe); /* optional: e.g. measure the binary */
    void (*on_ready)(struct service *s); /* optional */
    void (*on_exit)(struct service *s); /* optional: after pending requests failed */
};

/* What the subsystems above services/ (and the services themselves) want to hear about the helper
 * services: registered once at start-up by main.c (service_events_add), called in that order.
 * Any hook may be NULL. So scd_client.c and tpmd_client.c never call up into tokens, GuestOS
 * revocation or measurement, nor into each other's notifications. */
struct service_events {
    const char *name;
    void (*scd_spawned)(struct daemon *d, int exe); /* a new scd's binary, before it runs */
    void (*scd_ready)(struct daemon *d); /* a new scd answers: what it said before is stale */
    void (*scd_gone)(struct daemon *d); /* scd exited: its pending requests failed */
    void (*tpmd_ready)(struct daemon *d); /* tpmd measured the boot: running containers go in */
    void (*tpmd_anchors)(struct daemon *d); /* tpmd's anchor table is readable */
};
void service_events_add(struct daemon *d, const struct service_events *e);
/* Call hook `ev` (a member of struct service_events) of every registration. */
#define service_emit(d, ev, ...)                             \
    do {                                                     \
        for (size_t i_ = 0; i_ < (d)->nservice_events; i_++) \
            if ((d)->service_events[i_]->ev)                 \
                (d)->service_events[i_]->ev(__VA_ARGS__);    \
    } while (0)

/* binary: the service's program, opened (and passed to on_spawned and exec_child) at every
 * spawn. ctx (copied, ctx_size bytes) is what exec_child needs: user, dirs, options. */
int service_start(struct daemon *d, const struct service_ops *ops, const char *binary, const void *ctx, size_t ctx_size,
                  struct service **ret, tm_err *err);
/* Close the socket (the child exits at EOF), wait stop_wait_ms for it, then SIGKILL. */
void service_stop(struct service *s);
/* Reserve the id of the next request; the caller sets version and id in it, then sends. */
uint64_t service_next_id(struct service *s);
int service_send(struct service *s, const ProtobufCMessage *req, uint64_t id, service_fn fn, void *userdata,
                 tm_err *err);
void service_forget(struct service *s, void *userdata);
bool service_running(const struct service *s);
struct daemon *service_daemon(const struct service *s);
const void *service_ctx(const struct service *s);
