/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The seccomp deny list (module_seccomp), compiled once when trustmed starts. */
#pragma once

#include "daemon.h"
#include "error.h"

/* Into d->seccomp (a struct sock_fprog); freed by seccomp_filter_free. */
int seccomp_build(struct daemon *d, tm_err *err);
void seccomp_filter_free(struct daemon *d);
