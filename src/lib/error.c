/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "error.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* printf-checked at its callers' callers (error.h): the compiler then takes fmt as checked here. */
__attribute__((format(printf, 4, 0))) static int err_vset(tm_err *err, int code, const char *suffix, const char *fmt,
                                                          va_list ap)
{
    if (code <= 0)
        code = EIO;
    if (!err)
        return -code;
    err->code = code;
    int n = vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    if (suffix && n >= 0 && (size_t)n < sizeof(err->msg))
        snprintf(err->msg + n, sizeof(err->msg) - (size_t)n, ": %s", suffix);
    return -code;
}

int tm_err_set(tm_err *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = err_vset(err, code, NULL, fmt, ap);
    va_end(ap);
    return r;
}

int tm_err_sys(tm_err *err, const char *fmt, ...)
{
    int code = errno;
    va_list ap;
    va_start(ap, fmt);
    int r = err_vset(err, code, strerror(code), fmt, ap);
    va_end(ap);
    return r;
}

int tm_err_prefix(tm_err *err, const char *fmt, ...)
{
    if (!err)
        return -EIO;
    char prefix[256], old[sizeof(err->msg)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof(old));
    /* Truncating an overlong message is fine; the return value is checked only to say so. */
    if (snprintf(err->msg, sizeof(err->msg), "%s: %s", prefix, old) >= (int)sizeof(err->msg))
        err->msg[sizeof(err->msg) - 1] = '\0';
    if (err->code <= 0)
        err->code = EIO;
    return -err->code;
}

void tm_err_clear(tm_err *err)
{
    if (err) {
        err->code = 0;
        err->msg[0] = '\0';
    }
}
