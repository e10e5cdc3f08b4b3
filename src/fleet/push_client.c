/* SPDX-License-Identifier: GPL-2.0-or-later */
/* `trustme-fleet push`, the device's side of push mode (docs/FLEET.md "Push"): a nonce from the
 * fleet, a quote with it from the device's own tpmd, the response to the fleet. HTTP/1.1, one
 * request per connection; over TLS with --tls-ca, with the device's TLS client certificate and
 * its key in the TPM with --tls-cert (tpm_key.h). */
#include "push_client.h"

#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "attest_check.h"
#include "cleanup.h"
#include "client.h"
#include "fleet.h"
#include "hex.h"
#include "json_cleanup.h"
#include "jsonutil.h"
#include "tpm_key.h"

#define ANSWER_MAX (1024 * 1024)

static int connect_to(const char *hostport, int timeout_ms, tm_err *err)
{
    char host[FLEET_ADDRESS_MAX + 1];
    const char *colon = strrchr(hostport, ':');
    if (!fleet_address_ok(hostport) || !colon)
        return tm_err_set(err, EINVAL, "%s: not HOST:PORT", hostport);
    snprintf(host, sizeof(host), "%.*s", (int)(colon - hostport), hostport);
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = '\0';
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int r = getaddrinfo(host, colon + 1, &hints, &ai);
    if (r != 0)
        return tm_err_set(err, EHOSTUNREACH, "%s: %s", hostport, gai_strerror(r));
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        r = tm_err_sys(err, "%s: connect", hostport);
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return r;
    }
    freeaddrinfo(ai);
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    return fd;
}

static inline void ssl_freep(SSL **s)
{
    SSL_free(*s);
}

static int tls_fail(tm_err *err, const char *server, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    char reason[256] = "";
    if (e)
        ERR_error_string_n(e, reason, sizeof(reason));
    ERR_clear_error();
    return tm_err_set(err, ECONNREFUSED, "%s: %s%s%s", server, what, e ? ": " : "", reason);
}

/* The connection: plain (ssl NULL) or TLS over fd. */
struct chan {
    int fd;
    SSL *ssl;
};

static ssize_t chan_send(struct chan *c, const char *p, size_t n)
{
    if (!c->ssl)
        return send(c->fd, p, n, MSG_NOSIGNAL);
    size_t w = 0;
    return SSL_write_ex(c->ssl, p, n, &w) == 1 ? (ssize_t)w : -1;
}

static ssize_t chan_recv(struct chan *c, char *p, size_t n)
{
    if (!c->ssl)
        return recv(c->fd, p, n, 0);
    size_t got = 0;
    if (SSL_read_ex(c->ssl, p, n, &got) == 1)
        return (ssize_t)got;
    int e = SSL_get_error(c->ssl, 0);
    ERR_clear_error();
    return e == SSL_ERROR_ZERO_RETURN ? 0 : -1;
}

/* TLS on fd to server (HOST:PORT): the server's certificate must verify to the context's CAs
 * and name HOST (an IP address: its subjectAltName IP). */
static int tls_start(SSL_CTX *ctx, int fd, const char *server, SSL **ret, tm_err *err)
{
    char host[FLEET_ADDRESS_MAX + 1];
    const char *colon = strrchr(server, ':');
    snprintf(host, sizeof(host), "%.*s", (int)(colon - server), server);
    if (host[0] == '[') {
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = '\0';
    }
    _cleanup_(ssl_freep) SSL *ssl = SSL_new(ctx);
    unsigned char ip[16];
    bool is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
    if (!ssl || SSL_set_fd(ssl, fd) != 1 ||
        (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) : SSL_set1_host(ssl, host)) != 1 ||
        (!is_ip && SSL_set_tlsext_host_name(ssl, host) != 1))
        return tls_fail(err, server, "cannot set up TLS");
    if (SSL_connect(ssl) != 1)
        return tls_fail(err, server, "TLS handshake failed");
    *ret = steal_ptr(ssl);
    return 0;
}

/* POST body to server/path (https with ctx, else http); the status and the answer's JSON
 * object. */
