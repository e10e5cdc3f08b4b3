/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "pin_input.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "term_safe.h"

int pin_input_open(struct pin_input *in, const char *file, bool stdin_busy, tm_err *err)
{
    *in = (struct pin_input){.fd = -1};
    if (file && strcmp(file, "-") != 0) {
        in->fd = open(file, O_RDONLY | O_CLOEXEC);
        if (in->fd < 0)
            return tm_err_sys(err, "cannot open the PIN file %s", file);
        in->own_fd = true;
        return 0;
    }
    if (file || (!isatty(STDIN_FILENO) && !stdin_busy)) {
        in->fd = STDIN_FILENO;
        return 0;
    }
    in->fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
    if (in->fd < 0)
        return tm_err_set(err, ENOTTY,
                          "a PIN is needed and there is no terminal to ask on; give "
                          "it with --pin-file FILE");
    in->own_fd = in->tty = true;
    return 0;
}

void pin_input_close(struct pin_input *in)
{
    if (in->own_fd && in->fd >= 0)
        close(in->fd);
    in->fd = -1;
}

/* Read one line byte by byte: nothing after the newline is consumed, so stdin stays usable. */
static int read_line(struct pin_input *in, struct secret *s, size_t *ret_len, tm_err *err)
{
    size_t n = 0;
    for (;;) {
        char ch;
        ssize_t r = read(in->fd, &ch, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return tm_err_sys(err, "cannot read the PIN");
        if (r == 0 && n == 0)
            return tm_err_set(err, ENODATA, "no PIN given (end of input)");
        if (r == 0 || ch == '\n')
            break;
        if (n + 1 >= s->len)
            return tm_err_set(err, E2BIG, "longer than %d characters", PIN_INPUT_MAX);
        s->data[n++] = (uint8_t)ch;
    }
    if (n > 0 && s->data[n - 1] == '\r')
        n--;
    s->data[n] = '\0';
    *ret_len = n;
    return 0;
}

/* The prompts go to the terminal itself, not through stdout: escape them the same way
 * (term_safe.h), they carry the container's name. */
static void tty_print(int fd, const char *text, const char *end)
{
    struct term_escaper e = {0};
    char out[6 * 512 + 8];
    size_t len = strnlen(text, 512);
    size_t n = term_escape(&e, text, len, out, true);
    dprintf(fd, "%.*s%s", (int)n, out, end);
}

static int ask(struct pin_input *in, const char *prompt, struct secret **ret, size_t *ret_len, tm_err *err)
{
    struct termios old, quiet;
    bool echo_off = false;
    if (in->tty) {
        /* Echo off before the prompt shows: what is typed after it is never echoed (and what
         * was typed before it is discarded, not taken for the PIN). */
        if (tcgetattr(in->fd, &old) == 0) {
            quiet = old;
            quiet.c_lflag &= ~(tcflag_t)ECHO;
            quiet.c_lflag |= ECHONL;
            echo_off = tcsetattr(in->fd, TCSAFLUSH, &quiet) == 0;
        }
        tty_print(in->fd, prompt, ": ");
    }
    struct secret *s;
    int r = secret_new(PIN_INPUT_MAX + 2, &s, err);
    if (r == 0 && (r = read_line(in, s, ret_len, err)) < 0)
        secret_free(s);
    if (echo_off)
        tcsetattr(in->fd, TCSANOW, &old);
    if (r < 0)
        return tm_err_prefix(err, "%s", prompt);
    *ret = s;
    return 0;
}

int pin_read(struct pin_input *in, const char *prompt, struct secret **ret, tm_err *err)
{
    size_t len;
    struct secret *s;
    int r = ask(in, prompt, &s, &len, err);
    if (r < 0)
        return r;
    if (len == 0) {
        secret_free(s);
        return tm_err_set(err, EINVAL, "%s: empty", prompt);
    }
    *ret = s;
    return 0;
}

int pin_read_new(struct pin_input *in, const char *prompt, size_t min, struct secret **ret, tm_err *err)
{
    for (int attempt = 0;; attempt++) {
        _cleanup_secret_ struct secret *first = NULL, *again = NULL;
        size_t len, len2;
        int r = ask(in, prompt, &first, &len, err);
        if (r < 0)
            return r;
        if (len < min) {
            tm_err_set(err, EINVAL, "%s: at least %zu characters, please", prompt, min);
        } else if (!in->tty) {
            *ret = first;
            first = NULL;
            return 0;
        } else {
            char again_prompt[128];
            snprintf(again_prompt, sizeof(again_prompt), "Repeat %s", prompt);
            if ((r = ask(in, again_prompt, &again, &len2, err)) < 0)
                return r;
            if (len == len2 && memcmp(first->data, again->data, len) == 0) {
                *ret = first;
                first = NULL;
                return 0;
            }
            tm_err_set(err, EINVAL, "%s: the two entries differ", prompt);
        }
        /* Only a person at a terminal gets another go. */
        if (!in->tty || attempt == 2)
            return -err->code;
        tty_print(in->fd, err->msg, "\n");
    }
}
