/* SPDX-License-Identifier: GPL-2.0-or-later */
/* api/'s side of the control sockets inside containers (ctlsock_ops.c). */
#pragma once

#include "daemon.h"

extern const struct ctlsock_ops control_ctlsock_ops;