static int post(SSL_CTX *ctx, const char *server, const char *path, const char *body, int timeout_ms, int *ret_status,
                json_t **ret, tm_err *err)
{
    _cleanup_close_ int fd = connect_to(server, timeout_ms, err);
    if (fd < 0)
        return fd;
    _cleanup_(ssl_freep) SSL *ssl = NULL;
    int r;
    if (ctx && (r = tls_start(ctx, fd, server, &ssl, err)) < 0)
        return r;
    struct chan ch = {.fd = fd, .ssl = ssl};
    _cleanup_free_ char *head = NULL;
    if (asprintf(&head,
                 "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                 "Connection: close\r\n\r\n",
                 path, server, strlen(body)) < 0)
        return tm_err_set(err, ENOMEM, "out of memory");
    for (const char *parts[] = {head, body}, **p = parts; p < parts + 2; p++)
        for (size_t off = 0, n = strlen(*p); off < n;) {
            ssize_t w = chan_send(&ch, *p + off, n - off);
            if (w <= 0)
                return tm_err_sys(err, "%s: send", server);
            off += (size_t)w;
        }
    _cleanup_free_ char *ans = malloc(ANSWER_MAX + 1);
    size_t len = 0;
    if (!ans)
        return tm_err_set(err, ENOMEM, "out of memory");
    for (;;) {
        ssize_t n = chan_recv(&ch, ans + len, ANSWER_MAX - len);
        if (n < 0)
            return tm_err_sys(err, "%s: receive", server);
        if (n == 0)
            break;
        len += (size_t)n;
        if (len == ANSWER_MAX)
            return tm_err_set(err, EPROTO, "%s: the answer is larger than %d bytes", server, ANSWER_MAX);
    }
    if (ssl)
        SSL_shutdown(ssl);
    ans[len] = '\0';
    int status = 0;
    char *sep = strstr(ans, "\r\n\r\n");
    if (sscanf(ans, "HTTP/1.%*[01] %d", &status) != 1 || !sep)
        return tm_err_set(err, EPROTO, "%s: not an HTTP answer", server);
    const char *json = sep + 4;
    if (tm_json_parse_object(json, strlen(json), ret, err) < 0)
        return tm_err_set(err, EPROTO, "%s: HTTP %d without a JSON object", server, status);
    *ret_status = status;
    return 0;
}

static int answer_error(int status, json_t *o, const char *what, tm_err *err)
{
    json_t *e = json_object_get(o, "error");
    return tm_err_set(err,
                      status == 403   ? EACCES
                      : status == 409 ? ESTALE
                                      : EPROTO,
                      "%s: HTTP %d: %s", what, status, json_is_string(e) ? json_string_value(e) : "(no reason given)");
}

static inline void bio_freep(BIO **b)
{
    BIO_free(*b);
}
static inline void ssl_ctx_freep(SSL_CTX **c)
{
    SSL_CTX_free(*c);
}
static inline void x509_freep(X509 **x)
{
    X509_free(*x);
}
static inline void pkey_freep(EVP_PKEY **k)
{
    EVP_PKEY_free(*k);
}

/* The TLS context: the fleet's server CA; with a certificate, the device's chain and its key in
 * the TPM (signatures through trustmed at control). ECDSA with SHA-256 only: the TPM key's
 * scheme. */
static int tls_context(const struct fleet_push_tls *tls, SSL_CTX **ret, tm_err *err)
{
    _cleanup_(ssl_ctx_freep) SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_load_verify_locations(ctx, tls->ca_file, NULL) != 1)
        return tls_fail(err, tls->ca_file, "cannot use the fleet's CA");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (tls->cert_file) {
        _cleanup_(bio_freep) BIO *in = BIO_new_file(tls->cert_file, "r");
        _cleanup_(x509_freep) X509 *leaf = in ? PEM_read_bio_X509(in, NULL, NULL, NULL) : NULL;
        if (!leaf)
            return tls_fail(err, tls->cert_file, "no PEM certificate");
        _cleanup_(pkey_freep) EVP_PKEY *key = NULL;
        int r = tpm_key_for_cert(leaf, tls->control_socket, &key, err);
        if (r < 0)
            return tm_err_prefix(err, "%s", tls->cert_file);
        if (SSL_CTX_use_certificate(ctx, leaf) != 1 || SSL_CTX_use_PrivateKey(ctx, key) != 1 ||
            SSL_CTX_set1_client_sigalgs_list(ctx, "ECDSA+SHA256") != 1)
            return tls_fail(err, tls->cert_file, "cannot use the device's certificate");
        for (;;) { /* the CAs after the leaf, sent with it */
            X509 *ca = PEM_read_bio_X509(in, NULL, NULL, NULL);
            if (!ca)
                break;
            if (SSL_CTX_add1_chain_cert(ctx, ca) != 1) {
                X509_free(ca);
                return tls_fail(err, tls->cert_file, "cannot use the certificate chain");
            }
            X509_free(ca);
        }
        ERR_clear_error();
    }
    *ret = steal_ptr(ctx);
    return 0;
}

