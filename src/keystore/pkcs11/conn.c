/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The module's link to the container's keystore: one connection per process, made at the first
 * need and made again after a fork or a broken link. Frames as on the socket: a 4-byte
 * big-endian length, then one KsRequest or KsResponse (proto/keystore.proto). Every caller holds
 * the module's lock. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "p11.h"

#define SMALL_ANSWER 1024

static int conn_fd = -1;
static pid_t conn_pid;
static uint64_t conn_id;

void p11_conn_close(void)
{
    /* After a fork the child closes only its copy: the parent's link stays. */
    if (conn_fd >= 0)
        close(conn_fd);
    conn_fd = -1;
}

/* The socket: /run/trustme/keystore.sock, or $TRUSTME_KEYSTORE_SOCKET (not for setuid programs). */
static const char *socket_path(void)
{
    const char *path = secure_getenv("TRUSTME_KEYSTORE_SOCKET");
    return path && *path ? path : P11_DEFAULT_SOCKET;
}

bool p11_token_present(void)
{
    /* Outside a container with a keystore (a host where the module is registered with p11-kit
     * too) the slot is empty rather than a token whose every use fails. */
    return access(socket_path(), F_OK) == 0;
}

static int conn_open(void)
{
    if (conn_fd >= 0 && conn_pid == getpid())
        return 0;
    p11_conn_close();
    const char *path = socket_path();
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* A keystore that stops answering must not hang the application for ever. */
    struct timeval tv = {.tv_sec = 60};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    conn_fd = fd;
    conn_pid = getpid();
    return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_all(int fd, uint8_t *p, size_t n)
{
    while (n) {
        ssize_t r = recv(fd, p, n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

void p11_response_free(KsResponse *resp)
{
    if (!resp)
        return;
    /* Decrypted plaintext travels in an output: not left in freed memory. */
    if (resp->body_case == TRUSTME__KEYSTORE__KS_RESPONSE__BODY_OUTPUT && resp->output && resp->output->output.data)
        explicit_bzero(resp->output->output.data, resp->output->output.len);
    trustme__keystore__ks_response__free_unpacked(resp, NULL);
}

CK_RV p11_call(KsRequest *req, KsResponse **ret)
{
    *ret = NULL;
    if (conn_open() < 0)
        return CKR_DEVICE_ERROR;
    req->has_version = req->has_id = true;
    req->version = 1;
    req->id = ++conn_id;
    size_t n = trustme__keystore__ks_request__get_packed_size(req);
    if (n > P11_FRAME_MAX)
        return CKR_DATA_LEN_RANGE;
    uint8_t *buf = malloc(4 + n);
    if (!buf)
        return CKR_HOST_MEMORY;
    buf[0] = (uint8_t)(n >> 24), buf[1] = (uint8_t)(n >> 16), buf[2] = (uint8_t)(n >> 8), buf[3] = (uint8_t)n;
    trustme__keystore__ks_request__pack(req, buf + 4);
    int r = write_all(conn_fd, buf, 4 + n);
    explicit_bzero(buf, 4 + n); /* passphrases */
    free(buf);
    if (r < 0)
        goto broken;
    /* One recv takes the whole answer when it is small (a signature's is about 90 bytes): a
     * call costs a send and a recv. The keystore answers only what was asked, one at a time, so
     * nothing past this answer can be in the socket. */
    uint8_t small[SMALL_ANSWER];
    ssize_t got;
    do
        got = recv(conn_fd, small, sizeof(small), 0);
    while (got < 0 && errno == EINTR);
    if (got < 0 || (got < 4 && read_all(conn_fd, small + got, 4 - (size_t)got) < 0)) {
        explicit_bzero(small, sizeof(small));
        goto broken;
    }
    if (got < 4)
        got = 4;
    size_t len = (size_t)small[0] << 24 | (size_t)small[1] << 16 | (size_t)small[2] << 8 | small[3];
    if (len > P11_FRAME_MAX || (size_t)got > 4 + len) {
        explicit_bzero(small, sizeof(small));
        goto broken;
    }
    buf = malloc(len ? len : 1);
    if (!buf) {
        explicit_bzero(small, sizeof(small));
        goto broken;
    }
    memcpy(buf, small + 4, (size_t)got - 4);
    explicit_bzero(small, sizeof(small)); /* decrypted plaintext travels in answers */
    if (read_all(conn_fd, buf + got - 4, len - ((size_t)got - 4)) < 0) {
        explicit_bzero(buf, len);
        free(buf);
        goto broken;
    }
    KsResponse *resp = trustme__keystore__ks_response__unpack(NULL, len, buf);
    explicit_bzero(buf, len);
    free(buf);
    if (!resp || !resp->has_id || resp->id != req->id) {
        p11_response_free(resp);
        goto broken;
    }
    *ret = resp;
    return CKR_OK;
broken:
    p11_conn_close();
    return CKR_DEVICE_ERROR;
}

CK_RV p11_rv_of(int e)
{
    switch (e) {
    case TRUSTME__KEYSTORE__KS_ERROR__KS_OK: return CKR_OK;
    case TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_KEY_NOT_FOUND:
    case TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_INVALID_KEY_BLOB: return CKR_KEY_HANDLE_INVALID;
    case TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_INCOMPATIBLE_PURPOSE:
    case TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_UNSUPPORTED_PURPOSE:
    case TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_INCOMPATIBLE_DIGEST:
    case TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_INCOMPATIBLE_PADDING:
    case TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_KEY_NOT_YET_VALID:
    case TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_KEY_EXPIRED:
    case TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_KEY_MAX_OPS_EXCEEDED:
    case TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_KEY_RATE_LIMITED: return CKR_KEY_FUNCTION_NOT_PERMITTED;
    case TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_AUTH_REQUIRED: return CKR_USER_NOT_LOGGED_IN;
    case TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_AUTH_FAILED: return CKR_PIN_INCORRECT;
    case TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_INVALID_INPUT_LENGTH: return CKR_DATA_LEN_RANGE;
    case TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_UNSUPPORTED_ALGORITHM:
    case TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_UNSUPPORTED_KEY_SIZE: return CKR_TEMPLATE_INCONSISTENT;
    case TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_KEY_EXISTS: return CKR_ATTRIBUTE_VALUE_INVALID;
    case TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_TOO_MANY_OPERATIONS:
    case TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_TOO_MANY_KEYS: return CKR_DEVICE_MEMORY;
    case TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_VERIFICATION_FAILED: return CKR_SIGNATURE_INVALID;
    case TRUSTME__KEYSTORE__KS_ERROR__KS_ERR_INVALID_ARGUMENT: return CKR_ARGUMENTS_BAD;
    default: return CKR_DEVICE_ERROR;
    }
}
