/* SPDX-License-Identifier: GPL-2.0-or-later */
/* `trustme-fleet attest-tls`, on the device (docs/FLEET.md "The pull path over TLS"): the
 * device's attestation endpoint over TLS, authenticated by the device's TLS key in its TPM. Each
 * connection is a child process: TLS with the client, then every framed request passed to
 * tpmd's plain endpoint (on the loopback) and its answer back, quotes and vTPM relay requests
 * alike, so one TLS connection is one tpmd connection. */
#include "attest_tls.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "attest_check.h"
#include "cleanup.h"
#include "fleet.h"
#include "log.h"
#include "tls_chan.h"
#include "tpm_key.h"

#define MAX_CHILDREN 16 /* tpmd's own limit of connections (ATTEST_MAX_CONNS) */
#define STEP_MS 10000 /* the handshake, and each request with its answer (tpmd's ATTEST_TIMEOUT_MS) */
#define SESSION_S 120 /* a connection's whole life: a vTPM relay session sends many requests */

static inline void ssl_ctx_freep(SSL_CTX **c)
{
    SSL_CTX_free(*c);
}
static inline void ssl_freep(SSL **s)
{
    SSL_free(*s);
}
static inline void bio_freep(BIO **b)
{
    BIO_free(*b);
}
static inline void x509_freep(X509 **x)
{
    X509_free(*x);
}
static inline void pkey_freep(EVP_PKEY **k)
{
    EVP_PKEY_free(*k);
}

static int fail_tls(tm_err *err, const char *what)
{
    char why[256];
    tls_chan_reason(why, sizeof(why));
    return tm_err_set(err, EINVAL, "%s%s%s", what, why[0] ? ": " : "", why);
}

/* TLS 1.3, the device's certificate chain, its key in the TPM (through trustmed at control),
 * ECDSA with SHA-256 (the TPM key's scheme); no tickets: every handshake is signed anew. */
static int server_ctx(const struct fleet_attest_tls_opts *o, SSL_CTX **ret, tm_err *err)
{
    _cleanup_(ssl_ctx_freep) SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1)
        return fail_tls(err, "cannot make a TLS context");
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    _cleanup_(bio_freep) BIO *in = BIO_new_file(o->cert_file, "r");
    _cleanup_(x509_freep) X509 *leaf = in ? PEM_read_bio_X509(in, NULL, NULL, NULL) : NULL;
    if (!leaf)
        return fail_tls(err, "--tls-cert: no PEM certificate");
    _cleanup_(pkey_freep) EVP_PKEY *key = NULL;
    int r = tpm_key_for_cert(leaf, o->control_socket, &key, err);
    if (r < 0)
        return tm_err_prefix(err, "%s", o->cert_file);
    if (SSL_CTX_use_certificate(ctx, leaf) != 1 || SSL_CTX_use_PrivateKey(ctx, key) != 1 ||
        SSL_CTX_set1_sigalgs_list(ctx, "ECDSA+SHA256") != 1)
        return fail_tls(err, "cannot use the device's certificate");
    for (;;) {
        X509 *ca = PEM_read_bio_X509(in, NULL, NULL, NULL);
        if (!ca)
            break;
        if (SSL_CTX_add1_chain_cert(ctx, ca) != 1) {
            X509_free(ca);
            return fail_tls(err, "cannot use the certificate chain");
        }
        X509_free(ca);
    }
    ERR_clear_error();
    *ret = steal_ptr(ctx);
    return 0;
}

/* One client, in its own process: 0 when it is done. */
static int serve_one(SSL_CTX *ctx, int fd, const char *attest)
{
    alarm(SESSION_S);
    tm_err err = {0};
    _cleanup_(ssl_freep) SSL *ssl = SSL_new(ctx);
    if (!ssl || SSL_set_fd(ssl, fd) != 1)
        return -ENOMEM;
    SSL_set_accept_state(ssl);
    struct tls_chan cl = {.fd = fd, .ssl = ssl, .deadline = tm_now_ms() + STEP_MS};
    int r = tls_chan_handshake(&cl, &err);
    if (r < 0) {
        log_debug("attest-tls: %s", err.msg);
        return r;
    }
    _cleanup_close_ int up = -1;
    for (;;) {
        cl.deadline = tm_now_ms() + STEP_MS;
        _cleanup_free_ uint8_t *rq = NULL, *ans = NULL;
        size_t rq_len = 0, ans_len = 0;
        r = tls_chan_read_frame(&cl, ATTEST_REQUEST_MAX, &rq, &rq_len, &err);
        if (r <= 0)
            break;
        if (up < 0 && (up = tls_chan_dial(attest, cl.deadline, &err)) < 0)
            break;
        struct tls_chan dev = {.fd = up, .deadline = cl.deadline};
        if ((r = tls_chan_write_frame(&dev, rq, rq_len, &err)) < 0 ||
            (r = tls_chan_read_frame(&dev, ATTEST_RESPONSE_MAX, &ans, &ans_len, &err)) <= 0 ||
            (r = tls_chan_write_frame(&cl, ans, ans_len, &err)) < 0)
            break;
    }
    if (err.msg[0])
        log_debug("attest-tls: %s", err.msg);
    SSL_shutdown(ssl);
    return 0;
}

