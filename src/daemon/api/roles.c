/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Control roles: the allowlist of a restricted socket, the peer check of sockets inside
 * containers, and what even the admin role may not do to c0 (docs/ROLES.md). */
#include "roles.h"
#include "core_container.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/nsfs.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cleanup.h"
#include "container.h"
#include "requests.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77 /* Linux 6.5; the headers of Debian 12 predate it */
#endif

bool roles_container_socket(const struct container *c, enum conn_role *role)
{
    /* c0 is admin whatever its "control" says: it is the administrator's way in. */
    if (core_is(c)) {
        *role = ROLE_ADMIN;
        return true;
    }
    if (c->cfg->control == CONTROL_RESTRICTED) {
        *role = ROLE_RESTRICTED;
        return true;
    }
    return false;
}

static void deny(struct conn *conn, const Trustme__Request *req, const struct container *subject, const char *msg)
{
    const char *target = requests_target(req);
    if (control_audit_due(conn, CONTROL_AUDIT_DENIED))
        daemon_audit(conn->d, "control.denied", "denied", subject, conn->actor, "role=%s request=%s%s%s",
                     conn_role_name(conn->role), requests_name(req), target[0] ? " target=" : "", target);
    conn_send_error(conn, req->id, EPERM, "%s", msg);
}

#define RESTRICTED_ALLOWS "restricted role: only its own state, guestos list, guestos install"

static bool refuse(struct conn *conn, const Trustme__Request *req, const struct container *subject)
{
    char msg[320];
    if (conn->role == ROLE_RESTRICTED)
        snprintf(msg, sizeof(msg), "%s is not allowed on this container's control socket (%s)", requests_name(req),
                 RESTRICTED_ALLOWS);
    else
        snprintf(msg, sizeof(msg), "%s is not allowed on this socket (role %s)", requests_name(req),
                 conn_role_name(conn->role));
    deny(conn, req, subject, msg);
    return false;
}

/* REQ_OWN: by name or uuid, as long as it is the socket's own container; another one (existing
 * or not) is refused alike, so the socket does not tell which containers exist. */
static bool permit_own(struct conn *conn, const Trustme__Request *req, struct container *own)
{
    const char *id = requests_target(req);
    struct container *c = id[0] ? container_find(conn->d, id) : NULL;
    if (c && c == own)
        return true;
    char msg[320];
    snprintf(msg, sizeof(msg),
             "%s of another container is not allowed on this container's control "
             "socket (%s)",
             requests_name(req), RESTRICTED_ALLOWS);
    deny(conn, req, own, msg);
    return false;
}

/* REQ_NOT_LOCKOUT: without an admin socket in the root namespace c0 is the only way in:
 * stopping or freezing it would leave the device unmanageable until the next boot. */
static bool permit_not_lockout(struct conn *conn, const Trustme__Request *req)
{
    struct daemon *d = conn->d;
    if (d->device.admin_socket_in_root)
        return true;
    const char *target = requests_target(req);
    struct container *c = target[0] ? container_find(d, target) : NULL;
    if (!c || !core_is(c))
        return true;
    const char *done = req->body_case == TRUSTME__REQUEST__BODY_STOP     ? "stopped"
                       : req->body_case == TRUSTME__REQUEST__BODY_FREEZE ? "frozen"
                                                                         : NULL;
    char msg[320];
    if (done)
        snprintf(msg, sizeof(msg),
                 "%s is the core container and the only way to manage this device "
                 "(device.json admin_socket_in_root is false): it cannot be %s",
                 c->cfg->name, done);
    else
        snprintf(msg, sizeof(msg),
                 "%s is the core container and the only way to manage this device "
                 "(device.json admin_socket_in_root is false): %s is not allowed on it",
                 c->cfg->name, requests_name(req));
    deny(conn, req, c, msg);
    return false;
}

bool roles_permit(struct conn *conn, const Trustme__Request *req)
{
    /* A restricted socket's refusals name the socket's container as subject. */
    struct container *own = conn->role == ROLE_RESTRICTED ? container_find(conn->d, conn->role_uuid) : NULL;
    const struct request_row *row = requests_row(req->body_case);
    /* A body this daemon does not know: the admin hears so from dispatch, others are refused. */
    enum request_access access = row ? requests_access(row, conn->role) : conn->role == ROLE_ADMIN ? REQ_YES : REQ_NO;
    switch (access) {
    case REQ_YES: return true;
    case REQ_OWN: return permit_own(conn, req, own);
    case REQ_NOT_LOCKOUT: return permit_not_lockout(conn, req);
    case REQ_NO: break;
    }
    return refuse(conn, req, own);
}

static int ns_of(pid_t pid, struct stat *st)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/ns/pid", pid);
    return stat(path, st);
}

/* The peer's pid namespace is the container's or one nested in it (a sandbox inside). The pid
 * is the one the kernel recorded at connect(); with the peer's pidfd (Linux >= 6.5) it is
 * checked to still be that process after the look-up, so a reused pid cannot pass. */
bool roles_peer_in_container(struct daemon *d, const char *uuid, int fd, const struct ucred *cred, char *why,
                             size_t size)
{
    struct container *c = container_find(d, uuid);
    struct stat want;
    if (!c || !c->pid || ns_of(c->pid, &want) < 0) {
        snprintf(why, size, "the container is not running");
        return false;
    }
    if (cred->pid <= 0) {
        snprintf(why, size, "the peer's pid is unknown");
        return false;
    }
    int pidfd = -1;
    socklen_t len = sizeof(pidfd);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) < 0)
        pidfd = -1;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/ns/pid", cred->pid);
    int ns = open(path, O_RDONLY | O_CLOEXEC);
    bool inside = false;
    for (int depth = 0; ns >= 0 && depth < 33 && !inside; depth++) {
        struct stat st;
        inside = fstat(ns, &st) == 0 && st.st_dev == want.st_dev && st.st_ino == want.st_ino;
        int parent = inside ? -1 : ioctl(ns, NS_GET_PARENT);
        close(ns);
        ns = parent;
    }
    if (ns >= 0)
        close(ns);
    if (inside && pidfd >= 0 && syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) < 0)
        inside = false; /* gone: the pid looked at may be another process's by now */
    if (pidfd >= 0)
        close(pidfd);
    if (!inside)
        snprintf(why, size, "pid %d is not a process of %s", cred->pid, c->cfg->name);
    return inside;
}
