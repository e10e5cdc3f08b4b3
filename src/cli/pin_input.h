/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Reading PINs and PUKs (pin_input.c).
 *
 * From --pin-file FILE ("-" for stdin): one secret per line, in the order the prompts would ask
 * for them, each asked once. Otherwise from the terminal, without echo, each new secret twice.
 * Otherwise, when stdin is not a terminal, from stdin as from a file. Secrets are kept in locked
 * memory and wiped after use. */
#pragma once

#include <stdbool.h>

#include "error.h"
#include "secmem.h"

#define PIN_INPUT_MAX 64 /* as the token service's limit */

struct pin_input {
    int fd; /* where lines come from; -1 until opened */
    bool tty; /* prompts, no echo, confirmation of new secrets */
    bool own_fd;
};

/* file: the --pin-file argument, or NULL. Fails if there is no terminal and stdin was given to
 * something else (stdin_busy: an attached start relays it). */
int pin_input_open(struct pin_input *in, const char *file, bool stdin_busy, tm_err *err);
void pin_input_close(struct pin_input *in);
/* One existing secret. */
int pin_read(struct pin_input *in, const char *prompt, struct secret **ret, tm_err *err);
/* A new secret of min..PIN_INPUT_MAX bytes; on a terminal asked twice. */
int pin_read_new(struct pin_input *in, const char *prompt, size_t min, struct secret **ret, tm_err *err);
