/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustmed's client of trustme-scd (scd_client.c): start, supervise, call asynchronously. */
#pragma once

#include "daemon.h"
#include "scd.pb-c.h"
#include "scd_sandbox.h"

/* Called once per request. err is set if it failed: scd's Error (resp is that response, which
 * may still carry the token's state), or scd died before answering (resp NULL). resp and err are
 * valid only during the call. */
typedef void (*scd_reply_fn)(struct daemon *d, const Trustme__Scd__Response *resp, const tm_err *err, void *userdata);

int scd_start(struct daemon *d, const struct scd_sandbox *sb, tm_err *err);
/* The token service with trustmed's options (service_options.h): its own user and state dir,
 * confined (scd_sandbox.c), supervised. */
int scd_launch(struct daemon *d, tm_err *err);
void scd_stop(struct daemon *d);
/* Send req (version and id are filled in); fn is called with the answer. Fails at once only if
 * scd is not running. */
int scd_call(struct daemon *d, Trustme__Scd__Request *req, scd_reply_fn fn, void *userdata, tm_err *err);
/* The caller behind userdata is going away: its pending replies are dropped. */
void scd_forget(struct daemon *d, void *userdata);
