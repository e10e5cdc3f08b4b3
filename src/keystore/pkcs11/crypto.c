/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Signing (C_SignInit/Sign/SignUpdate/SignFinal) and RSA decryption through the keystore. The
 * signature's length is known before the keystore is asked (ECDSA r || s, RSA the modulus), so
 * a length query or a short buffer never uses the key; a decryption's plaintext is kept for
 * the second call of a short buffer, so that a retry does not use the key (its usage count)
 * again. */
#include <stdlib.h>
#include <string.h>

#include "p11.h"

void p11_op_end(struct p11_op *op)
{
    if (op->begun) {
        /* A streaming operation left unfinished: free its slot in the keystore (best effort;
         * it also ends with the connection). */
        Trustme__Keystore__KsAbort ab = TRUSTME__KEYSTORE__KS_ABORT__INIT;
        ab.has_handle = true;
        ab.handle = op->ks_handle;
        KsRequest req = TRUSTME__KEYSTORE__KS_REQUEST__INIT;
        req.body_case = TRUSTME__KEYSTORE__KS_REQUEST__BODY_ABORT;
        req.abort = &ab;
        KsResponse *resp;
        if (p11_call(&req, &resp) == CKR_OK)
            p11_response_free(resp);
    }
    if (op->result) {
        explicit_bzero(op->result, op->result_len);
        free(op->result);
    }
    explicit_bzero(op, sizeof(*op));
    op->kind = OP_NONE;
}

static size_t sig_len(const struct p11_key *k)
{
    return k->alg == ALG_EC ? 2 * ((k->bits + 7) / 8) : k->bits / 8;
}

static CK_RV op_init(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key, int kind)
{
    struct p11_session *s = p11_session_of(h);
    if (!s)
        return CKR_SESSION_HANDLE_INVALID;
    if (!mech)
        return CKR_ARGUMENTS_BAD;
    if (s->op.kind != OP_NONE)
        return CKR_OPERATION_ACTIVE;
    const struct p11_mech *m = p11_mech_find(mech->mechanism);
    if (!m || !(m->flags & (kind == OP_SIGN ? CKF_SIGN : CKF_DECRYPT)))
        return CKR_MECHANISM_INVALID;
    bool priv;
    struct p11_key *k = p11_key_of(key, &priv);
    if (!k)
        return CKR_KEY_HANDLE_INVALID;
    if (!priv || k->alg != m->alg)
        return CKR_KEY_TYPE_INCONSISTENT;
    if (!(kind == OP_SIGN ? k->sign : k->decrypt))
        return CKR_KEY_FUNCTION_NOT_PERMITTED;
    int digest = m->digest;
    bool prehashed = m->digest == DIGEST_NONE;
    if (m->type == CKM_RSA_PKCS_PSS || m->type == CKM_SHA256_RSA_PKCS_PSS || m->type == CKM_SHA384_RSA_PKCS_PSS ||
        m->type == CKM_SHA512_RSA_PKCS_PSS) {
        /* The keystore's PSS: MGF1 with the message's digest, salt as long as the digest. */
        if (!mech->pParameter || mech->ulParameterLen != sizeof(CK_RSA_PKCS_PSS_PARAMS))
            return CKR_MECHANISM_PARAM_INVALID;
        const CK_RSA_PKCS_PSS_PARAMS *pp = mech->pParameter;
        int d = p11_digest_of_ckm(pp->hashAlg);
        if (d == DIGEST_NONE || (m->digest != DIGEST_NONE && d != m->digest) || pp->mgf != p11_mgf_of(d) ||
            pp->sLen != p11_digest_len(d))
            return CKR_MECHANISM_PARAM_INVALID;
        digest = d;
    } else if (m->type == CKM_RSA_PKCS_OAEP) {
        if (!mech->pParameter || mech->ulParameterLen != sizeof(CK_RSA_PKCS_OAEP_PARAMS))
            return CKR_MECHANISM_PARAM_INVALID;
        const CK_RSA_PKCS_OAEP_PARAMS *op = mech->pParameter;
        int d = p11_digest_of_ckm(op->hashAlg);
        /* No OAEP label: the keystore has none. */
        if (d == DIGEST_NONE || op->mgf != p11_mgf_of(d) || (op->source && op->source != CKZ_DATA_SPECIFIED) ||
            op->ulSourceDataLen)
            return CKR_MECHANISM_PARAM_INVALID;
        digest = d;
        prehashed = false;
    } else if (mech->ulParameterLen) {
        return CKR_MECHANISM_PARAM_INVALID;
    }
    if (kind == OP_DECRYPT && m->type == CKM_RSA_PKCS)
        prehashed = false;
    memset(&s->op, 0, sizeof(s->op));
    s->op.kind = kind;
    s->op.key = (size_t)(k - p11_keys);
    s->op.mech = m;
    s->op.digest = digest;
    s->op.padding = m->padding;
    s->op.prehashed = prehashed;
    return CKR_OK;
}