int fleet_push_run(const char *server, const char *device, const char *attest, const struct fleet_push_tls *tls,
                   int timeout_ms, char **ret_answer, tm_err *err)
{
    if (!fleet_name_ok(device))
        return tm_err_set(err, EINVAL, "--device: not a device name");
    _cleanup_(ssl_ctx_freep) SSL_CTX *ctx = NULL;
    if (tls && tls->ca_file) {
        int r = tls_context(tls, &ctx, err);
        if (r < 0)
            return r;
    }
    _cleanup_json_ json_t *rq = json_pack("{s:s}", "device", device);
    _cleanup_free_ char *body = rq ? json_dumps(rq, JSON_COMPACT) : NULL;
    _cleanup_json_ json_t *nonce_ans = NULL;
    int status = 0;
    int r = body ? post(ctx, server, "/api/v1/push/nonce", body, timeout_ms, &status, &nonce_ans, err)
                 : tm_err_set(err, ENOMEM, "out of memory");
    if (r < 0)
        return r;
    if (status != 200)
        return answer_error(status, nonce_ans, "nonce", err);
    const char *noncehex = json_string_value(json_object_get(nonce_ans, "nonce"));
    json_t *pcrlist = json_object_get(nonce_ans, "pcrs");
    uint8_t nonce[ATTEST_NONCE_LEN];
    uint32_t pcrs[REFVALUES_PCRS];
    size_t npcrs = 0;
    if (!noncehex || tm_hex_decode_str(noncehex, nonce, sizeof(nonce), 0, err) < 0 || !json_is_array(pcrlist) ||
        json_array_size(pcrlist) > REFVALUES_PCRS)
        return tm_err_set(err, EPROTO, "nonce: the fleet's answer has no nonce and PCRs");
    for (size_t i = 0; i < json_array_size(pcrlist); i++) {
        json_t *v = json_array_get(pcrlist, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 23)
            return tm_err_set(err, EPROTO, "nonce: the fleet's PCRs are not PCR indexes");
        pcrs[npcrs++] = (uint32_t)json_integer_value(v);
    }
    _cleanup_free_ uint8_t *resp = NULL;
    size_t len = 0;
    if ((r = attest_fetch(attest, timeout_ms, 1, nonce, sizeof(nonce), pcrs, npcrs, &resp, &len, err)) < 0)
        return tm_err_prefix(err, "the device's quote");
    _cleanup_free_ char *b64 = malloc(4 * ((len + 2) / 3) + 1);
    if (!b64)
        return tm_err_set(err, ENOMEM, "out of memory");
    EVP_EncodeBlock((unsigned char *)b64, resp, (int)len);
    _cleanup_json_ json_t *ev = json_pack("{s:s,s:s,s:s}", "device", device, "nonce", noncehex, "response", b64);
    _cleanup_free_ char *evbody = ev ? json_dumps(ev, JSON_COMPACT) : NULL;
    _cleanup_json_ json_t *verdict = NULL;
    r = evbody ? post(ctx, server, "/api/v1/push/evidence", evbody, timeout_ms, &status, &verdict, err)
               : tm_err_set(err, ENOMEM, "out of memory");
    if (r < 0)
        return r;
    if (status != 200)
        return answer_error(status, verdict, "evidence", err);
    *ret_answer = json_dumps(verdict, JSON_COMPACT);
    if (!*ret_answer)
        return tm_err_set(err, ENOMEM, "out of memory");
    return strcmp(json_string_value(json_object_get(verdict, "verdict")) ?: "", "trusted") == 0 ? 0 : 1;
}
