/* SPDX-License-Identifier: GPL-2.0-or-later */
/* api/'s side of the control sockets inside containers (struct ctlsock_ops in daemon.h): which
 * container gets one and with which role (roles.c), and serving it (control.c). */
#include "ctlsock_ops.h"

#include <errno.h>
#include <unistd.h>

#include "control.h"
#include "roles.h"

static bool wanted(const struct container *c, const char **ret_role)
{
    enum conn_role role;
    if (!roles_container_socket(c, &role))
        return false;
    *ret_role = conn_role_name(role);
    return true;
}

static int serve(struct container *c, int fd, tm_err *err)
{
    enum conn_role role;
    if (!roles_container_socket(c, &role)) {
        close(fd);
        return tm_err_set(err, EPERM, "no control socket for this container");
    }
    control_remove_listeners(c->d, c->uuid);
    return control_add_listener(c->d, fd, role, c->uuid, err);
}

static void forget(struct container *c)
{
    control_remove_listeners(c->d, c->uuid);
}

const struct ctlsock_ops control_ctlsock_ops = {
    .wanted = wanted,
    .serve = serve,
    .forget = forget,
};
