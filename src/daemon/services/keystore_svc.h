/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The per-container keystore service, trustmed's side (keystore_svc.c; docs/KEYSTORE.md): one
 * confined trustme-keystore process per running container with `keystore: true`, fed with that
 * container's keystore key and the listening socket made inside the container. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "error.h"

struct container;
struct container_observer;
struct daemon;
struct secret;

/* At a start with a token: keep the data key's contribution to the keystore key (not the key). */
int keystore_svc_token_key(struct container *c, const struct secret *data_key, tm_err *err);
/* What the container runs, for its key attestations (NULL: a development rootfs). */
struct keystore_guestos {
    const char *name;
    uint64_t version;
    const uint8_t *sha256; /* of its guestos.json as measured */
};
/* The setup process made /run/trustme/keystore.sock inside (listen_fd, taken): derive the
 * container's keystore key and start its service. */
int keystore_svc_serve(struct container *c, int listen_fd, bool with_token, const struct keystore_guestos *gos,
                       tm_err *err);
/* The container was wiped (it is stopped): its keys and its secure store go (the store's anchor
 * too, so it starts empty); its tamper-proof objects stay. */
void keystore_svc_wiped(struct container *c);
/* Its service runs now (it may be between a crash and its restart). */
bool keystore_svc_running(const struct container *c);
struct secret;
/* The keystore key and the secure storage's seed of container uuid on this device (the formula
 * above keystore_svc.c); token_part NULL without a token. */
void keystore_derive(const struct secret *root, const uint8_t *token_part, const char *uuid, uint8_t key[32],
                     uint8_t seed[32]);
/* The container stopped (or its start failed): stop its service, forget its key. */
void keystore_svc_stop(struct container *c);
/* Removes a deleted container's key directory; stops a freed container's service. */
extern const struct container_observer keystore_container_observer;
/* trustmed's options: the service's user and binary ("" = defaults). */
void keystore_svc_options(struct daemon *d, const char *user, const char *binary);
