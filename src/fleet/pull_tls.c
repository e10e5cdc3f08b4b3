/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The worker's side of the pull path over TLS (docs/FLEET.md "The pull path over TLS"): the
 * device's endpoint must prove the TLS key pinned at enrollment, which lives in its TPM. */
#include "pull_tls.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "attest.pb-c.h"
#include "attest_check.h"
#include "cleanup.h"
#include "tls_chan.h"

static SSL_CTX *client_ctx;
static pthread_once_t client_once = PTHREAD_ONCE_INIT;

/* TLS 1.3 only, no session tickets (every handshake is a full one: the device signs it with its
 * TPM key). The peer's certificate is not verified by OpenSSL's rules for servers: a device's
 * TLS certificate is a client certificate of the Device CA (clientAuth), and what makes it the
 * device's is the fleet's own check after the handshake (fleet_device_tls_pinned). OpenSSL
 * checks the handshake's CertificateVerify with the certificate's key whatever the verify mode,
 * so the peer holds that key. */
static void make_ctx(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1) {
        SSL_CTX_free(ctx);
        ERR_clear_error();
        return;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    client_ctx = ctx;
}

static inline void ssl_freep(SSL **s)
{
    SSL_free(*s);
}
static inline void bio_freep(BIO **b)
{
    BIO_free(*b);
}

/* The chain the peer sent (leaf first) as PEM, NUL-terminated. */
static int peer_chain_pem(SSL *ssl, char **ret, tm_err *err)
{
    STACK_OF(X509) *chain = SSL_get_peer_cert_chain(ssl);
    if (!chain || sk_X509_num(chain) == 0)
        return tm_err_set(err, EACCES, "the device's endpoint presented no certificate");
    _cleanup_(bio_freep) BIO *out = BIO_new(BIO_s_mem());
    if (!out)
        return tm_err_set(err, ENOMEM, "out of memory");
    for (int i = 0; i < sk_X509_num(chain) && i < 8; i++)
        if (PEM_write_bio_X509(out, sk_X509_value(chain, i)) != 1)
            return tm_err_set(err, ENOMEM, "out of memory");
    char *p = NULL;
    long n = BIO_get_mem_data(out, &p);
    char *s = n > 0 ? strndup(p, (size_t)n) : NULL;
    if (!s)
        return tm_err_set(err, ENOMEM, "out of memory");
    *ret = s;
    return 0;
}

int fleet_pull_tls_fetch(const struct fleet_trust *trust, const struct fleet_target *t, int timeout_ms, uint64_t id,
                         const uint8_t *nonce, size_t nonce_len, const uint32_t *pcrs, size_t npcrs, uint8_t **ret_buf,
                         size_t *ret_len, bool *ret_refused, tm_err *err)
{
    *ret_refused = false;
    pthread_once(&client_once, make_ctx);
    if (!client_ctx)
        return tm_err_set(err, ENOMEM, "cannot make a TLS context");
    struct tls_chan ch = {.deadline = tm_now_ms() + timeout_ms};
    _cleanup_close_ int fd = tls_chan_dial(t->address, ch.deadline, err);
    if (fd < 0)
        return fd;
    _cleanup_(ssl_freep) SSL *ssl = SSL_new(client_ctx);
    if (!ssl || SSL_set_fd(ssl, fd) != 1) {
        ERR_clear_error();
        return tm_err_set(err, ENOMEM, "cannot set up TLS");
    }
    SSL_set_connect_state(ssl);
    ch.fd = fd;
    ch.ssl = ssl;
    int r = tls_chan_handshake(&ch, err);
    if (r < 0)
        return tm_err_prefix(err, "%s", t->address);
    /* Who answered, before anything is sent: the request carries nothing secret, but only the
     * enrolled key's holder gets to answer it. */
    _cleanup_free_ char *pem = NULL;
    if ((r = peer_chain_pem(ssl, &pem, err)) < 0 ||
        (r = fleet_device_tls_pinned(trust, t->name, t->tls_spki, pem, "the certificate of its attestation endpoint",
                                     err)) < 0) {
        *ret_refused = r == -EACCES;
        return r;
    }
    Trustme__Attest__AttestRequest rq = TRUSTME__ATTEST__ATTEST_REQUEST__INIT;
    rq.has_version = rq.has_id = rq.has_nonce = true;
    rq.version = ATTEST_VERSION;
    rq.id = id;
    rq.nonce.data = (uint8_t *)nonce;
    rq.nonce.len = nonce_len;
    rq.pcrs = (uint32_t *)pcrs;
    rq.n_pcrs = npcrs;
    size_t len = trustme__attest__attest_request__get_packed_size(&rq);
    if (len > ATTEST_REQUEST_MAX)
        return tm_err_set(err, EINVAL, "request of %zu bytes, at most %d", len, ATTEST_REQUEST_MAX);
    uint8_t out[ATTEST_REQUEST_MAX];
    trustme__attest__attest_request__pack(&rq, out);
    if ((r = tls_chan_write_frame(&ch, out, len, err)) < 0)
        return tm_err_prefix(err, "%s", t->address);
    r = tls_chan_read_frame(&ch, ATTEST_RESPONSE_MAX, ret_buf, ret_len, err);
    if (r == 0)
        return tm_err_set(err, EPROTO, "%s: the device closed the connection without answering", t->address);
    if (r < 0)
        return tm_err_prefix(err, "%s", t->address);
    SSL_shutdown(ssl);
    ERR_clear_error();
    return 0;
}