CK_RV C_SignInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
    P11_LOCKED(op_init(h, mech, key, OP_SIGN));
}

CK_RV C_DecryptInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
    P11_LOCKED(op_init(h, mech, key, OP_DECRYPT));
}

static void params_of(const struct p11_op *op, int purpose, KsOperationParams *p)
{
    p->has_purpose = p->has_digest = p->has_padding = true;
    p->purpose = purpose;
    p->digest = op->digest;
    p->padding = op->padding;
    if (op->prehashed) {
        p->has_prehashed = true;
        p->prehashed = true;
    }
    p11_op_passphrase(op, p);
}

/* The keystore's output of a one-shot operation, or of a finish. */
static CK_RV output_of(KsResponse *resp, const uint8_t **ret, size_t *ret_len)
{
    CK_RV rv = p11_rv_of(resp->error);
    if (rv != CKR_OK)
        return rv;
    if (resp->body_case != TRUSTME__KEYSTORE__KS_RESPONSE__BODY_OUTPUT || !resp->output->has_output)
        return CKR_DEVICE_ERROR;
    *ret = resp->output->output.data;
    *ret_len = resp->output->output.len;
    return CKR_OK;
}

/* The keystore's signature (a one-shot's or a finish's output) into out as PKCS#11 gives it:
 * r || s for ECDSA, as it is for RSA. Frees resp. */
static CK_RV signature_of(KsResponse *resp, const struct p11_key *k, uint8_t *out)
{
    const uint8_t *sig;
    size_t sl;
    CK_RV rv = output_of(resp, &sig, &sl);
    if (rv == CKR_OK) {
        if (k->alg == ALG_EC)
            rv = p11_ecdsa_raw(sig, sl, sig_len(k) / 2, out) == 0 ? CKR_OK : CKR_DEVICE_ERROR;
        else if (sl != sig_len(k))
            rv = CKR_DEVICE_ERROR;
        else
            memcpy(out, sig, sl);
    }
    p11_response_free(resp);
    return rv;
}

/* The signature of a whole input (raw mechanisms: a hash or a DigestInfo) into out. */
static CK_RV sign_once(struct p11_op *op, const struct p11_key *k, const uint8_t *data, size_t len, uint8_t *out)
{
    if (op->prehashed) {
        /* Which hash it is: its length (ECDSA), its DigestInfo (PKCS#1 v1.5), the PSS
         * parameters. The keystore signs only hashes of the digests the key is authorised for. */
        if (op->mech->type == CKM_ECDSA) {
            op->digest = len == 32   ? DIGEST_SHA256
                         : len == 48 ? DIGEST_SHA384
                         : len == 64 ? DIGEST_SHA512
                                     : DIGEST_NONE;
            if (op->digest == DIGEST_NONE)
                return CKR_DATA_LEN_RANGE;
        } else if (op->mech->type == CKM_RSA_PKCS) {
            size_t off;
            op->digest = p11_digestinfo(data, len, &off);
            if (op->digest == DIGEST_NONE)
                return CKR_DATA_INVALID;
            data += off;
            len -= off;
        } else if (len != p11_digest_len(op->digest)) {
            return CKR_DATA_LEN_RANGE;
        }
    }
    KsOperationParams p = TRUSTME__KEYSTORE__KS_OPERATION_PARAMS__INIT;
    params_of(op, PURPOSE_SIGN, &p);
    Trustme__Keystore__KsOneShot os = TRUSTME__KEYSTORE__KS_ONE_SHOT__INIT;
    os.alias = (char *)k->alias;
    os.params = &p;
    os.has_input = true;
    os.input = (ProtobufCBinaryData){len, (uint8_t *)data};
    KsRequest req = TRUSTME__KEYSTORE__KS_REQUEST__INIT;
    req.body_case = TRUSTME__KEYSTORE__KS_REQUEST__BODY_ONE_SHOT;
    req.one_shot = &os;
    KsResponse *resp;
    CK_RV rv = p11_call(&req, &resp);
    if (rv != CKR_OK)
        return rv;
    return signature_of(resp, k, out);
}

/* Checks the session's operation and the caller's output buffer; CKR_OK with *ret_done set when
 * the call only asked for the length (or was too short) and must return rv now. */
static CK_RV sign_prepare(struct p11_session *s, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len_p, struct p11_key **ret_key,
                          bool *ret_done, CK_RV *ret_rv)
{
    *ret_done = false;
    struct p11_key *k = &p11_keys[s->op.key];
    if (!k->used) {
        p11_op_end(&s->op);
        *ret_done = true;
        *ret_rv = CKR_KEY_HANDLE_INVALID;
        return CKR_OK;
    }
    size_t need = sig_len(k);
    if (!sig || *sig_len_p < need) {
        *ret_rv = sig ? CKR_BUFFER_TOO_SMALL : CKR_OK;
        *sig_len_p = need;
        *ret_done = true;
        return CKR_OK;
    }
    *ret_key = k;
    return CKR_OK;
}

