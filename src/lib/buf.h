/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A growable byte buffer with a read offset: the output queue of a connection. */
#pragma once

#include <stddef.h>
#include <stdint.h>

typedef struct tm_buf {
    uint8_t *data;
    size_t start; /* first unconsumed byte */
    size_t len; /* end of valid data */
    size_t cap;
} tm_buf;

int tm_buf_append(tm_buf *b, const void *data, size_t n);
/* Reserve n bytes at the end and return a pointer to them (commit with b->len += n). */
uint8_t *tm_buf_reserve(tm_buf *b, size_t n);
static inline size_t tm_buf_pending(const tm_buf *b)
{
    return b->len - b->start;
}
void tm_buf_consume(tm_buf *b, size_t n);
void tm_buf_free(tm_buf *b);
/* Once b is empty, give its memory back if it grew beyond keep bytes (after a large message). */
void tm_buf_shrink(tm_buf *b, size_t keep);
