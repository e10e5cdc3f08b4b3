/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The service manager's readiness protocol (sd_notify(3)), written by hand: one datagram of
 * "KEY=VALUE" lines to the AF_UNIX socket named by $NOTIFY_SOCKET (a path, or "@name" for an
 * abstract address). No libsystemd: the protocol is a single sendmsg. */
#pragma once

/* Take $NOTIFY_SOCKET and remove it from the environment, so that no child (a helper service,
 * a container) can speak for trustmed. */
void tm_notify_init(void);
/* Send the lines (e.g. "READY=1\nSTATUS=serving"); a no-op without $NOTIFY_SOCKET. Returns 0,
 * or a negative errno (logged by the caller if it cares: the daemon works on either way). */
int tm_notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
