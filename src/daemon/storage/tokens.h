/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustmed's side of the containers' tokens (tokens.c; the tokens themselves live in trustme-scd).
 * docs/STORAGE.md describes the policy: PINs, PUKs, lockout, wrapping, wipe. */
#pragma once

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>

#include "control.pb-c.h"
#include "daemon.h"
#include "reply.h"
#include "secmem.h"

static inline bool container_encrypted(const struct container *c)
{
    return c->cfg->token.kind != TOKEN_KIND_NONE;
}

/* <data>/containers/<uuid>/key.wrapped: the data key, wrapped by the token. */
void tokens_key_path(const struct container *c, char *out, size_t size);
/* Whether a loaded container has its key stored (daemon.h). */
extern const struct container_observer tokens_container_observer;

/* Ask scd for the state of every container's token (whenever an scd has started). */
void tokens_refresh_all(struct daemon *d);
/* Ask tpmd for every token's anchored counts (whenever a tpmd has started), for list/state. */
void tokens_refresh_anchors(struct daemon *d);
/* At a clean shutdown: give back the PIN tries reserved in advance and not used (tokens.c,
 * "reservations"), in one anchor update. Returns true when there is nothing (more) to wait for;
 * false when the update is under way (its answer calls daemon_maybe_exit again). */
bool tokens_release_reservations(struct daemon *d);
/* scd is gone: what it said is unknown until the next one reports (tokens_refresh_all). */
void tokens_forget_all(struct daemon *d);
/* The three above, as the services' event listener (service.h). */
extern const struct service_events tokens_service_events;

/* Why c cannot be started with what the client sent (no PIN, not paired, locked...): 0 if it
 * can, else -errno with err set; *ret_pin_required says whether asking for the PIN would help. */
int tokens_check_start(const struct container *c, bool have_pin, bool *ret_pin_required, tm_err *err);

/* The data key for a start: unwrapped with pin, or made at the first start, in which case its
 * wrapped form is stored durably before done sees the key. done owns the key (a locked secret),
 * or gets NULL and the reason. */
typedef void (*token_key_fn)(struct container *c, struct secret *key, const tm_err *err);
int tokens_get_key(struct container *c, const ProtobufCBinaryData *pin, token_key_fn done, tm_err *err);
/* The start that asked is gone: its key, when it comes, is wiped and dropped. */
void tokens_cancel_key(struct container *c);

/* Control requests; each answers the client through reply.h (a ContainerInfo, or an error). */
void tokens_change_pin(struct reply_to to, struct container *c, const Trustme__ChangePinRequest *rq);
void tokens_puk_unlock(struct reply_to to, struct container *c, const Trustme__TokenUnlockRequest *rq);
/* Crypto-erase: token secret, wrapped key and data image. With remove, the container goes too. */
void tokens_wipe(struct reply_to to, struct container *c, const ProtobufCBinaryData *pin, bool remove);

/* The device's PIN policy (device.json "pin", docs/STORAGE.md): UTF-8 without control
 * characters or a trailing line break, at least pin.min_length characters, not only
 * whitespace, not trivial (one character repeated, a run like 1234 or 4321) unless
 * pin.allow_trivial. what names it in the message ("PIN", "new PIN"). */
int tokens_check_pin_policy(const struct daemon *d, const ProtobufCBinaryData *pin, const char *what, tm_err *err);

void tokens_fill_info(const struct container *c, Trustme__Encryption *enc);
