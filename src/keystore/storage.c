/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The container's secure store inside its keystore service: see storage.h.
 *
 *   store key = HKDF-SHA256(storage seed, info "trustme keystore sstore v1")
 *   storage seed = HKDF-SHA256(keystore root, info "trustme sstore seed v1|" uuid)   (trustmed)
 *
 * The seed is bound to the device's TPM-sealed secret and to the container's UUID, not to its
 * token's data key: tamper-proof objects must stay readable after a wipe, which replaces the
 * data key (docs/KEYSTORE.md, "Secure storage"). */
#include "storage.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "crypto.h"
#include "keystore.pb-c.h"
#include "log.h"
#include "packet.h"
#include "secmem.h"
#include "sstore.h"
#include "sstore_serve.h"

#define STORE_KEY_INFO "trustme keystore sstore v1"
/* The store's files live in the data dir that every container, the audit log and tpmd's anchor
 * table share: without a bound one container could fill it (1024 objects of 256 KiB). */
#define STORE_BYTES_MAX (16u * 1024 * 1024)

struct ks_storage {
    struct secret *key;
    char uuid[SSTORE_STORE_ID_MAX + 1];
    char dir[256];
    struct sstore_anchor_ops anchor;
    int link_fd;
    struct sstore *store; /* NULL until it opens (retried at every request while it does not) */
};

/* trustmed audits it (sstore.refused); the service's log has it too. */
static void report(struct ks_storage *st, bool key_blobs, int code, const char *msg)
{
    log_warn("secure storage refused: %s (%s)", msg, strerror(code < 0 ? -code : code));
    Trustme__Keystore__KsStoreRefused sr = TRUSTME__KEYSTORE__KS_STORE_REFUSED__INIT;
    sr.has_code = true;
    sr.code = code < 0 ? -code : code;
    sr.message = (char *)msg;
    sr.has_key_blobs = key_blobs;
    sr.key_blobs = key_blobs;
    Trustme__Keystore__KsLinkEvent ev = TRUSTME__KEYSTORE__KS_LINK_EVENT__INIT;
    ev.store_refused = &sr;
    tm_err err = {0};
    if (tm_packet_send_msg(st->link_fd, &ev.base, 4096, &err) < 0)
        log_warn("cannot report it to trustmed: %s", err.msg);
}

int ks_storage_new(const uint8_t seed[32], const char *uuid, const char *dir, int link_fd, struct ks_storage **ret,
                   tm_err *err)
{
    if (strlen(uuid) > SSTORE_STORE_ID_MAX || strlen(dir) >= sizeof(((struct ks_storage *)0)->dir))
        return tm_err_set(err, EINVAL, "bad store id or directory");
    struct ks_storage *st = calloc(1, sizeof(*st));
    if (!st)
        return tm_err_set(err, ENOMEM, "out of memory");
    int r = secret_new(32, &st->key, err);
    if (r < 0) {
        free(st);
        return r;
    }
    tm_hkdf_sha256(seed, 32, NULL, 0, STORE_KEY_INFO, strlen(STORE_KEY_INFO), st->key->data, 32);
    snprintf(st->uuid, sizeof(st->uuid), "%s", uuid);
    snprintf(st->dir, sizeof(st->dir), "%s", dir);
    sstore_anchor_tpmd_fd(link_fd, &st->anchor);
    st->link_fd = link_fd;
    *ret = st;
    return 0;
}

static void on_refused(void *ctx, const char *store_id, int code, const char *msg)
{
    report(ctx, false, code, msg);
}

void ks_storage_on_key_refused(void *ctx, const char *store_id, int code, const char *msg)
{
    report(ctx, true, code, msg);
}

const struct sstore_anchor_ops *ks_storage_anchor(const struct ks_storage *st)
{
    return &st->anchor;
}

void ks_storage_free(struct ks_storage *st)
{
    if (!st)
        return;
    sstore_close(st->store);
    secret_free(st->key);
    free(st);
}

