/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The container's secure store (src/sstore, docs/SECURE_STORAGE.md), served by its keystore
 * service on the same socket (KsRequest field 360). The store's key is derived here from the
 * storage seed trustmed sends in KsInit; the store's anchor goes to tpmd through trustmed, over
 * the service's link (fd 3), as tpmd AnchorRequests that trustmed checks and forwards. */
#pragma once

#include <protobuf-c/protobuf-c.h>
#include <stdint.h>

#include "error.h"
#include "sstore.h"

struct ks_storage;

/* dir: the store's directory (made on first use); link_fd: the link to trustmed. */
int ks_storage_new(const uint8_t seed[32], const char *uuid, const char *dir, int link_fd, struct ks_storage **ret,
                   tm_err *err);
void ks_storage_free(struct ks_storage *st);
/* The anchor ops over the link, for the key index (blob_index.h) that shares them. */
const struct sstore_anchor_ops *ks_storage_anchor(const struct ks_storage *st);
/* A sstore_report_fn (ctx: the ks_storage) for the key blobs and their index: reports a
 * refusal to trustmed, which audits it (keystore.blob_refused). */
void ks_storage_on_key_refused(void *ctx, const char *store_id, int code, const char *msg);

/* Answer one packed trustme.sstore.Request (in) with a packed trustme.sstore.Response in *out
 * (malloc'd; wipe and free it after sending: it may hold an object's plaintext). -EBADMSG: in
 * does not unpack; -ENOMEM. A refused request is an answer (sstore.Error), not a failure. */
int ks_storage_handle(struct ks_storage *st, const ProtobufCBinaryData *in, ProtobufCAllocator *alloc,
                      ProtobufCBinaryData *out);