static CK_RV sign(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len_p)
{
    struct p11_session *s = p11_session_of(h);
    if (!s)
        return CKR_SESSION_HANDLE_INVALID;
    if (s->op.kind != OP_SIGN)
        return CKR_OPERATION_NOT_INITIALIZED;
    if ((!data && len) || !sig_len_p) {
        p11_op_end(&s->op);
        return CKR_ARGUMENTS_BAD;
    }
    if (s->op.multipart) {
        p11_op_end(&s->op);
        return CKR_OPERATION_ACTIVE; /* C_Sign cannot finish a C_SignUpdate's operation */
    }
    struct p11_key *k;
    bool done;
    CK_RV rv;
    sign_prepare(s, sig, sig_len_p, &k, &done, &rv);
    if (done)
        return rv;
    rv = sign_once(&s->op, k, data ? data : (const uint8_t *)"", len, sig);
    if (rv == CKR_OK)
        *sig_len_p = sig_len(k);
    p11_op_end(&s->op);
    return rv;
}

CK_RV C_Sign(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len_p)
{
    P11_LOCKED(sign(h, data, len, sig, sig_len_p));
}

/* Streams input into the keystore's operation (begun at the first part). */
static CK_RV stream(struct p11_op *op, const struct p11_key *k, const uint8_t *data, size_t len)
{
    KsRequest req = TRUSTME__KEYSTORE__KS_REQUEST__INIT;
    KsResponse *resp;
    CK_RV rv;
    if (!op->begun) {
        KsOperationParams p = TRUSTME__KEYSTORE__KS_OPERATION_PARAMS__INIT;
        params_of(op, PURPOSE_SIGN, &p);
        Trustme__Keystore__KsBegin b = TRUSTME__KEYSTORE__KS_BEGIN__INIT;
        b.alias = (char *)k->alias;
        b.params = &p;
        req.body_case = TRUSTME__KEYSTORE__KS_REQUEST__BODY_BEGIN;
        req.begin = &b;
        if ((rv = p11_call(&req, &resp)) != CKR_OK)
            return rv;
        rv = p11_rv_of(resp->error);
        if (rv == CKR_OK && (resp->body_case != TRUSTME__KEYSTORE__KS_RESPONSE__BODY_BEGUN || !resp->begun->has_handle))
            rv = CKR_DEVICE_ERROR;
        if (rv == CKR_OK) {
            op->ks_handle = resp->begun->handle;
            op->begun = true;
        }
        p11_response_free(resp);
        if (rv != CKR_OK)
            return rv;
    }
    while (len) {
        size_t n = len < P11_IO_CHUNK ? len : P11_IO_CHUNK;
        Trustme__Keystore__KsUpdate u = TRUSTME__KEYSTORE__KS_UPDATE__INIT;
        u.has_handle = u.has_input = true;
        u.handle = op->ks_handle;
        u.input = (ProtobufCBinaryData){n, (uint8_t *)data};
        req.body_case = TRUSTME__KEYSTORE__KS_REQUEST__BODY_UPDATE;
        req.update = &u;
        if ((rv = p11_call(&req, &resp)) != CKR_OK)
            return rv;
        rv = p11_rv_of(resp->error);
        p11_response_free(resp);
        if (rv != CKR_OK) {
            op->begun = false; /* a failed update ends the keystore's operation */
            return rv;
        }
        data += n;
        len -= n;
    }
    return CKR_OK;
}

static CK_RV sign_update(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len)
{
    struct p11_session *s = p11_session_of(h);
    if (!s)
        return CKR_SESSION_HANDLE_INVALID;
    if (s->op.kind != OP_SIGN)
        return CKR_OPERATION_NOT_INITIALIZED;
    if (!data && len) {
        p11_op_end(&s->op);
        return CKR_ARGUMENTS_BAD;
    }
    struct p11_key *k = &p11_keys[s->op.key];
    CK_RV rv = CKR_OK;
    s->op.multipart = true;
    if (!k->used) {
        rv = CKR_KEY_HANDLE_INVALID;
    } else if (s->op.prehashed) {
        /* A raw mechanism's input is a hash: gathered here, signed at the end. */
        if (len > P11_HELD_MAX - s->op.held_len)
            rv = CKR_DATA_LEN_RANGE;
        else if (len)
            memcpy(s->op.held + s->op.held_len, data, len), s->op.held_len += len;
    } else {
        rv = stream(&s->op, k, data, len);
    }
    if (rv != CKR_OK)
        p11_op_end(&s->op);
    return rv;
}

