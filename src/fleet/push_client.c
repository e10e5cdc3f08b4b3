/* SPDX-License-Identifier: GPL-2.0-or-later */
/* `trustme-fleet push`, the device's side of push mode (docs/FLEET.md "Push"): a nonce from the
 * fleet, a quote with it from the device's own tpmd, the response to the fleet. Plain HTTP/1.1,
 * one request per connection. */
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

#include <openssl/evp.h>

#include "attest_check.h"
#include "cleanup.h"
#include "client.h"
#include "fleet.h"
#include "hex.h"
#include "json_cleanup.h"
#include "jsonutil.h"

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

/* POST body to http://server/path; the status and the answer's JSON object. */
static int post(const char *server, const char *path, const char *body, int timeout_ms, int *ret_status, json_t **ret,
                tm_err *err)
{
    _cleanup_close_ int fd = connect_to(server, timeout_ms, err);
    if (fd < 0)
        return fd;
    _cleanup_free_ char *head = NULL;
    if (asprintf(&head,
                 "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                 "Connection: close\r\n\r\n",
                 path, server, strlen(body)) < 0)
        return tm_err_set(err, ENOMEM, "out of memory");
    for (const char *parts[] = {head, body}, **p = parts; p < parts + 2; p++)
        for (size_t off = 0, n = strlen(*p); off < n;) {
            ssize_t w = send(fd, *p + off, n - off, MSG_NOSIGNAL);
            if (w <= 0)
                return tm_err_sys(err, "%s: send", server);
            off += (size_t)w;
        }
    _cleanup_free_ char *ans = malloc(ANSWER_MAX + 1);
    size_t len = 0;
    if (!ans)
        return tm_err_set(err, ENOMEM, "out of memory");
    for (;;) {
        ssize_t n = recv(fd, ans + len, ANSWER_MAX - len, 0);
        if (n < 0)
            return tm_err_sys(err, "%s: receive", server);
        if (n == 0)
            break;
        len += (size_t)n;
        if (len == ANSWER_MAX)
            return tm_err_set(err, EPROTO, "%s: the answer is larger than %d bytes", server, ANSWER_MAX);
    }
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

int fleet_push_run(const char *server, const char *device, const char *attest, int timeout_ms, char **ret_answer,
                   tm_err *err)
{
    if (!fleet_name_ok(device))
        return tm_err_set(err, EINVAL, "--device: not a device name");
    _cleanup_json_ json_t *rq = json_pack("{s:s}", "device", device);
    _cleanup_free_ char *body = rq ? json_dumps(rq, JSON_COMPACT) : NULL;
    _cleanup_json_ json_t *nonce_ans = NULL;
    int status = 0;
    int r = body ? post(server, "/api/v1/push/nonce", body, timeout_ms, &status, &nonce_ans, err)
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
    r = evbody ? post(server, "/api/v1/push/evidence", evbody, timeout_ms, &status, &verdict, err)
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
