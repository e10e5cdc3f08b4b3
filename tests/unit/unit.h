/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Shared by the unit tests: cmocka's include order, and assertions on tm_err messages that report
 * the caller's line and the actual message when they fail. */
#pragma once

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "error.h"

/* Every parser error names the JSON path it is about, as "<path>: what is wrong". */
#define assert_err_at(err, path) assert_err_at_((err), (path), __FILE__, __LINE__)
#define assert_err_contains(err, text) assert_err_contains_((err), (text), __FILE__, __LINE__)

static inline void assert_err_at_(const tm_err *err, const char *path, const char *file, int line)
{
    size_t n = strlen(path);
    if (strncmp(err->msg, path, n) != 0 || err->msg[n] != ':') {
        print_error("error message \"%s\" does not start with \"%s:\"\n", err->msg, path);
        _fail(file, line);
    }
}

static inline void assert_err_contains_(const tm_err *err, const char *text, const char *file, int line)
{
    if (!strstr(err->msg, text)) {
        print_error("error message \"%s\" does not contain \"%s\"\n", err->msg, text);
        _fail(file, line);
    }
}

/* JSON documents in tests are written with single quotes, which C strings need not escape. */
static inline char *sq(const char *text)
{
    char *s = strdup(text);
    assert_non_null(s);
    for (char *p = s; *p; p++)
        if (*p == '\'')
            *p = '"';
    return s;
}

/* n times c, for strings at and beyond a length limit. The caller frees it. */
static inline char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}
