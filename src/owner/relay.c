/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "relay.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "attest.pb-c.h"
#include "cleanup.h"
#include "deadline.h"

#define RELAY_COMMAND_MAX 4096
#define RELAY_RESPONSE_MAX (512 * 1024) /* an event log of 256 KiB and the framing */
#define PROTOCOL_VERSION 1

/* The TCTI first: ESAPI casts the context to TSS2_TCTI_CONTEXT_COMMON_V1. */
struct relay {
    TSS2_TCTI_CONTEXT_COMMON_V1 tcti;
    int fd;
    int timeout_ms;
    char uuid[40];
    uint64_t id;
    uint8_t rsp[RELAY_COMMAND_MAX];
    size_t rsp_len;
    bool have_rsp;
    unsigned commands;
    char error[256];
};

/* One relay request and its answer; the caller frees *ret. */
static int exchange(struct relay *r, const uint8_t *cmd, size_t cmd_len, bool log,
                    Trustme__Attest__AttestResponse **ret, tm_err *err)
{
    Trustme__Attest__AttestRequest rq = TRUSTME__ATTEST__ATTEST_REQUEST__INIT;
    Trustme__Attest__VtpmRelayRequest vr = TRUSTME__ATTEST__VTPM_RELAY_REQUEST__INIT;
    rq.has_version = rq.has_id = true;
    rq.version = PROTOCOL_VERSION;
    rq.id = ++r->id;
    vr.container = r->uuid;
    if (log) {
        vr.has_event_log = vr.event_log = true;
    } else {
        vr.has_command = true;
        vr.command.data = (uint8_t *)cmd;
        vr.command.len = cmd_len;
    }
    rq.vtpm_relay = &vr;
    size_t size = protobuf_c_message_get_packed_size(&rq.base);
    _cleanup_free_ uint8_t *buf = malloc(4 + size);
    if (!buf)
        return tm_err_set(err, ENOMEM, "out of memory");
    buf[0] = (uint8_t)(size >> 24);
    buf[1] = (uint8_t)(size >> 16);
    buf[2] = (uint8_t)(size >> 8);
    buf[3] = (uint8_t)size;
    protobuf_c_message_pack(&rq.base, buf + 4);
    int64_t deadline = tm_now_ms() + r->timeout_ms;
    int e = tm_send_all(r->fd, buf, 4 + size, deadline);
    uint8_t hdr[4];
    if (e == 0)
        e = tm_recv_all(r->fd, hdr, 4, deadline);
    if (e < 0)
        return tm_err_set(err, -e, "the relay: %s", strerror(-e));
    uint32_t len = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
    if (len > RELAY_RESPONSE_MAX)
        return tm_err_set(err, EPROTO, "the relay's answer is too long");
    _cleanup_free_ uint8_t *in = malloc(len ? len : 1);
    if (!in)
        return tm_err_set(err, ENOMEM, "out of memory");
    if ((e = tm_recv_all(r->fd, in, len, deadline)) < 0)
        return tm_err_set(err, -e, "the relay: %s", strerror(-e));
    Trustme__Attest__AttestResponse *resp = trustme__attest__attest_response__unpack(NULL, len, in);
    if (!resp)
        return tm_err_set(err, EPROTO, "the relay's answer does not decode");
    if (!resp->has_id || resp->id != rq.id) {
        trustme__attest__attest_response__free_unpacked(resp, NULL);
        return tm_err_set(err, EPROTO, "the relay answered another request");
    }
    if (resp->body_case == TRUSTME__ATTEST__ATTEST_RESPONSE__BODY_ERROR) {
        int rc = tm_err_set(err, EREMOTEIO, "the device refused to relay: %s",
                            resp->error->message ? resp->error->message : "(no reason)");
        trustme__attest__attest_response__free_unpacked(resp, NULL);
        return rc;
    }
    if (resp->body_case != TRUSTME__ATTEST__ATTEST_RESPONSE__BODY_VTPM_RELAY) {
        trustme__attest__attest_response__free_unpacked(resp, NULL);
        return tm_err_set(err, EPROTO, "the relay answered with something else");
    }
    *ret = resp;
    return 0;
}

static struct relay *of(TSS2_TCTI_CONTEXT *ctx)
{
    return (struct relay *)ctx;
}

static TSS2_RC tcti_transmit(TSS2_TCTI_CONTEXT *ctx, size_t size, const uint8_t *cmd)
{
    struct relay *r = of(ctx);
    tm_err err = {0};
    Trustme__Attest__AttestResponse *resp = NULL;
    r->have_rsp = false;
    if (size > RELAY_COMMAND_MAX)
        return TSS2_TCTI_RC_BAD_VALUE;
    if (exchange(r, cmd, size, false, &resp, &err) < 0) {
        snprintf(r->error, sizeof(r->error), "%s", err.msg);
        return TSS2_TCTI_RC_IO_ERROR;
    }
    r->commands++;
    Trustme__Attest__VtpmRelayAnswer *a = resp->vtpm_relay;
    if (!a->has_response || a->response.len < 10 || a->response.len > sizeof(r->rsp)) {
        snprintf(r->error, sizeof(r->error), "the relay's TPM response is malformed");
        trustme__attest__attest_response__free_unpacked(resp, NULL);
        return TSS2_TCTI_RC_IO_ERROR;
    }
    memcpy(r->rsp, a->response.data, a->response.len);
    r->rsp_len = a->response.len;
    r->have_rsp = true;
    trustme__attest__attest_response__free_unpacked(resp, NULL);
    return TSS2_RC_SUCCESS;
}