static int listen_on(const char *address, char bound[64], tm_err *err)
{
    char host[FLEET_ADDRESS_MAX + 1];
    const char *colon = strrchr(address, ':');
    if (!fleet_address_ok(address) || !colon)
        return tm_err_set(err, EINVAL, "--listen: HOST:PORT");
    snprintf(host, sizeof(host), "%.*s", (int)(colon - address), address);
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = '\0';
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV}, *ai = NULL;
    int g = getaddrinfo(host, colon + 1, &hints, &ai);
    if (g != 0)
        return tm_err_set(err, EINVAL, "--listen %s: %s", address, gai_strerror(g));
    _cleanup_close_ int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    int r = 0;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, MAX_CHILDREN) < 0)
        r = tm_err_sys(err, "cannot listen on %s", address);
    freeaddrinfo(ai);
    if (r < 0)
        return r;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char ip[INET6_ADDRSTRLEN] = "?";
    getsockname(fd, (struct sockaddr *)&ss, &len);
    if (ss.ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, ip, sizeof(ip));
        snprintf(bound, 64, "[%s]:%u", ip, ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
    } else {
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, ip, sizeof(ip));
        snprintf(bound, 64, "%s:%u", ip, ntohs(((struct sockaddr_in *)&ss)->sin_port));
    }
    return steal_fd(fd);
}

/* A connection's child and the address it came from (without the port). */
struct kid {
    pid_t pid;
    uint8_t host[16];
};

static tm_ratelimit rl_full = TM_RATELIMIT_INIT(10, 1);

static void peer_host(const struct sockaddr_storage *ss, uint8_t host[16])
{
    memset(host, 0, 16);
    if (ss->ss_family == AF_INET6)
        memcpy(host, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
    else if (ss->ss_family == AF_INET)
        memcpy(host + 12, &((const struct sockaddr_in *)ss)->sin_addr, 4);
}

/* The oldest child of the address with the most children (the first such address by age). */
static unsigned evict_choice(const struct kid *kids, unsigned n)
{
    unsigned best = 0, best_count = 0;
    for (unsigned i = 0; i < n; i++) {
        unsigned count = 0;
        for (unsigned j = 0; j < n; j++)
            count += memcmp(kids[i].host, kids[j].host, 16) == 0;
        if (count > best_count) {
            best = i;
            best_count = count;
        }
    }
    return best;
}

int fleet_attest_tls_serve(const struct fleet_attest_tls_opts *o, volatile int *stop, tm_err *err)
{
    if (!fleet_address_ok(o->attest))
        return tm_err_set(err, EINVAL, "--attest: HOST:PORT of the device's tpmd");
    _cleanup_(ssl_ctx_freep) SSL_CTX *ctx = NULL;
    int r = server_ctx(o, &ctx, err);
    if (r < 0)
        return r;
    char bound[64];
    _cleanup_close_ int lfd = listen_on(o->listen, bound, err);
    if (lfd < 0)
        return lfd;
    /* The children are counted (and reaped) here, not left to the kernel. */
    signal(SIGCHLD, SIG_DFL);
    printf("listening on %s\n", bound);
    fflush(stdout);
    struct kid kids[MAX_CHILDREN] = {0}; /* oldest first */
    unsigned nkids = 0;
    while (!*stop) {
        for (pid_t p; nkids && (p = waitpid(-1, NULL, WNOHANG)) > 0;)
            for (unsigned i = 0; i < nkids; i++)
                if (kids[i].pid == p) {
                    memmove(&kids[i], &kids[i + 1], (nkids - i - 1) * sizeof(*kids));
                    nkids--;
                    break;
                }
        struct pollfd pf = {.fd = lfd, .events = POLLIN};
        if (poll(&pf, 1, 200) <= 0)
            continue;
        struct sockaddr_storage peer;
        socklen_t plen = sizeof(peer);
        int fd = accept4(lfd, (struct sockaddr *)&peer, &plen, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0)
            continue;
        struct kid k = {0};
        peer_host(&peer, k.host);
        if (nkids >= MAX_CHILDREN) {
            /* Full: the oldest connection of the address holding the most makes room, as in
             * tpmd the oldest. A worker's exchange takes a fraction of a second; connections
             * held open to lock workers out are the old ones, and one address flooding new
             * connections closes its own, not another's exchange in its handshake. */
            unsigned victim = evict_choice(kids, nkids);
            log_warn_ratelimited(&rl_full,
                                 "attest-tls: %d connections at once; the oldest of the address holding "
                                 "the most is closed",
                                 MAX_CHILDREN);
            kill(kids[victim].pid, SIGKILL);
            waitpid(kids[victim].pid, NULL, 0);
            memmove(&kids[victim], &kids[victim + 1], (nkids - victim - 1) * sizeof(*kids));
            nkids--;
        }
        pid_t p = fork();
        if (p == 0) {
            close(lfd);
            signal(SIGTERM, SIG_DFL);
            signal(SIGINT, SIG_DFL);
            _exit(serve_one(ctx, fd, o->attest) < 0 ? 1 : 0);
        }
        close(fd);
        if (p > 0) {
            k.pid = p;
            kids[nkids++] = k;
        }
    }
    for (unsigned i = 0; i < nkids; i++)
        kill(kids[i].pid, SIGTERM);
    while (nkids && waitpid(-1, NULL, 0) > 0)
        nkids--;
    return 0;
}
