/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Scope-bound cleanup: the one resource idiom of trustme.
 *
 * A variable declared with _cleanup_free_ / _cleanup_close_ / ... is released when it goes out of
 * scope; steal_ptr()/steal_fd() hand ownership on (to a caller or a struct) so the cleanup sees
 * NULL / -1 and does nothing. Destructors accept NULL / -1. */
#pragma once

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void freep(void *p)
{
    free(*(void **)p);
}
static inline void closep(int *fd)
{
    if (*fd >= 0) {
        int saved = errno;
        close(*fd);
        errno = saved;
    }
}
static inline void fclosep(FILE **f)
{
    if (*f)
        fclose(*f);
}

/* Both ends of a pipe or socketpair (int p[2], -1 where closed or stolen). */
static inline void close_pairp(int (*p)[2])
{
    closep(&(*p)[0]);
    closep(&(*p)[1]);
}

/* A NULL-terminated array of strings, each and the array malloc'ed (NULL: none). */
static inline void strv_free(char **v)
{
    for (char **p = v; p && *p; p++)
        free(*p);
    free(v);
}
static inline void strv_freep(char ***v)
{
    strv_free(*v);
}

#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_strv_ _cleanup_(strv_freep)
#define _cleanup_close_ _cleanup_(closep)
#define _cleanup_fclose_ _cleanup_(fclosep)
#define _cleanup_close_pair_ _cleanup_(close_pairp)

#define steal_ptr(p)                 \
    ({                               \
        __typeof__(p) _stolen = (p); \
        (p) = NULL;                  \
        _stolen;                     \
    })
#define steal_fd(fd)        \
    ({                      \
        int _stolen = (fd); \
        (fd) = -1;          \
        _stolen;            \
    })

/* Close fd (if open) and set it to -1. */
#define close_and_reset(fd) \
    do {                    \
        if ((fd) >= 0)      \
            close(fd);      \
        (fd) = -1;          \
    } while (0)

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#include <dirent.h>
static inline void closedirp(DIR **d)
{
    if (*d)
        closedir(*d);
}
