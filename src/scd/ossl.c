/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "ossl.h"

#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>

int ossl_fail(tm_err *err, int code, const char *fmt, ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    unsigned long e = ERR_get_error();
    ERR_clear_error();
    if (!e)
        return tm_err_set(err, code, "%s", what);
    char reason[256];
    ERR_error_string_n(e, reason, sizeof(reason));
    return tm_err_set(err, code, "%s: %s", what, reason);
}