static TSS2_RC tcti_receive(TSS2_TCTI_CONTEXT *ctx, size_t *size, uint8_t *rsp, int32_t timeout)
{
    (void)timeout;
    struct relay *r = of(ctx);
    if (!r->have_rsp)
        return TSS2_TCTI_RC_BAD_SEQUENCE;
    if (!rsp) {
        *size = r->rsp_len;
        return TSS2_RC_SUCCESS;
    }
    if (*size < r->rsp_len) {
        *size = r->rsp_len;
        return TSS2_TCTI_RC_INSUFFICIENT_BUFFER;
    }
    memcpy(rsp, r->rsp, r->rsp_len);
    *size = r->rsp_len;
    r->have_rsp = false;
    return TSS2_RC_SUCCESS;
}

static void tcti_finalize(TSS2_TCTI_CONTEXT *ctx)
{
    (void)ctx;
}

static TSS2_RC tcti_cancel(TSS2_TCTI_CONTEXT *ctx)
{
    (void)ctx;
    return TSS2_TCTI_RC_NOT_IMPLEMENTED;
}

static TSS2_RC tcti_poll(TSS2_TCTI_CONTEXT *ctx, TSS2_TCTI_POLL_HANDLE *h, size_t *n)
{
    (void)ctx;
    (void)h;
    (void)n;
    return TSS2_TCTI_RC_NOT_IMPLEMENTED;
}

static TSS2_RC tcti_locality(TSS2_TCTI_CONTEXT *ctx, uint8_t locality)
{
    (void)ctx;
    return locality == 0 ? TSS2_RC_SUCCESS : TSS2_TCTI_RC_NOT_IMPLEMENTED;
}

int relay_open(const char *hostport, const char *uuid, int timeout_ms, struct relay **ret, tm_err *err)
{
    /* Connecting counts against the first exchange's time: an address that swallows SYNs fails
     * after timeout_ms, not after the kernel's minutes. */
    int fd = tm_dial(hostport, tm_now_ms() + timeout_ms, err);
    if (fd < 0)
        return fd;
    struct relay *rl = calloc(1, sizeof(*rl));
    if (!rl) {
        close(fd);
        return tm_err_set(err, ENOMEM, "out of memory");
    }
    rl->fd = fd;
    rl->timeout_ms = timeout_ms;
    snprintf(rl->uuid, sizeof(rl->uuid), "%s", uuid);
    if (getrandom(&rl->id, sizeof(rl->id), 0) != sizeof(rl->id))
        rl->id = (uint64_t)tm_now_ms();
    rl->id &= UINT64_MAX >> 1;
    rl->tcti = (TSS2_TCTI_CONTEXT_COMMON_V1){.magic = 0x7472757374526c79ULL, /* "trustRly" */
                                             .version = 1,
                                             .transmit = tcti_transmit,
                                             .receive = tcti_receive,
                                             .finalize = tcti_finalize,
                                             .cancel = tcti_cancel,
                                             .getPollHandles = tcti_poll,
                                             .setLocality = tcti_locality};
    *ret = rl;
    return 0;
}

void relay_close(struct relay *r)
{
    if (!r)
        return;
    close(r->fd);
    free(r);
}

int relay_event_log(struct relay *r, char **ret, size_t *ret_len, tm_err *err)
{
    Trustme__Attest__AttestResponse *resp = NULL;
    int e = exchange(r, NULL, 0, true, &resp, err);
    if (e < 0)
        return e;
    Trustme__Attest__VtpmRelayAnswer *a = resp->vtpm_relay;
    char *s = malloc(a->event_log.len + 1);
    if (!s) {
        trustme__attest__attest_response__free_unpacked(resp, NULL);
        return tm_err_set(err, ENOMEM, "out of memory");
    }
    if (a->event_log.len)
        memcpy(s, a->event_log.data, a->event_log.len);
    s[a->event_log.len] = '\0';
    *ret_len = a->event_log.len;
    *ret = s;
    trustme__attest__attest_response__free_unpacked(resp, NULL);
    return 0;
}

TSS2_TCTI_CONTEXT *relay_tcti(struct relay *r)
{
    return (TSS2_TCTI_CONTEXT *)&r->tcti;
}

const char *relay_error(const struct relay *r)
{
    return r->error;
}

unsigned relay_commands(const struct relay *r)
{
    return r->commands;
}