static int error_answer(Trustme__Sstore__Response *resp, int code, const char *msg)
{
    Trustme__Sstore__Error *e = calloc(1, sizeof(*e));
    char *m = strdup(msg);
    if (!e || !m) {
        free(e);
        free(m);
        return -ENOMEM;
    }
    trustme__sstore__error__init(e);
    e->has_code = true;
    e->code = code;
    e->message = m;
    resp->result_case = TRUSTME__SSTORE__RESPONSE__RESULT_ERROR;
    resp->error = e;
    return 0;
}

/* The bytes the store's files take now (its superblocks, and its objects in obj/). */
static uint64_t dir_bytes(const char *dir, bool sub)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    uint64_t sum = 0;
    struct dirent *e;
    struct stat sb;
    while ((e = readdir(d))) {
        if (fstatat(dirfd(d), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        if (S_ISREG(sb.st_mode)) {
            sum += (uint64_t)sb.st_size;
        } else if (sub && S_ISDIR(sb.st_mode) && strcmp(e->d_name, "obj") == 0) {
            char path[512];
            snprintf(path, sizeof(path), "%s/obj", dir);
            sum += dir_bytes(path, false);
        }
    }
    closedir(d);
    return sum;
}

/* A commit that would take the store above STORE_BYTES_MAX is refused (EDQUOT) before it is
 * written; replaced objects count until the commit removed them. */
static bool over_quota(const struct ks_storage *st, const Trustme__Sstore__Request *req, uint64_t *ret_have)
{
    if (req->op_case != TRUSTME__SSTORE__REQUEST__OP_COMMIT || !req->commit)
        return false;
    uint64_t add = 0;
    for (size_t i = 0; i < req->commit->n_put; i++)
        add += req->commit->put[i]->data.len + 256; /* a file per object, and its header */
    if (add == 0)
        return false;
    *ret_have = dir_bytes(st->dir, true);
    return *ret_have + add > STORE_BYTES_MAX;
}

int ks_storage_handle(struct ks_storage *st, const ProtobufCBinaryData *in, ProtobufCAllocator *alloc,
                      ProtobufCBinaryData *out)
{
    Trustme__Sstore__Request *req = trustme__sstore__request__unpack(alloc, in->len, in->data);
    if (!req)
        return -EBADMSG;
    Trustme__Sstore__Response resp = TRUSTME__SSTORE__RESPONSE__INIT;
    int r = 0;
    if (!st->store) {
        /* Opened here rather than at the start, so that a store refused once (rolled back,
         * tampered) or a tpmd that was briefly away is asked again, and the refusal is the
         * answer the caller sees. */
        tm_err err = {0};
        r = sstore_open(st->dir, st->uuid, st->key->data, 32, &st->anchor, on_refused, st, &st->store, &err);
        if (r < 0)
            r = error_answer(&resp, -r, err.msg[0] ? err.msg : "the secure store does not open");
        else
            log_info("secure store %s open", st->dir);
    }
    uint64_t have = 0;
    if (st->store && over_quota(st, req, &have)) {
        char msg[160];
        snprintf(msg, sizeof(msg),
                 "the secure store takes %llu KiB; at most %u KiB per container (delete objects first)",
                 (unsigned long long)(have / 1024), STORE_BYTES_MAX / 1024);
        r = error_answer(&resp, EDQUOT, msg);
    } else if (st->store) {
        sstore_serve(st->store, req, &resp); /* failures are in resp */
        struct sstore_status status;
        sstore_get_status(st->store, &status);
        if (status.uncertain) {
            /* A commit's anchor update failed (tpmd away, or trustmed refused it: the NV write
             * budget): the store asks the TPM again at the next request instead of refusing
             * everything until the service restarts. */
            sstore_close(st->store);
            st->store = NULL;
        }
    }
    if (r < 0) {
        protobuf_c_message_free_unpacked(&req->base, alloc);
        sstore_response_clear(&resp);
        return r;
    }
    size_t len = protobuf_c_message_get_packed_size(&resp.base);
    uint8_t *p = malloc(len ? len : 1);
    if (p)
        protobuf_c_message_pack(&resp.base, p);
    /* Only now: the answer may point into the request. */
    protobuf_c_message_free_unpacked(&req->base, alloc);
    sstore_response_clear(&resp); /* wipes an object's plaintext */
    if (!p)
        return -ENOMEM;
    *out = (ProtobufCBinaryData){.len = len, .data = p};
    return 0;
}
