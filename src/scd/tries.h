/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Failed-attempt counters of a container's token, kept in <dir>/<uuid>.tries as
 * {"pin_failures": n, "puk_failures": m}.
 *
 * Counting is pessimistic: an attempt is written to disk as failed (atomically and durably)
 * before the PIN or PUK is tried, and taken back only when it turned out right or was never
 * tried. Killing scd at any moment — even while the PIN is being checked — cannot give an
 * attacker a free guess. A locked token is refused before the PIN is looked at, so it gives no
 * answer to guess against. The same counters apply to both token types; a PKCS#11 token's own
 * counters (if any) come on top. */
#pragma once

#include <stdbool.h>

#include "error.h"

#define TRIES_PIN_MAX 3
#define TRIES_PUK_MAX 10

enum tries_kind { TRIES_PIN, TRIES_PUK };
enum tries_outcome {
    TRIES_VERIFIED, /* the secret was right */
    TRIES_WRONG, /* the secret was wrong: the attempt stays counted */
    TRIES_UNTRIED, /* failed before the secret was checked: take the attempt back */
};

struct tries {
    int pin_failures;
    int puk_failures;
};

/* A missing file means no failures. A file that does not parse is an error (fail closed). */
int tries_load(const char *path, struct tries *ret, tm_err *err);
int tries_store(const char *path, const struct tries *t, tm_err *err);
/* -EKEYREVOKED if the PUK is blocked (that ends every use of the token), -EPERM if kind is
 * TRIES_PIN and the PIN is locked. */
int tries_check(const struct tries *t, enum tries_kind kind, tm_err *err);
/* Load, check, count the attempt as failed on disk. */
int tries_begin(const char *path, enum tries_kind kind, struct tries *t, tm_err *err);
/* Settle the attempt begun with tries_begin. TRIES_WRONG returns -EACCES with a message saying
 * how many tries are left; the others return 0 (or an I/O error). A verified PUK clears only the
 * PUK counter: the PIN counter is cleared once the new PIN is in place (tries_store). */
int tries_end(const char *path, enum tries_kind kind, struct tries *t, enum tries_outcome outcome, tm_err *err);
