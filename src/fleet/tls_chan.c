/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "tls_chan.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>

#include "cleanup.h"
#include "deadline.h"
#include "fleet.h"

const char *tls_chan_reason(char *buf, size_t size)
{
    unsigned long e = ERR_peek_last_error();
    buf[0] = '\0';
    if (e)
        ERR_error_string_n(e, buf, size);
    ERR_clear_error();
    return buf;
}

int tls_chan_dial(const char *hostport, int64_t deadline, tm_err *err)
{
    if (!fleet_address_ok(hostport))
        return tm_err_set(err, EINVAL, "%s: not HOST:PORT", hostport);
    return tm_dial(hostport, deadline, err);
}

/* Wait for what OpenSSL wants after a call returned rc; 0 to call again, else -errno. */
static int tls_retry(struct tls_chan *ch, int rc)
{
    int e = SSL_get_error(ch->ssl, rc);
    if (e == SSL_ERROR_WANT_READ)
        return tm_wait_fd(ch->fd, POLLIN, ch->deadline);
    if (e == SSL_ERROR_WANT_WRITE)
        return tm_wait_fd(ch->fd, POLLOUT, ch->deadline);
    if (e == SSL_ERROR_ZERO_RETURN)
        return -EPIPE;
    return -EPROTO;
}

int tls_chan_handshake(struct tls_chan *ch, tm_err *err)
{
    for (;;) {
        int rc = SSL_do_handshake(ch->ssl);
        if (rc == 1)
            return 0;
        int r = tls_retry(ch, rc);
        if (r < 0) {
            char why[256];
            tls_chan_reason(why, sizeof(why));
            return tm_err_set(err, r == -ETIMEDOUT ? ETIMEDOUT : EPROTO, "TLS handshake failed: %s",
                              r == -ETIMEDOUT ? "timed out"
                              : why[0]        ? why
                                              : "the peer closed the connection");
        }
    }
}

/* Read exactly n bytes; 0, -EPIPE at a clean end before the first byte, else -errno. */
static int read_all(struct tls_chan *ch, uint8_t *p, size_t n)
{
    if (!ch->ssl)
        return tm_recv_all(ch->fd, p, n, ch->deadline);
    size_t got = 0;
    while (got < n) {
        size_t k = 0;
        int rc = SSL_read_ex(ch->ssl, p + got, n - got, &k);
        if (rc == 1) {
            got += k;
            continue;
        }
        int r = tls_retry(ch, rc);
        if (r == -EPIPE || (r == -EPROTO && SSL_get_error(ch->ssl, rc) == SSL_ERROR_SYSCALL && !got))
            return got ? -EPROTO : -EPIPE;
        if (r < 0)
            return r;
    }
    return 0;
}

static int write_all(struct tls_chan *ch, const uint8_t *p, size_t n)
{
    if (!ch->ssl)
        return tm_send_all(ch->fd, p, n, ch->deadline);
    size_t off = 0;
    while (off < n) {
        size_t k = 0;
        int rc = SSL_write_ex(ch->ssl, p + off, n - off, &k);
        if (rc == 1) {
            off += k;
            continue;
        }
        int r = tls_retry(ch, rc);
        if (r < 0)
            return r;
    }
    return 0;
}

int tls_chan_read_frame(struct tls_chan *ch, uint32_t max, uint8_t **ret_buf, size_t *ret_len, tm_err *err)
{
    uint8_t hdr[4];
    int r = read_all(ch, hdr, sizeof(hdr));
    if (r == -EPIPE) {
        ERR_clear_error();
        return 0;
    }
    if (r < 0) {
        ERR_clear_error();
        return tm_err_set(err, -r, "cannot read a frame: %s", strerror(-r));
    }
    uint32_t len = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
    if (len > max)
        return tm_err_set(err, EMSGSIZE, "a frame of %u bytes, at most %u", len, max);
    _cleanup_free_ uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return tm_err_set(err, ENOMEM, "out of memory");
    if ((r = read_all(ch, buf, len)) < 0) {
        ERR_clear_error();
        return tm_err_set(err, r == -EPIPE ? EPROTO : -r, "the frame was cut short: %s",
                          strerror(r == -EPIPE ? EPROTO : -r));
    }
    *ret_buf = steal_ptr(buf);
    *ret_len = len;
    return 1;
}

int tls_chan_write_frame(struct tls_chan *ch, const uint8_t *buf, size_t len, tm_err *err)
{
    if (len > UINT32_MAX)
        return tm_err_set(err, EMSGSIZE, "frame too large");
    _cleanup_free_ uint8_t *out = malloc(len + 4);
    if (!out)
        return tm_err_set(err, ENOMEM, "out of memory");
    out[0] = (uint8_t)(len >> 24);
    out[1] = (uint8_t)(len >> 16);
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
    memcpy(out + 4, buf, len);
    int r = write_all(ch, out, len + 4);
    if (r < 0) {
        ERR_clear_error();
        return tm_err_set(err, -r, "cannot write a frame: %s", strerror(-r));
    }
    return 0;
}
