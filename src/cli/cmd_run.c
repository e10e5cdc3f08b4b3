/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme run, and the stdio relay it shares with start --attach. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <unistd.h>

#include "cleanup.h"
#include "cli.h"
#include "term_safe.h"
#include "fdutil.h"

static struct termios saved_tio;
static bool raw_mode;
/* What the session switched on in the terminal that shows its output (term_safe.h). */
static struct term_modes modes;
static bool track_modes;

/* Leave the terminal as it was found: its termios settings, and the modes a program in the
 * container left on (alternate screen, mouse tracking, bracketed paste, focus events, application
 * cursor keys, a hidden cursor, no auto-wrap: it may have been killed, or meant harm). Only what
 * the session's output switched is set back. */
static void restore_terminal(void)
{
    if (track_modes) {
        char seq[512];
        size_t n = term_reset_sequence(&modes, seq, sizeof(seq));
        if (n)
            write_all(isatty(STDOUT_FILENO) ? STDOUT_FILENO : STDERR_FILENO, seq, n);
        memset(&modes, 0, sizeof(modes));
    }
    if (raw_mode)
        tcsetattr(STDIN_FILENO, TCSADRAIN, &saved_tio);
    raw_mode = false;
}

static void enter_raw_mode(void)
{
    if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_tio) < 0)
        return;
    struct termios raw = saved_tio;
    cfmakeraw(&raw);
    if (tcsetattr(STDIN_FILENO, TCSADRAIN, &raw) == 0) {
        raw_mode = true;
        atexit(restore_terminal);
    }
}

static void send_window(struct client *cl, uint64_t id)
{
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) < 0)
        return;
    Trustme__WindowSize w = TRUSTME__WINDOW_SIZE__INIT;
    w.has_rows = w.has_cols = true;
    w.rows = ws.ws_row;
    w.cols = ws.ws_col;
    Trustme__Request req = TRUSTME__REQUEST__INIT;
    req.body_case = TRUSTME__REQUEST__BODY_RESIZE;
    req.resize = &w;
    client_send_for(cl, id, &req, NULL);
}

static void send_stdin(struct client *cl, uint64_t id, const uint8_t *data, size_t len, bool eof)
{
    Trustme__StdinData in = TRUSTME__STDIN_DATA__INIT;
    in.has_data = len > 0;
    in.data.data = (uint8_t *)data;
    in.data.len = len;
    in.has_eof = eof;
    in.eof = eof;
    Trustme__Request req = TRUSTME__REQUEST__INIT;
    req.body_case = TRUSTME__REQUEST__BODY_STDIN;
    req.stdin = &in;
    client_send_for(cl, id, &req, NULL);
}

static void send_signal(struct client *cl, uint64_t id, int sig)
{
    Trustme__SignalRequest s = TRUSTME__SIGNAL_REQUEST__INIT;
    s.has_signal = true;
    s.signal = sig;
    Trustme__Request req = TRUSTME__REQUEST__INIT;
    req.body_case = TRUSTME__REQUEST__BODY_SIGNAL;
    req.signal = &s;
    client_send_for(cl, id, &req, NULL);
}

/* Exit status for an error the daemon reports instead of an exit status (docker's convention:
 * 127 command not found, 126 cannot be run, 125 anything else). */
static int error_status(int code)
{
    if (code == ENOENT)
        return 127;
    if (code == EACCES || code == ENOEXEC)
        return 126;
    return 125;
}

