/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Anchor ops over a tpmd link fd (proto/tpmd.proto, AnchorRequest), blocking: for a tool or a
 * test that stands where trustmed stands. trustmed itself goes through its tpmd client. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cleanup.h"
#include "sstore.h"
#include "tpmd.pb-c.h"

#define MAX_REPLY (1u << 20)

/* Ids of this process: its pid in the upper half, so that an answer meant for an earlier user
 * of the same link (killed while tpmd was answering) is told apart and skipped. */
static uint64_t next_id;

static int call(int fd, Trustme__Tpmd__AnchorRequest *ar, Trustme__Tpmd__Response **ret, tm_err *err)
{
    Trustme__Tpmd__Request req = TRUSTME__TPMD__REQUEST__INIT;
    req.has_version = true;
    req.version = 1;
    req.has_id = true;
    if (!next_id)
        next_id = (uint64_t)getpid() << 32 | 1u << 31;
    req.id = next_id++;
    req.body_case = TRUSTME__TPMD__REQUEST__BODY_ANCHOR;
    req.anchor = ar;
    size_t len = trustme__tpmd__request__get_packed_size(&req);
    _cleanup_free_ uint8_t *out = malloc(len + 4);
    if (!out)
        return tm_err_set(err, ENOMEM, "out of memory");
    out[0] = (uint8_t)(len >> 24), out[1] = (uint8_t)(len >> 16), out[2] = (uint8_t)(len >> 8), out[3] = (uint8_t)len;
    trustme__tpmd__request__pack(&req, out + 4);
    if (send(fd, out, len + 4, MSG_NOSIGNAL) != (ssize_t)(len + 4))
        return tm_err_sys(err, "cannot send to tpmd");
    _cleanup_free_ uint8_t *in = malloc(MAX_REPLY);
    if (!in)
        return tm_err_set(err, ENOMEM, "out of memory");
    Trustme__Tpmd__Response *resp = NULL;
    for (int stale = 0;; stale++) {
        /* The fd may be non-blocking (its holder's choice): wait for the answer, bounded (an
         * NV write on hardware takes tens of ms; swtpm under load a few seconds at worst). */
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int pr;
        do
            pr = poll(&pfd, 1, 60000);
        while (pr < 0 && errno == EINTR);
        if (pr == 0)
            return tm_err_set(err, ETIMEDOUT, "tpmd did not answer within 60 s");
        ssize_t n;
        do
            n = recv(fd, in, MAX_REPLY, MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        if (n < 0 && errno == EAGAIN)
            continue;
        if (n < 0)
            return tm_err_sys(err, "cannot read tpmd's answer");
        if (n < 4)
            return tm_err_set(err, EPIPE, "tpmd closed the link");
        resp = trustme__tpmd__response__unpack(NULL, (size_t)n - 4, in + 4);
        if (!resp)
            return tm_err_set(err, EPROTO, "tpmd's answer is malformed");
        if (resp->id == req.id)
            break;
        trustme__tpmd__response__free_unpacked(resp, NULL);
        if (stale >= 16)
            return tm_err_set(err, EPROTO, "tpmd answers other requests");
    }
    if (resp->body_case == TRUSTME__TPMD__RESPONSE__BODY_ERROR) {
        int code = resp->error->has_code && resp->error->code > 0 ? resp->error->code : EIO;
        tm_err_set(err, code, "%s", resp->error->message ? resp->error->message : "tpmd refused");
        trustme__tpmd__response__free_unpacked(resp, NULL);
        return -code;
    }
    if (resp->body_case != TRUSTME__TPMD__RESPONSE__BODY_ANCHOR) {
        trustme__tpmd__response__free_unpacked(resp, NULL);
        return tm_err_set(err, EPROTO, "tpmd answered with something else");
    }
    *ret = resp;
    return 0;
}

static int anchor_fd_get(void *ctx, const char *name, uint8_t value[128], size_t *len, bool *found, tm_err *err)
{
    Trustme__Tpmd__AnchorRequest ar = TRUSTME__TPMD__ANCHOR_REQUEST__INIT;
    char *names[1] = {(char *)name};
    ar.n_get = 1;
    ar.get = names;
    Trustme__Tpmd__Response *resp = NULL;
    int r = call((int)(intptr_t)ctx, &ar, &resp, err);
    if (r < 0)
        return r;
    *found = false;
    for (size_t i = 0; i < resp->anchor->n_entries; i++) {
        const Trustme__Tpmd__AnchorEntry *e = resp->anchor->entries[i];
        if (e->name && strcmp(e->name, name) == 0 && e->has_value && e->value.len <= 128) {
            memcpy(value, e->value.data, e->value.len);
            *len = e->value.len;
            *found = true;
        }
    }
    trustme__tpmd__response__free_unpacked(resp, NULL);
    return 0;
}

static int anchor_fd_set(void *ctx, const struct sstore_anchor_entry *e, size_t n, tm_err *err)
{
    _cleanup_free_ Trustme__Tpmd__AnchorEntry *ev = calloc(n ? n : 1, sizeof(*ev));
    _cleanup_free_ Trustme__Tpmd__AnchorEntry **evp = calloc(n ? n : 1, sizeof(*evp));
    if (!ev || !evp)
        return tm_err_set(err, ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        trustme__tpmd__anchor_entry__init(&ev[i]);
        ev[i].name = (char *)e[i].name;
        if (e[i].remove) {
            ev[i].has_remove = ev[i].remove = true;
        } else {
            ev[i].has_value = true;
            ev[i].value = (ProtobufCBinaryData){.len = e[i].len, .data = (uint8_t *)e[i].value};
        }
        evp[i] = &ev[i];
    }
    Trustme__Tpmd__AnchorRequest ar = TRUSTME__TPMD__ANCHOR_REQUEST__INIT;
    ar.n_set = n;
    ar.set = evp;
    Trustme__Tpmd__Response *resp = NULL;
    int r = call((int)(intptr_t)ctx, &ar, &resp, err);
    if (r < 0)
        return r;
    trustme__tpmd__response__free_unpacked(resp, NULL);
    return 0;
}

void sstore_anchor_tpmd_fd(int fd, struct sstore_anchor_ops *ret)
{
    *ret = (struct sstore_anchor_ops){.get = anchor_fd_get, .set = anchor_fd_set, .ctx = (void *)(intptr_t)fd};
}
