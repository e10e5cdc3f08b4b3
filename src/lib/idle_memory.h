/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Giving memory back while a service is idle (docs/BENCHMARKS.md "Memory").
 *
 * A service that used OpenSSL once keeps most of libcrypto's text and read-only data mapped
 * (about 4 MiB of its RSS): every page it touched, and the kernel's fault-around maps the
 * neighbours too. Those pages are clean copies of the library file, shared with every other
 * process that maps it; dropping them from this process's page tables loses nothing (the next
 * use maps them again from the page cache, or reads them from the file, as after the kernel
 * reclaimed them under memory pressure). */
#pragma once

#include <stddef.h>

/* How long a service waits after its last request before it calls tm_idle_release(). */
#define TM_IDLE_RELEASE_MS 2000

/* The heap's free pages back to the kernel (malloc_trim), and the mappings of the program's and
 * its libraries' read-only, never-written segments dropped (madvise MADV_DONTNEED). Writable
 * segments, the RELRO range (relocated, so private copies) and objects with text relocations are
 * left alone. Needs no /proc (scd runs without it). Returns the bytes of mappings dropped. */
size_t tm_idle_release(void);
