/* SPDX-License-Identifier: GPL-2.0-or-later */
/* One proto/sstore.proto request against one store: what the keystore service calls for its
 * field 360. The response's storage is resp's own (free it with sstore_response_clear). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "sstore.h"
#include "sstore_serve.h"

static int fail(Trustme__Sstore__Response *resp, int r, const tm_err *err)
{
    Trustme__Sstore__Error *e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    trustme__sstore__error__init(e);
    e->has_code = true;
    e->code = -r;
    e->message = strdup(err->code ? err->msg : "failed");
    resp->result_case = TRUSTME__SSTORE__RESPONSE__RESULT_ERROR;
    resp->error = e;
    return r;
}

static int status(struct sstore *s, Trustme__Sstore__Response *resp)
{
    struct sstore_status st;
    sstore_get_status(s, &st);
    Trustme__Sstore__StoreStatus *o = calloc(1, sizeof(*o));
    uint8_t *root = malloc(32);
    if (!o || !root) {
        free(o);
        free(root);
        return -ENOMEM;
    }
    trustme__sstore__store_status__init(o);
    o->has_version = true;
    o->version = st.version;
    memcpy(root, st.root, 32);
    o->has_root = true;
    o->root = (ProtobufCBinaryData){.len = 32, .data = root};
    o->has_objects = true;
    o->objects = (uint32_t)st.objects;
    o->has_tamper_proof_objects = true;
    o->tamper_proof_objects = (uint32_t)st.tp_objects;
    resp->result_case = TRUSTME__SSTORE__RESPONSE__RESULT_STATUS;
    resp->status = o;
    return 0;
}

static int do_read(struct sstore *s, const Trustme__Sstore__Read *rq, Trustme__Sstore__Response *resp, tm_err *err)
{
    uint8_t *data = NULL;
    size_t len = 0;
    uint64_t version = 0;
    int r;
    if (!rq->id)
        return tm_err_set(err, EINVAL, "read: no id");
    if (rq->has_tamper_proof && rq->tamper_proof) {
        if (!(data = malloc(SSTORE_TP_DATA_MAX)))
            return tm_err_set(err, ENOMEM, "out of memory");
        r = sstore_tp_read(s, rq->id, data, &len, err);
    } else {
        r = sstore_read(s, rq->id, &data, &len, &version, err);
    }
    if (r < 0) {
        free(data);
        return r;
    }
    Trustme__Sstore__Object *o = calloc(1, sizeof(*o));
    char *id = strdup(rq->id);
    if (!o || !id) {
        explicit_bzero(data, len);
        free(data);
        free(o);
        free(id);
        return tm_err_set(err, ENOMEM, "out of memory");
    }
    trustme__sstore__object__init(o);
    o->id = id;
    o->has_data = true;
    o->data = (ProtobufCBinaryData){.len = len, .data = data};
    o->has_size = true;
    o->size = (uint32_t)len;
    if (version) {
        o->has_version = true;
        o->version = version;
    }
    resp->result_case = TRUSTME__SSTORE__RESPONSE__RESULT_OBJECT;
    resp->object = o;
    return 0;
}

static int do_commit(struct sstore *s, const Trustme__Sstore__Commit *rq, Trustme__Sstore__Response *resp, tm_err *err)
{
    struct sstore_txn *t = NULL;
    int r;
    if (rq->n_put + rq->n_delete_ == 0)
        return tm_err_set(err, EINVAL, "commit: nothing to commit");
    if ((r = sstore_txn_new(s, &t, err)) < 0)
        return r;
    for (size_t i = 0; i < rq->n_put && r >= 0; i++) {
        const Trustme__Sstore__Object *o = rq->put[i];
        r = sstore_txn_put(t, o->id, o->data.data, o->has_data ? o->data.len : 0, o->has_create_only && o->create_only,
                           err);
    }
    for (size_t i = 0; i < rq->n_delete_ && r >= 0; i++)
        r = sstore_txn_delete(t, rq->delete_[i], err);
    if (r < 0) {
        sstore_txn_free(t);
        return r;
    }
    if ((r = sstore_commit(t, NULL, err)) < 0)
        return r;
    return status(s, resp) < 0 ? tm_err_set(err, ENOMEM, "out of memory") : 0;
}

static int do_list(struct sstore *s, Trustme__Sstore__Response *resp, tm_err *err)
{
    _cleanup_free_ struct sstore_object_info *info = NULL;
    size_t n = 0;
    int r;
    if ((r = sstore_list(s, &info, &n, err)) < 0)
        return r;
    Trustme__Sstore__ObjectList *l = calloc(1, sizeof(*l));
    Trustme__Sstore__Object **v = calloc(n ? n : 1, sizeof(*v));
    Trustme__Sstore__Object *o = calloc(n ? n : 1, sizeof(*o));
    if (!l || !v || !o) {
        free(l), free(v), free(o);
        return tm_err_set(err, ENOMEM, "out of memory");
    }
    trustme__sstore__object_list__init(l);
    for (size_t i = 0; i < n; i++) {
        trustme__sstore__object__init(&o[i]);
        o[i].id = strdup(info[i].id);
        o[i].has_version = o[i].has_size = true;
        o[i].version = info[i].version;
        o[i].size = info[i].size;
        v[i] = &o[i];
    }
    l->n_objects = n;
    l->objects = v;
    resp->result_case = TRUSTME__SSTORE__RESPONSE__RESULT_LIST;
    resp->list = l;
    return 0;
}

static int do_tp_write(struct sstore *s, const Trustme__Sstore__TamperProofWrite *rq, Trustme__Sstore__Response *resp,
                       tm_err *err)
{
    int r;
    if (!rq->id)
        return tm_err_set(err, EINVAL, "tamper-proof write: no id");
    if (rq->has_remove && rq->remove)
        r = sstore_tp_delete(s, rq->id, err);
    else
        r = sstore_tp_write(s, rq->id, rq->data.data, rq->has_data ? rq->data.len : 0, err);
    if (r < 0)
        return r;
    return status(s, resp) < 0 ? tm_err_set(err, ENOMEM, "out of memory") : 0;
}

int sstore_serve(struct sstore *s, const Trustme__Sstore__Request *req, Trustme__Sstore__Response *resp)
{
    tm_err err = {0};
    int r;
    trustme__sstore__response__init(resp);
    if (!s) {
        r = tm_err_set(&err, EIO, "this container's secure storage is unavailable");
        return fail(resp, r, &err);
    }
    switch (req ? req->op_case : TRUSTME__SSTORE__REQUEST__OP__NOT_SET) {
    case TRUSTME__SSTORE__REQUEST__OP_READ: r = do_read(s, req->read, resp, &err); break;
    case TRUSTME__SSTORE__REQUEST__OP_COMMIT: r = do_commit(s, req->commit, resp, &err); break;
    case TRUSTME__SSTORE__REQUEST__OP_LIST: r = do_list(s, resp, &err); break;
    case TRUSTME__SSTORE__REQUEST__OP_STATUS:
        r = status(s, resp) < 0 ? tm_err_set(&err, ENOMEM, "out of memory") : 0;
        break;
    case TRUSTME__SSTORE__REQUEST__OP_TP_WRITE: r = do_tp_write(s, req->tp_write, resp, &err); break;
    default: r = tm_err_set(&err, EINVAL, "no or an unknown secure-storage operation"); break;
    }
    return r < 0 ? fail(resp, r, &err) : 0;
}

/* Everything do_* allocated, member by member (they did not use protobuf-c's allocator). */
void sstore_response_clear(Trustme__Sstore__Response *resp)
{
    switch (resp->result_case) {
    case TRUSTME__SSTORE__RESPONSE__RESULT_ERROR:
        free(resp->error->message);
        free(resp->error);
        break;
    case TRUSTME__SSTORE__RESPONSE__RESULT_OBJECT:
        if (resp->object->data.data)
            explicit_bzero(resp->object->data.data, resp->object->data.len);
        free(resp->object->data.data);
        free(resp->object->id);
        free(resp->object);
        break;
    case TRUSTME__SSTORE__RESPONSE__RESULT_LIST:
        for (size_t i = 0; i < resp->list->n_objects; i++)
            free(resp->list->objects[i]->id);
        if (resp->list->n_objects)
            free(resp->list->objects[0]);
        free(resp->list->objects);
        free(resp->list);
        break;
    case TRUSTME__SSTORE__RESPONSE__RESULT_STATUS:
        free(resp->status->root.data);
        free(resp->status);
        break;
    default: break;
    }
    trustme__sstore__response__init(resp);
}
