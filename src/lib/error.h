/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The one error idiom of trustme.
 *
 * A function that can fail returns a negative errno value and, if its caller passed a tm_err,
 * fills it with a message saying what failed (the callee knows the details, the caller decides
 * whether and where to show them). Callers add context with tm_err_prefix() on the way up.
 * Success is 0 (or a non-negative result). A tm_err lives on the stack; it needs no freeing. */
#pragma once

#include <stdarg.h>

typedef struct tm_err {
    int code; /* positive errno value */
    char msg[1024]; /* human readable, no trailing newline */
} tm_err;

/* Fill err (if non-NULL) with code and a formatted message; returns -code. */
int tm_err_set(tm_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Like tm_err_set with code = errno and ": <strerror(errno)>" appended. */
int tm_err_sys(tm_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prepend "<context>: " to the message; returns -err->code (or -EIO without err). */
int tm_err_prefix(tm_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tm_err_clear(tm_err *err);
