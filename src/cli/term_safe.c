/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "term_safe.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fdutil.h"

/* Code points shown as \uXXXX although they are valid UTF-8: they act on the terminal or on the
 * order and breaking of what is shown. */
static bool hidden_code_point(uint32_t cp)
{
    return (cp >= 0x80 && cp <= 0x9F) || cp == 0x200E || cp == 0x200F || (cp >= 0x202A && cp <= 0x202E) ||
           (cp >= 0x2066 && cp <= 0x2069) || cp == 0x2028 || cp == 0x2029 || cp == 0x061C;
}

/* Length of the UTF-8 sequence starting with b, and the allowed range of its second byte
 * (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF); 0 if b cannot start one. */
static size_t seq_len(unsigned char b, unsigned char *lo, unsigned char *hi)
{
    *lo = 0x80, *hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF)
        return 2;
    if (b >= 0xE0 && b <= 0xEF) {
        if (b == 0xE0)
            *lo = 0xA0;
        if (b == 0xED)
            *hi = 0x9F;
        return 3;
    }
    if (b >= 0xF0 && b <= 0xF4) {
        if (b == 0xF0)
            *lo = 0x90;
        if (b == 0xF4)
            *hi = 0x8F;
        return 4;
    }
    return 0;
}

/* How many of the n bytes at p form a valid prefix of the sequence (n < need). */
static bool valid_prefix(const unsigned char *p, size_t n, unsigned char lo, unsigned char hi)
{
    for (size_t i = 1; i < n; i++)
        if (i == 1 ? (p[i] < lo || p[i] > hi) : (p[i] < 0x80 || p[i] > 0xBF))
            return false;
    return true;
}

size_t term_escape(struct term_escaper *e, const char *in, size_t len, char *out, bool final)
{
    /* Work on pending + in without copying in: index through a small accessor. */
    size_t total = e->npending + len, o = 0, i = 0;
    unsigned char pend[4];
    size_t np = e->npending;
    memcpy(pend, e->pending, np);
    e->npending = 0;
#define AT(k) ((k) < np ? pend[k] : (unsigned char)in[(k)-np])
    while (i < total) {
        unsigned char b = AT(i);
        if (b < 0x80) {
            if (b == '\n' || b == '\t' || (b >= 0x20 && b != 0x7F))
                out[o++] = (char)b;
            else
                o += (size_t)sprintf(out + o, "\\u%04x", b);
            i++;
            continue;
        }
        unsigned char lo, hi, seq[4];
        size_t need = seq_len(b, &lo, &hi), have = total - i < need ? total - i : need;
        for (size_t k = 0; k < have; k++)
            seq[k] = AT(i + k);
        if (need && have < need && !final && valid_prefix(seq, have, lo, hi)) {
            memcpy(e->pending, seq, have); /* the rest comes with the next write */
            e->npending = have;
            break;
        }
        if (!need || have < need || !valid_prefix(seq, need, lo, hi)) {
            o += (size_t)sprintf(out + o, "\\x%02x", b);
            i++;
            continue;
        }
        uint32_t cp = need == 2   ? (uint32_t)(seq[0] & 0x1F)
                      : need == 3 ? (uint32_t)(seq[0] & 0x0F)
                                  : (uint32_t)(seq[0] & 0x07);
        for (size_t k = 1; k < need; k++)
            cp = cp << 6 | (seq[k] & 0x3F);
        if (hidden_code_point(cp)) {
            o += (size_t)sprintf(out + o, "\\u%04x", cp);
        } else {
            memcpy(out + o, seq, need);
            o += need;
        }
        i += need;
    }
#undef AT
    return o;
}

/* ---- escaping stdout and stderr ---------------------------------------------------------------- */

struct escaped_fd {
    int fd;
    struct term_escaper e;
};

static ssize_t escaped_write(void *cookie, const char *buf, size_t size)
{
    struct escaped_fd *s = cookie;
    size_t done = 0;
    while (done < size) {
        char out[6 * 1024 + 32];
        size_t n = size - done < 1024 ? size - done : 1024;
        size_t o = term_escape(&s->e, buf + done, n, out, false);
        if (write_all(s->fd, out, o) < 0)
            return done ? (ssize_t)done : -1;
        done += n;
    }
    return (ssize_t)size;
}

