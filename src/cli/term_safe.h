/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What the CLI prints for a person passes through here: names, details, error messages and
 * container output come from others (a container's root, a GuestOS vendor, a restricted client),
 * and a terminal obeys control sequences (retitle, OSC 52 clipboard writes, erasing lines).
 *
 * term_escape() keeps printable UTF-8, newline and tab, and writes everything else visibly:
 * C0 controls (ESC, CR, BEL, ...), DEL, C1 controls (U+0080-U+009F, e.g. the 8-bit CSI) and the
 * Unicode controls that reorder or break lines (bidi embeddings, overrides and isolates, LRM/RLM,
 * U+2028/U+2029) as \uXXXX; bytes that are not UTF-8 as \xNN. \uXXXX is also what JSON says for
 * the same character, so JSON output stays JSON.
 *
 * term_safe_stdio() replaces stdout and stderr by streams that escape everything written to them;
 * main() installs it for every command. term_write_raw() is for the few places that hand bytes on
 * unchanged on purpose (trustme logs --raw, trustme config into a file or pipe). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct term_escaper {
    unsigned char pending[4]; /* the start of a UTF-8 sequence cut by the end of a write */
    size_t npending;
};

/* Escape in[0..len) into out (at most 6 bytes per input byte), returning the bytes written.
 * Without final, an incomplete UTF-8 sequence at the end is kept in e for the next call. */
size_t term_escape(struct term_escaper *e, const char *in, size_t len, char *out, bool final);
void term_safe_stdio(void);
/* Flush stdout, then write buf to fd 1 unchanged. 0 or -errno. */
int term_write_raw(const void *buf, size_t len);

/* Terminal modes a program in `run -t` may leave on (term_track): what the CLI sets back. */
struct term_modes {
    unsigned on; /* bit per mode of term_modes.c's table that is not at its default */
    int state; /* escape-sequence parser state, across chunks */
    unsigned param; /* the number being read */
    bool priv; /* "CSI ?" */
    unsigned params[8];
    unsigned nparams;
};

/* Follow what output to the terminal switches on and off. */
void term_track(struct term_modes *m, const void *buf, size_t len);
/* The sequence that resets what is still on (empty if nothing), into out of size >= 256. */
size_t term_reset_sequence(const struct term_modes *m, char *out, size_t size);
