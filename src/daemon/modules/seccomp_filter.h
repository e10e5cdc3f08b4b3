/* The seccomp deny list (module_seccomp), compiled once when trustmed starts. */
#pragma once

#include <linux/filter.h>

#include "error.h"

int seccomp_build(struct sock_fprog *out, tm_err *err);