static int escaped_close(void *cookie)
{
    struct escaped_fd *s = cookie;
    char out[32];
    size_t o = term_escape(&s->e, "", 0, out, true);
    if (o)
        write_all(s->fd, out, o);
    return 0;
}

/* One state per stream, static: stdout and stderr stay open until the process ends (exit flushes
 * them but closes neither), so state allocated for them would be reported as a leak. */
static struct escaped_fd escaped_out, escaped_err;

static FILE *escaped_stream(struct escaped_fd *s, int fd, int mode)
{
    *s = (struct escaped_fd){.fd = fd};
    FILE *f = fopencookie(s, "w", (cookie_io_functions_t){.write = escaped_write, .close = escaped_close});
    if (!f)
        return NULL;
    setvbuf(f, NULL, mode, BUFSIZ);
    return f;
}

void term_safe_stdio(void)
{
    FILE *o = escaped_stream(&escaped_out, STDOUT_FILENO, isatty(STDOUT_FILENO) ? _IOLBF : _IOFBF);
    FILE *e = escaped_stream(&escaped_err, STDERR_FILENO, _IONBF);
    if (o)
        stdout = o;
    if (e)
        stderr = e;
}

int term_write_raw(const void *buf, size_t len)
{
    fflush(stdout);
    return write_all(STDOUT_FILENO, buf, len) < 0 ? -errno : 0;
}

/* ---- terminal modes after run -t -------------------------------------------------------------- */

/* DEC private modes a full-screen or interactive program switches, and how the terminal is
 * by default. Only these are put back; anything else (colours included) the program owns. */
static const struct {
    unsigned mode;
    bool on_by_default;
} modes[] = {
    {1049, false}, {1047, false}, {47, false}, /* alternate screen */
    {9, false},    {1000, false}, {1001, false}, {1002, false}, {1003, false}, /* mouse tracking */
    {1005, false}, {1006, false}, {1015, false}, {1016, false}, /* mouse encodings */
    {1004, false}, /* focus events */
    {2004, false}, /* bracketed paste */
    {1, false}, /* application cursor keys */
    {25, true}, /* cursor visible */
    {7, true}, /* auto-wrap */
};

enum { S_TEXT, S_ESC, S_CSI };

static void set_mode(struct term_modes *m, unsigned mode, bool on)
{
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
        if (modes[i].mode == mode) {
            if (on != modes[i].on_by_default)
                m->on |= 1u << i;
            else
                m->on &= ~(1u << i);
        }
}

void term_track(struct term_modes *m, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = p[i];
        switch (m->state) {
        case S_TEXT:
            if (c == 0x1B)
                m->state = S_ESC;
            break;
        case S_ESC:
            if (c == '[') {
                m->state = S_CSI;
                m->priv = false;
                m->param = m->nparams = 0;
            } else if (c == 'c') { /* RIS: the terminal resets itself */
                m->on = 0;
                m->state = S_TEXT;
            } else {
                m->state = c == 0x1B ? S_ESC : S_TEXT;
            }
            break;
        case S_CSI:
            if (c == '?' && m->nparams == 0 && m->param == 0) {
                m->priv = true;
            } else if (c >= '0' && c <= '9') {
                m->param = m->param * 10 + (c - '0');
                if (m->param > 100000)
                    m->param = 100000;
            } else if (c == ';') {
                if (m->nparams < 8)
                    m->params[m->nparams++] = m->param;
                m->param = 0;
            } else if (c >= 0x40 && c <= 0x7E) { /* final byte */
                if (m->nparams < 8)
                    m->params[m->nparams++] = m->param;
                if (m->priv && (c == 'h' || c == 'l'))
                    for (unsigned k = 0; k < m->nparams; k++)
                        set_mode(m, m->params[k], c == 'h');
                m->state = S_TEXT;
            } else if (c < 0x20 || c > 0x3F) {
                m->state = c == 0x1B ? S_ESC : S_TEXT; /* not a CSI sequence after all */
            }
            break;
        }
    }
}

size_t term_reset_sequence(const struct term_modes *m, char *out, size_t size)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]) && o + 16 < size; i++)
        if (m->on & (1u << i))
            o += (size_t)snprintf(out + o, size - o, "\033[?%u%c", modes[i].mode, modes[i].on_by_default ? 'h' : 'l');
    return o;
}
