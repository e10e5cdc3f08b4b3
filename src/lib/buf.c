/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "buf.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

uint8_t *tm_buf_reserve(tm_buf *b, size_t n)
{
    if (b->start > 0 && b->start == b->len)
        b->start = b->len = 0;
    if (b->cap - b->len >= n)
        return b->data + b->len;
    /* Compact before growing: a long-lived connection must not grow without bound. */
    if (b->start > 0) {
        memmove(b->data, b->data + b->start, b->len - b->start);
        b->len -= b->start;
        b->start = 0;
        if (b->cap - b->len >= n)
            return b->data + b->len;
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < n) {
        if (cap > SIZE_MAX / 2)
            return NULL;
        cap *= 2;
    }
    uint8_t *d = realloc(b->data, cap);
    if (!d)
        return NULL;
    b->data = d;
    b->cap = cap;
    return b->data + b->len;
}

int tm_buf_append(tm_buf *b, const void *data, size_t n)
{
    if (n == 0)
        return 0;
    uint8_t *p = tm_buf_reserve(b, n);
    if (!p)
        return -ENOMEM;
    memcpy(p, data, n);
    b->len += n;
    return 0;
}

void tm_buf_consume(tm_buf *b, size_t n)
{
    assert(n <= tm_buf_pending(b)); /* only what was written out of it */
    b->start += n;
    if (b->start >= b->len)
        b->start = b->len = 0;
}

void tm_buf_free(tm_buf *b)
{
    free(b->data);
    *b = (tm_buf){0};
}

void tm_buf_shrink(tm_buf *b, size_t keep)
{
    if (tm_buf_pending(b) == 0 && b->cap > keep)
        tm_buf_free(b);
}
