/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Memory for secrets: keys, KEKs, PIN-derived keys.
 *
 * Each secret gets its own anonymous mapping, locked into RAM (never swapped), excluded from core
 * dumps and wiped in a forked child, and is wiped with explicit_bzero when it is freed. A few
 * small freed mappings are kept, wiped and still locked, for the next secret of the same size
 * (secmem.c); the others are unlocked and unmapped.
 * A secret is never logged and never written to disk unwrapped. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "cleanup.h"
#include "error.h"

struct secret {
    uint8_t *data;
    size_t len;
    size_t map_len; /* whole pages, as mapped */
};

/* A zeroed secret of len bytes (1 .. 1 MiB). Fails rather than hand out memory that could be
 * swapped: an unprivileged process may lock RLIMIT_MEMLOCK bytes (8 MiB by default). */
int secret_new(size_t len, struct secret **ret, tm_err *err);
/* A secret of len bytes from getrandom(). */
int secret_random(size_t len, struct secret **ret, tm_err *err);
/* Wipe, unlock, unmap; NULL is fine. */
void secret_free(struct secret *s);

static inline void secret_freep(struct secret **s)
{
    secret_free(*s);
}
#define _cleanup_secret_ _cleanup_(secret_freep)

/* For every process that holds keys or PINs (trustmed, scd, tpmd), at start: not dumpable (no
 * core dump, no ptrace or /proc/PID/mem by its own uid) and a core size limit of 0, so a crash
 * never writes key material to a file. */
void secmem_no_core_dumps(void);

/* Fill buf from getrandom(), blocking until the kernel's pool is initialised. */
int secure_random(void *buf, size_t len, tm_err *err);
