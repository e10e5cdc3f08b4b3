/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A single-threaded epoll event loop: fd sources and one-shot timers.
 *
 * Callbacks must not block. A source may be freed from any callback, including its own; the
 * memory is released only after the current dispatch round, so a pending event for a freed
 * source is dropped instead of touching freed memory. */
#pragma once

#include <stdint.h>
#include <sys/epoll.h>

typedef struct tm_loop tm_loop;
typedef struct tm_source tm_source;
typedef void (*tm_io_fn)(tm_source *src, uint32_t events, void *userdata);
typedef void (*tm_timer_fn)(tm_source *src, void *userdata);

tm_loop *tm_loop_new(void);
void tm_loop_free(tm_loop *loop);
/* Watch fd (which stays owned by the caller) for events (EPOLLIN, EPOLLOUT, ...). */
tm_source *tm_loop_io(tm_loop *loop, int fd, uint32_t events, tm_io_fn fn, void *userdata);
int tm_source_modify(tm_source *src, uint32_t events);
/* Call fn once after msec milliseconds. The timer is already freed when fn runs: fn must forget
 * any pointer it kept to it (and must not free it). */
tm_source *tm_loop_timer(tm_loop *loop, uint64_t msec, tm_timer_fn fn, void *userdata);
/* Stop watching; NULL is fine. Does not close an io source's fd. */
void tm_source_free(tm_source *src);
/* Run until tm_loop_quit(); returns the code given there. The loop can be run again after. */
int tm_loop_run(tm_loop *loop);
void tm_loop_quit(tm_loop *loop, int code);
