/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Answers to clients for the code below api/: see reply.h. */
#include "reply.h"

#include <stdarg.h>
#include <stdio.h>

bool reply_send(struct daemon *d, uint64_t client, uint64_t req_id, Trustme__Response *resp)
{
    return client && d->reply && d->reply->send(d, client, req_id, resp);
}

bool reply_error(struct daemon *d, uint64_t client, uint64_t req_id, int code, const char *fmt, ...)
{
    if (!reply_alive(d, client))
        return false;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    Trustme__Error e = TRUSTME__ERROR__INIT;
    e.has_code = true;
    e.code = code;
    e.message = msg;
    Trustme__Response resp = TRUSTME__RESPONSE__INIT;
    resp.body_case = TRUSTME__RESPONSE__BODY_ERROR;
    resp.error = &e;
    return reply_send(d, client, req_id, &resp);
}

bool reply_container_info(struct daemon *d, uint64_t client, uint64_t req_id, const struct container *c)
{
    return client && d->reply && d->reply->container(d, client, req_id, c);
}

bool reply_alive(struct daemon *d, uint64_t client)
{
    return client && d->reply && d->reply->alive(d, client);
}

bool reply_congested(struct daemon *d, uint64_t client)
{
    return reply_alive(d, client) && d->reply->congested(d, client);
}

bool reply_input_paused(struct daemon *d, uint64_t client)
{
    return reply_alive(d, client) && d->reply->input_paused(d, client);
}

void reply_pause_input(struct daemon *d, uint64_t client, bool paused)
{
    if (reply_alive(d, client))
        d->reply->pause_input(d, client, paused);
}

bool reply_restricted(struct daemon *d, uint64_t client)
{
    return reply_alive(d, client) && d->reply->restricted(d, client);
}

bool reply_install_failure_audit_due(struct daemon *d, uint64_t client)
{
    /* Nobody there (or a client gone): the failure is audited. */
    return !reply_alive(d, client) || d->reply->install_failure_audit_due(d, client);
}