int relay_session(struct client *cl, uint64_t id, bool tty, bool *pin_required)
{
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGWINCH);
    if (!tty) { /* with a tty these arrive as keystrokes through the terminal instead */
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGHUP);
        sigaddset(&mask, SIGQUIT);
    }
    sigprocmask(SIG_BLOCK, &mask, NULL);
    _cleanup_close_ int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
    if (tty) {
        enter_raw_mode();
        send_window(cl, id);
    }
    /* Both streams: without -t the command's stderr reaches the same terminal on its own. */
    track_modes = isatty(STDOUT_FILENO) || isatty(STDERR_FILENO);
    bool stdin_open = true;
    /* Stdin credit (docs/PROTOCOL.md): input is read and sent only within what trustmed granted,
     * so the socket never holds more than trustmed takes at once, and a signal sent behind it is
     * read at once even while the command reads nothing. */
    uint64_t credit = 0;
    /* Input is also read only while the socket has room for it, so that a blocking write never
     * keeps this loop from reading the command's output (which would deadlock both: trustmed
     * does not read a client whose replies pile up). */
    bool wait_room = false;
    for (;;) {
        bool want_input = stdin_open && !wait_room && credit > 0;
        struct pollfd pfd[3] = {{.fd = cl->fd, .events = POLLIN | (wait_room ? POLLOUT : 0)},
                                {.fd = sfd, .events = POLLIN},
                                {.fd = want_input ? STDIN_FILENO : -1, .events = POLLIN}};
        if (poll(pfd, 3, -1) < 0) {
            if (errno == EINTR)
                continue;
            restore_terminal();
            return cli_fail("poll: %s", strerror(errno));
        }
        if (pfd[0].revents & POLLOUT)
            wait_room = false;
        if (pfd[2].revents & (POLLIN | POLLHUP | POLLERR)) {
            struct pollfd out = {.fd = cl->fd, .events = POLLOUT};
            if (poll(&out, 1, 0) != 1 || !(out.revents & POLLOUT)) {
                wait_room = true; /* read it once the socket has room */
                pfd[2].revents = 0;
            }
        }
        if (pfd[1].revents & POLLIN) {
            struct signalfd_siginfo si;
            if (read(sfd, &si, sizeof(si)) == sizeof(si)) {
                if (si.ssi_signo == SIGWINCH)
                    send_window(cl, id);
                else
                    send_signal(cl, id, (int)si.ssi_signo);
            }
        }
        if (pfd[2].revents & (POLLIN | POLLHUP | POLLERR)) {
            uint8_t buf[32768];
            ssize_t n = read(STDIN_FILENO, buf, credit < sizeof(buf) ? (size_t)credit : sizeof(buf));
            if (n > 0) {
                credit -= (uint64_t)n;
                send_stdin(cl, id, buf, (size_t)n, false);
            } else if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
                send_stdin(cl, id, NULL, 0, true);
                stdin_open = false;
            }
        }
        if (!(pfd[0].revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        Trustme__Response *resp;
        tm_err err;
        if (client_recv(cl, &resp, &err) < 0) {
            restore_terminal();
            cli_fail("%s", err.msg);
            return 125;
        }
        int status = -1;
        switch (resp->body_case) {
        case TRUSTME__RESPONSE__BODY_OUTPUT: {
            int fd = resp->output->stream == TRUSTME__OUTPUT_DATA__STREAM__STDERR ? STDERR_FILENO : STDOUT_FILENO;
            if (track_modes && isatty(fd))
                term_track(&modes, resp->output->data.data, resp->output->data.len);
            write_all(fd, resp->output->data.data, resp->output->data.len);
            break;
        }
        case TRUSTME__RESPONSE__BODY_PROGRESS:
            /* stderr here is the program's: add our lines only for a person watching. */
            if (!raw_mode && isatty(STDERR_FILENO))
                fprintf(stderr, "trustme: %s\n", resp->progress->message);
            break;
        case TRUSTME__RESPONSE__BODY_STDIN_CREDIT:
            if (resp->stdin_credit->has_bytes && resp->stdin_credit->bytes <= UINT32_MAX)
                credit += resp->stdin_credit->bytes;
            break;
        case TRUSTME__RESPONSE__BODY_EXIT: status = resp->exit->code; break;
        case TRUSTME__RESPONSE__BODY_ERROR:
            restore_terminal();
            if (pin_required && resp->error->has_pin_required && resp->error->pin_required) {
                *pin_required = true;
                status = 1;
                break;
            }
            cli_fail("%s", resp->error->message ? resp->error->message : "error");
            status = error_status(resp->error->code);
            break;
        default: break;
        }
        trustme__response__free_unpacked(resp, NULL);
        if (status >= 0) {
            restore_terminal();
            return status;
        }
    }
}

int cmd_run(struct cli *cli, const struct cli_args *a)
{
    Trustme__RunRequest rr = TRUSTME__RUN_REQUEST__INIT;
    char *env[256];
    size_t nenv = cli_values(a, "env", env, ARRAY_SIZE(env) - 1);
    if (nenv >= ARRAY_SIZE(env) - 1)
        return cli_usage_error(a->verb, "at most %zu -e", ARRAY_SIZE(env) - 2);
    for (size_t e = 0; e < nenv; e++)
        if (!strchr(env[e], '='))
            return cli_usage_error(a->verb, "-e takes KEY=VALUE, not %s", env[e]);
    rr.id = a->argv[0];
    rr.has_tty = rr.tty = cli_flag(a, "tty");
    rr.has_stdin_credit = rr.stdin_credit = true;
    /* "run C -- CMD ARGS" or "run C CMD ARGS" */
    size_t i = 1;
    if (strcmp(a->argv[i], "--") == 0)
        i++;
    if (i >= a->argc)
        return cli_usage_error(a->verb, "expected a COMMAND after %s", rr.id);
    if (rr.tty) {
        const char *term = getenv("TERM");
        static char term_env[128];
        snprintf(term_env, sizeof(term_env), "TERM=%s", term && term[0] ? term : "xterm");
        env[nenv++] = term_env;
    }
    rr.argv = a->argv + i;
    rr.n_argv = a->argc - i;
    rr.env = env;
    rr.n_env = nenv;
    Trustme__Request req = TRUSTME__REQUEST__INIT;
    req.body_case = TRUSTME__REQUEST__BODY_RUN;
    req.run = &rr;
    struct client cl;
    if (cli_connect(cli, &cl) < 0)
        return 125;
    tm_err err;
    int64_t id = client_send(&cl, &req, &err);
    if (id < 0) {
        cli_fail("%s", err.msg);
        return 125;
    }
    int status = relay_session(&cl, (uint64_t)id, rr.has_tty && rr.tty, NULL);
    client_close(&cl);
    return status;
}
