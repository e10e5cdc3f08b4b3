/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Passphrases and PINs. Never taken from the command line (it shows in ps and shell history):
 * from a file named by an option, or typed on the terminal without echo. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "cleanup.h"
#include "pki.h"

#define SECRET_MAX 1024

void secret_text_freep(char **s)
{
    if (*s) {
        OPENSSL_cleanse(*s, strlen(*s));
        free(*s);
        *s = NULL;
    }
}

static void strip_line_end(char *s)
{
    size_t n = strcspn(s, "\r\n");
    s[n] = '\0';
}

static int read_from_file(const char *file, char *buf, tm_err *err)
{
    _cleanup_fclose_ FILE *f = fopen(file, "re");
    if (!f)
        return tm_err_sys(err, "cannot open %s", file);
    if (!fgets(buf, SECRET_MAX, f)) {
        if (ferror(f))
            return tm_err_sys(err, "cannot read %s", file);
        buf[0] = '\0';
    }
    strip_line_end(buf);
    return 0;
}

static int read_from_tty(const char *prompt, char *buf, tm_err *err)
{
    _cleanup_fclose_ FILE *tty = fopen("/dev/tty", "r+e");
    if (!tty)
        return tm_err_set(err, ENOTTY, "no terminal to ask for the %s on (give it in a file)", prompt);
    struct termios old, quiet;
    if (tcgetattr(fileno(tty), &old) < 0)
        return tm_err_sys(err, "cannot read the terminal's settings");
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
    quiet.c_lflag |= ICANON;
    fprintf(tty, "%s: ", prompt);
    fflush(tty);
    /* Ctrl-C while echo is off would leave the terminal silent: hold SIGINT/SIGTSTP until the
     * old settings are back. */
    sigset_t block, saved;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTSTP);
    sigaddset(&block, SIGTERM);
    sigprocmask(SIG_BLOCK, &block, &saved);
    int r = 0;
    if (tcsetattr(fileno(tty), TCSAFLUSH, &quiet) < 0)
        r = tm_err_sys(err, "cannot turn the terminal's echo off");
    else if (!fgets(buf, SECRET_MAX, tty))
        r = tm_err_set(err, EIO, "no %s typed", prompt);
    tcsetattr(fileno(tty), TCSAFLUSH, &old);
    fputc('\n', tty);
    sigprocmask(SIG_SETMASK, &saved, NULL);
    if (r < 0)
        return r;
    strip_line_end(buf);
    return 0;
}

int secret_read(const char *file, const char *prompt, bool confirm, char **ret, tm_err *err)
{
    _cleanup_(secret_text_freep) char *buf = calloc(1, SECRET_MAX);
    _cleanup_(secret_text_freep) char *again = NULL;
    if (!buf)
        return tm_err_set(err, ENOMEM, "out of memory");
    int r = file ? read_from_file(file, buf, err) : read_from_tty(prompt, buf, err);
    if (r < 0)
        return r;
    if (buf[0] == '\0')
        return tm_err_set(err, EINVAL, "the %s is empty%s%s", prompt, file ? " in " : "", file ? file : "");
    if (!file && confirm) {
        if (!(again = calloc(1, SECRET_MAX)))
            return tm_err_set(err, ENOMEM, "out of memory");
        char prompt2[128];
        snprintf(prompt2, sizeof(prompt2), "%s (again)", prompt);
        if ((r = read_from_tty(prompt2, again, err)) < 0)
            return r;
        if (strcmp(buf, again) != 0)
            return tm_err_set(err, EINVAL, "the two %ss differ", prompt);
    }
    *ret = steal_ptr(buf);
    return 0;
}
