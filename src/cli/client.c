/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "client.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "buf.h"
#include "cleanup.h"
#include "fdutil.h"
#include "proto.h"

int client_connect(struct client *cl, const char *socket_path, tm_err *err)
{
    *cl = (struct client){.fd = -1, .next_id = 1};
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", socket_path) >= (int)sizeof(addr.sun_path))
        return tm_err_set(err, ENAMETOOLONG, "socket path too long: %s", socket_path);
    cl->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (cl->fd < 0)
        return tm_err_sys(err, "socket");
    if (connect(cl->fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        int r = tm_err_sys(err, "cannot connect to trustmed at %s", socket_path);
        if (errno == ENOENT || errno == ECONNREFUSED)
            tm_err_set(err, errno,
                       "cannot connect to trustmed at %s: %s (is trustmed running? "
                       "use --run-dir or --socket for another instance)",
                       socket_path, strerror(errno));
        else if (errno == EACCES)
            tm_err_set(err, errno,
                       "cannot connect to trustmed at %s: permission denied (the "
                       "control socket is for root)",
                       socket_path);
        close_and_reset(cl->fd);
        return r;
    }
    return 0;
}

void client_close(struct client *cl)
{
    close_and_reset(cl->fd);
    tm_frame_reader_reset(&cl->rd);
}

/* MSG_NOSIGNAL: a connection trustmed closed (e.g. refused at its limit) is an error to
 * report, not a SIGPIPE that kills the CLI without a word. */
static int send_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int send_frame(struct client *cl, Trustme__Request *req, tm_err *err)
{
    req->has_version = true;
    req->version = TM_PROTOCOL_VERSION;
    req->has_id = true;
    tm_buf out = {0};
    int r = tm_proto_append(&out, &req->base);
    if (r == 0)
        r = send_all(cl->fd, out.data, out.len);
    tm_buf_free(&out);
    if (r < 0)
        return tm_err_set(err, -r, "cannot send to trustmed: %s", strerror(-r));
    return 0;
}

int64_t client_send(struct client *cl, Trustme__Request *req, tm_err *err)
{
    req->id = cl->next_id++;
    int r = send_frame(cl, req, err);
    return r < 0 ? r : (int64_t)req->id;
}

int client_send_for(struct client *cl, uint64_t id, Trustme__Request *req, tm_err *err)
{
    req->id = id;
    return send_frame(cl, req, err);
}

int client_recv(struct client *cl, Trustme__Response **ret, tm_err *err)
{
    for (;;) {
        uint8_t buf[65536];
        size_t want;
        if (cl->rd.hdr_got < 4)
            want = 4 - cl->rd.hdr_got;
        else
            want = cl->rd.len - cl->rd.got < sizeof(buf) ? cl->rd.len - cl->rd.got : sizeof(buf);
        ssize_t n = want ? read(cl->fd, buf, want) : 0;
        if (want && n < 0 && errno == EINTR)
            continue;
        if (want && n < 0)
            return tm_err_sys(err, "cannot read from trustmed");
        if (want && n == 0)
            return tm_err_set(err, ECONNRESET, "trustmed closed the connection");
        size_t used;
        int r = tm_frame_feed(&cl->rd, buf, (size_t)n, &used);
        if (r < 0)
            return tm_err_set(err, -r, "bad reply from trustmed: %s", strerror(-r));
        if (r == 0)
            continue;
        uint32_t len;
        _cleanup_free_ uint8_t *data = tm_frame_take(&cl->rd, &len);
        Trustme__Response *resp = trustme__response__unpack(NULL, len, data);
        if (!resp)
            return tm_err_set(err, EBADMSG, "malformed reply from trustmed");
        *ret = resp;
        return 0;
    }
}

bool response_is_final(const Trustme__Response *resp)
{
    return resp->body_case != TRUSTME__RESPONSE__BODY_PROGRESS && resp->body_case != TRUSTME__RESPONSE__BODY_OUTPUT &&
           resp->body_case != TRUSTME__RESPONSE__BODY_AUDIT_CHUNK;
}

int client_call(struct client *cl, Trustme__Request *req, Trustme__Response **ret, tm_err *err)
{
    int64_t id = client_send(cl, req, err);
    if (id < 0)
        return (int)id;
    for (;;) {
        Trustme__Response *resp;
        int r = client_recv(cl, &resp, err);
        if (r < 0)
            return r;
        if (resp->id != (uint64_t)id && resp->id != 0) {
            trustme__response__free_unpacked(resp, NULL);
            continue;
        }
        if (resp->body_case == TRUSTME__RESPONSE__BODY_PROGRESS) {
            fprintf(stderr, "trustme: %s\n", resp->progress->message ? resp->progress->message : "");
            trustme__response__free_unpacked(resp, NULL);
            continue;
        }
        if (resp->body_case == TRUSTME__RESPONSE__BODY_ERROR) {
            int code = resp->error->has_code && resp->error->code > 0 ? resp->error->code : EIO;
            cl->pin_required = resp->error->has_pin_required && resp->error->pin_required;
            tm_err_set(err, code, "%s", resp->error->message ? resp->error->message : "unknown error");
            trustme__response__free_unpacked(resp, NULL);
            return -code;
        }
        *ret = resp;
        return 0;
    }
}