CK_RV C_SignUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len)
{
    P11_LOCKED(sign_update(h, data, len));
}

static CK_RV finish(struct p11_op *op, const struct p11_key *k, uint8_t *out)
{
    if (!op->begun) {
        CK_RV rv = stream(op, k, NULL, 0);
        if (rv != CKR_OK)
            return rv;
    }
    Trustme__Keystore__KsFinish f = TRUSTME__KEYSTORE__KS_FINISH__INIT;
    f.has_handle = true;
    f.handle = op->ks_handle;
    KsRequest req = TRUSTME__KEYSTORE__KS_REQUEST__INIT;
    req.body_case = TRUSTME__KEYSTORE__KS_REQUEST__BODY_FINISH;
    req.finish = &f;
    KsResponse *resp;
    CK_RV rv = p11_call(&req, &resp);
    if (rv != CKR_OK)
        return rv;
    op->begun = false; /* finished or failed: either way the keystore ended it */
    return signature_of(resp, k, out);
}

static CK_RV sign_final(CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len_p)
{
    struct p11_session *s = p11_session_of(h);
    if (!s)
        return CKR_SESSION_HANDLE_INVALID;
    if (s->op.kind != OP_SIGN)
        return CKR_OPERATION_NOT_INITIALIZED;
    if (!sig_len_p) {
        p11_op_end(&s->op);
        return CKR_ARGUMENTS_BAD;
    }
    struct p11_key *k;
    bool done;
    CK_RV rv;
    sign_prepare(s, sig, sig_len_p, &k, &done, &rv);
    if (done)
        return rv;
    rv = s->op.prehashed ? sign_once(&s->op, k, s->op.held, s->op.held_len, sig) : finish(&s->op, k, sig);
    if (rv == CKR_OK)
        *sig_len_p = sig_len(k);
    p11_op_end(&s->op);
    return rv;
}

CK_RV C_SignFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len_p)
{
    P11_LOCKED(sign_final(h, sig, sig_len_p));
}

static CK_RV decrypt(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
    struct p11_session *s = p11_session_of(h);
    if (!s)
        return CKR_SESSION_HANDLE_INVALID;
    if (s->op.kind != OP_DECRYPT)
        return CKR_OPERATION_NOT_INITIALIZED;
    if ((!in && in_len) || !out_len) {
        p11_op_end(&s->op);
        return CKR_ARGUMENTS_BAD;
    }
    struct p11_key *k = &p11_keys[s->op.key];
    if (!k->used) {
        p11_op_end(&s->op);
        return CKR_KEY_HANDLE_INVALID;
    }
    if (!s->op.result) {
        /* The plaintext is at most the modulus long: a length query needs no decryption. */
        if (!out) {
            *out_len = k->bits / 8;
            return CKR_OK;
        }
        if (in_len != k->bits / 8) {
            p11_op_end(&s->op);
            return CKR_ENCRYPTED_DATA_LEN_RANGE;
        }
        KsOperationParams p = TRUSTME__KEYSTORE__KS_OPERATION_PARAMS__INIT;
        params_of(&s->op, PURPOSE_DECRYPT, &p);
        if (s->op.padding == PAD_PKCS1)
            p.has_digest = false;
        Trustme__Keystore__KsOneShot os = TRUSTME__KEYSTORE__KS_ONE_SHOT__INIT;
        os.alias = k->alias;
        os.params = &p;
        os.has_input = true;
        os.input = (ProtobufCBinaryData){in_len, in};
        KsRequest req = TRUSTME__KEYSTORE__KS_REQUEST__INIT;
        req.body_case = TRUSTME__KEYSTORE__KS_REQUEST__BODY_ONE_SHOT;
        req.one_shot = &os;
        KsResponse *resp;
        CK_RV rv = p11_call(&req, &resp);
        if (rv != CKR_OK) {
            p11_op_end(&s->op);
            return rv;
        }
        const uint8_t *pt;
        size_t pl;
        rv = output_of(resp, &pt, &pl);
        if (rv == CKR_ARGUMENTS_BAD)
            rv = CKR_ENCRYPTED_DATA_INVALID;
        if (rv == CKR_OK) {
            s->op.result = malloc(pl ? pl : 1);
            if (!s->op.result)
                rv = CKR_HOST_MEMORY;
            else
                memcpy(s->op.result, pt, pl), s->op.result_len = pl;
        }
        p11_response_free(resp);
        if (rv != CKR_OK) {
            p11_op_end(&s->op);
            return rv;
        }
    }
    CK_RV rv = p11_give(s->op.result, s->op.result_len, out, out_len);
    if (rv == CKR_OK && out)
        p11_op_end(&s->op);
    return rv;
}

CK_RV C_Decrypt(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
    P11_LOCKED(decrypt(h, in, in_len, out, out_len));
}
