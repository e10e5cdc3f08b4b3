/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The control socket: connections, framing, replies (docs/PROTOCOL.md). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "acceptor.h"
#include "buf.h"
#include "control.pb-c.h"
#include "daemon.h"
#include "reply.h"
#include "frame.h"

/* Connections per listening socket (docs/PROTOCOL.md): an admin socket (the host's, c0's) and a
 * restricted one each have their own, so that no container can use up the administrator's. At
 * the limit the socket's oldest idle or half-sent connection is closed for the new one. */
#define CONN_MAX_ADMIN 128
#define CONN_MAX_RESTRICTED 32
/* All restricted sockets together: bounds trustmed's fds however many containers there are. */
#define CONN_MAX_RESTRICTED_TOTAL 256
/* The largest request a restricted connection may send: its few requests are small. */
#define CONN_FRAME_MAX_RESTRICTED (64 * 1024)
/* Above this much unsent output a connection stops pulling session output (backpressure). */
#define CONN_HIGH_WATER (1024 * 1024)
/* A connection with nothing open (no session, no waiting request, no stream) is closed after
 * this long without a request, so that idle clients cannot hold all the slots. */
#define CONN_IDLE_TIMEOUT_S 120

struct conn;
typedef void (*stream_done_fn)(struct conn *conn, uint64_t req_id);

/* What a connection may do is decided by the socket it arrived on, never by the request
 * (docs/ROLES.md): the host's admin socket and c0's are ROLE_ADMIN, the socket inside a
 * container with "control": "restricted" is ROLE_RESTRICTED, bound to that container. */
enum conn_role { ROLE_ADMIN = 0, ROLE_RESTRICTED = 1 };

/* A listening socket: the host's <run>/control.sock (uuid "") or one inside a container. */
struct listener {
    struct listener *next;
    struct daemon *d;
    struct tm_acceptor acc; /* the listening socket and its accept loop */
    enum conn_role role;
    char uuid[TM_UUID_STR_LEN + 1]; /* the container it lives in, "" on the host */
    unsigned max_conns;
    /* The audit rate limits of this socket's clients (control_audit_due), one per kind. */
    struct audit_limit {
        struct listener *l;
        int kind;
        uint64_t window_start;
        unsigned recorded, suppressed;
        tm_source *timer; /* writes the summary of those suppressed at the window's end */
    } audit_limits[2];
};

struct conn {
    struct conn *next;
    struct daemon *d;
    uint64_t id;
    int fd;
    tm_source *src;
    struct ucred peer;
    char actor[48]; /* "uid=0 pid=1234" for the audit log ("... in c0" inside one) */
    enum conn_role role; /* its listener's */
    char role_uuid[TM_UUID_STR_LEN + 1]; /* its listener's container, "" on the host */
    tm_frame_reader rd;
    tm_buf out;
    bool closing; /* close as soon as out is flushed */
    bool input_paused; /* a session's stdin is full: read no requests until it drains */
    tm_source *partial_timer;
    uint64_t last_active; /* monotonic seconds of the last request */
    uint64_t out_progress; /* monotonic seconds output was last written (or none pending) */
    int stream_fd; /* file being streamed to the client, or -1 */
    uint64_t stream_req;
    stream_done_fn stream_done;
    char stream_name[64]; /* the streamed file's name for AuditChunk.file, or "" */
};

/* What domain code keeps to answer this request later (reply.h). */
static inline struct reply_to conn_reply_to(const struct conn *c, uint64_t req_id)
{
    return (struct reply_to){.client = c->id, .req_id = req_id, .actor = c->actor};
}

/* api/'s state in d (d->control), before any socket is served: at start-up, before containers
 * are loaded (their sockets are re-opened then). control_close_all frees it. */
int control_init(struct daemon *d, tm_err *err);
/* The host's admin socket <run>/control.sock; with admin_socket_in_root false, none (and a
 * stale one is removed). */
int control_listen(struct daemon *d, tm_err *err);
/* Take over fd, a listening socket inside container uuid with the given role. */
int control_add_listener(struct daemon *d, int fd, enum conn_role role, const char *uuid, tm_err *err);
/* Close the listener of container uuid and the connections that came through it. */
void control_remove_listeners(struct daemon *d, const char *uuid);
const char *conn_role_name(enum conn_role role);
/* Audit records a client can cause at will: a refused request (control.denied), a failed
 * GuestOS install from a restricted socket (guestos.install fail). */
enum control_audit_kind { CONTROL_AUDIT_DENIED = 0, CONTROL_AUDIT_INSTALL_FAILED = 1 };
/* Should this record of a request on c be written one by one? At most CONTROL_AUDIT_BURST per
 * socket and kind per CONTROL_AUDIT_WINDOW_S; the rest are counted, and one record at the
 * window's end says how many there were (a container must not be able to fill the audit log,
 * or keep trustmed busy syncing it, with requests that fail). */
bool control_audit_due(struct conn *c, enum control_audit_kind kind);
#define CONTROL_AUDIT_BURST 20
#define CONTROL_AUDIT_WINDOW_S 10
/* Close every connection and socket (the last replies flushed as far as they go) and free
 * d->control; nothing when there is none. */
void control_close_all(struct daemon *d);
struct conn *conn_find(struct daemon *d, uint64_t id);
/* Queue a response (version and id are filled in). */
void conn_send(struct conn *c, uint64_t req_id, Trustme__Response *resp);
/* The final Ok of a request. */
void conn_send_ok(struct conn *c, uint64_t req_id);
void conn_send_error(struct conn *c, uint64_t req_id, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* An ENOKEY error with pin_required set: the client asks for the PIN and repeats the request. */
void conn_send_pin_required(struct conn *c, uint64_t req_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
bool conn_congested(const struct conn *c);
/* Stop (or resume) reading requests: backpressure from a session's stdin to the client. */
void conn_pause_input(struct conn *c, bool paused);
/* Start streaming fd to the client as chunks; when it is done, done(conn, req_id) sends the final
 * message. conn owns fd from now on. */
void conn_stream_file(struct conn *c, uint64_t req_id, int fd, stream_done_fn done);
