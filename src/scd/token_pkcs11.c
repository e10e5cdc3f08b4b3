/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "token_pkcs11.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fs_err.h"
#include "uuid.h"

static int rv_fail(tm_err *err, int code, CK_RV rv, const char *what)
{
    return p11_rv_fail(err, code, rv, what);
}

static void kek_label(const char *uuid, char out[sizeof(P11_KEK_LABEL_PREFIX) + TM_UUID_STR_LEN])
{
    snprintf(out, sizeof(P11_KEK_LABEL_PREFIX) + TM_UUID_STR_LEN, P11_KEK_LABEL_PREFIX "%s", uuid);
}

void p11_close(struct p11 *p)
{
    if (!p)
        return;
    p11_module_close(&p->mod, p->f, p->session, p->logged_in, p->have_session);
    free(p);
}

int p11_open(const struct p11_config *cfg, struct p11 **ret, tm_err *err)
{
    if (!cfg->module || cfg->module[0] != '/')
        return tm_err_set(err, EINVAL, "PKCS#11 module must be an absolute path");
    if (!cfg->label && !cfg->serial)
        return tm_err_set(err, EINVAL, "PKCS#11 token: give its label or its serial number");
    struct stat st;
    if (stat(cfg->module, &st) < 0)
        return fs_err(tm_err_sys(err, "PKCS#11 module %s", cfg->module), err);
    _cleanup_(p11_closep) struct p11 *p = calloc(1, sizeof(*p));
    if (!p)
        return tm_err_set(err, ENOMEM, "out of memory");
    int r = p11_module_load(cfg->module, &p->mod, err);
    if (r < 0)
        return r;
    p->f = p->mod.f;
    if ((r = p11_module_find_token(&p->mod, cfg->module, cfg->label, cfg->serial, &p->slot, p->token_label, err)) < 0)
        return r;
    CK_RV rv = p->f->C_OpenSession(p->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &p->session);
    if (rv != CKR_OK)
        return rv_fail(err, EIO, rv, "C_OpenSession");
    p->have_session = true;
    *ret = steal_ptr(p);
    return 0;
}

int p11_login(struct p11 *p, bool so, const char *pin, tm_err *err)
{
    const char *who = so ? "SO PIN (PUK)" : "PIN";
    CK_RV rv = p->f->C_Login(p->session, so ? CKU_SO : CKU_USER, (CK_UTF8CHAR_PTR)pin, (CK_ULONG)strlen(pin));
    switch (rv) {
    case CKR_OK:
    case CKR_USER_ALREADY_LOGGED_IN: p->logged_in = true; return 0;
    case CKR_PIN_INCORRECT:
    case CKR_PIN_LEN_RANGE: return tm_err_set(err, EACCES, "wrong %s", who);
    case CKR_PIN_LOCKED:
        return tm_err_set(err, EPERM, "token \"%s\" itself locked its %s (CKR_PIN_LOCKED)", p->token_label, who);
    default: return rv_fail(err, EIO, rv, "C_Login");
    }
}

int p11_find_kek(struct p11 *p, const char *uuid, CK_OBJECT_HANDLE *ret, tm_err *err)
{
    char label[sizeof(P11_KEK_LABEL_PREFIX) + TM_UUID_STR_LEN];
    kek_label(uuid, label);
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_LABEL, label, strlen(label)},
    };
    CK_RV rv = p->f->C_FindObjectsInit(p->session, tmpl, ARRAY_SIZE(tmpl));
    if (rv != CKR_OK)
        return rv_fail(err, EIO, rv, "C_FindObjectsInit");
    CK_OBJECT_HANDLE found[2];
    CK_ULONG n = 0;
    rv = p->f->C_FindObjects(p->session, found, ARRAY_SIZE(found), &n);
    p->f->C_FindObjectsFinal(p->session);
    if (rv != CKR_OK)
        return rv_fail(err, EIO, rv, "C_FindObjects");
    if (n == 0)
        return tm_err_set(err, ENOKEY, "token \"%s\" holds no key object \"%s\"", p->token_label, label);
    if (n > 1)
        return tm_err_set(err, ENOTUNIQ, "token \"%s\" holds several key objects \"%s\"", p->token_label, label);
    *ret = found[0];
    return 0;
}

int p11_create_kek(struct p11 *p, const char *uuid, tm_err *err)
{
    CK_OBJECT_HANDLE h;
    int r = p11_find_kek(p, uuid, &h, err);
    if (r == 0)
        return tm_err_set(err, EEXIST,
                          "token \"%s\" already holds a key object \"" P11_KEK_LABEL_PREFIX
                          "%s\" from an earlier pairing: delete it "
                          "(pkcs11-tool --delete-object --type secrkey --label ...) or use "
                          "another token",
                          p->token_label, uuid);
    if (r != -ENOKEY)
        return r;
    char label[sizeof(P11_KEK_LABEL_PREFIX) + TM_UUID_STR_LEN];
    kek_label(uuid, label);
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE type = CKK_AES;
    CK_ULONG len = 32;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &type, sizeof(type)},
        {CKA_VALUE_LEN, &len, sizeof(len)},
        {CKA_LABEL, label, strlen(label)},
        {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_SENSITIVE, &yes, sizeof(yes)},
        {CKA_EXTRACTABLE, &no, sizeof(no)},
        {CKA_ENCRYPT, &yes, sizeof(yes)},
        {CKA_DECRYPT, &yes, sizeof(yes)},
        /* Nothing but GCM over container keys: no wrapping of other keys, no derivation. */
        {CKA_WRAP, &no, sizeof(no)},
        {CKA_UNWRAP, &no, sizeof(no)},
        {CKA_DERIVE, &no, sizeof(no)},
    };
    CK_MECHANISM mech = {CKM_AES_KEY_GEN, NULL, 0};
    CK_RV rv = p->f->C_GenerateKey(p->session, &mech, tmpl, ARRAY_SIZE(tmpl), &h);
    if (rv != CKR_OK)
        return rv_fail(err, EIO, rv, "C_GenerateKey(CKM_AES_KEY_GEN, AES-256)");
    return 0;
}

int p11_destroy_kek(struct p11 *p, const char *uuid, tm_err *err)
{
    CK_OBJECT_HANDLE h;
    int r = p11_find_kek(p, uuid, &h, err);
    if (r < 0)
        return r;
    CK_RV rv = p->f->C_DestroyObject(p->session, h);
    if (rv != CKR_OK)
        return rv_fail(err, EIO, rv, "C_DestroyObject");
    return 0;
}

static void gcm_mechanism(CK_MECHANISM *mech, CK_GCM_PARAMS *gcm, uint8_t *nonce, uint8_t *aad)
{
    *gcm = (CK_GCM_PARAMS){
        .pIv = nonce,
        .ulIvLen = KEYWRAP_NONCE_LEN,
        .ulIvBits = KEYWRAP_NONCE_LEN * 8,
        .pAAD = aad,
        .ulAADLen = KEYWRAP_AAD_LEN,
        .ulTagBits = KEYWRAP_TAG_LEN * 8,
    };
    *mech = (CK_MECHANISM){CKM_AES_GCM, gcm, sizeof(*gcm)};
}

int p11_wrap(struct p11 *p, const char *uuid, const struct secret *key, bool device_bound,
             uint8_t blob[KEYWRAP_BLOB_LEN], tm_err *err)
{
    if (key->len != KEYWRAP_KEY_LEN)
        return tm_err_set(err, EINVAL, "container key of %zu bytes, expected %d", key->len, KEYWRAP_KEY_LEN);
    uint8_t out[KEYWRAP_BLOB_LEN], aad[KEYWRAP_AAD_LEN];
    CK_OBJECT_HANDLE kek;
    int r = keywrap_header_init(out, KEYWRAP_TOKEN_PKCS11, device_bound, err);
    if (r < 0 || (r = keywrap_aad(out, uuid, aad, err)) < 0 || (r = p11_find_kek(p, uuid, &kek, err)) < 0)
        return r;
    CK_MECHANISM mech;
    CK_GCM_PARAMS gcm;
    gcm_mechanism(&mech, &gcm, out + KEYWRAP_NONCE_OFFSET, aad);
    CK_RV rv = p->f->C_EncryptInit(p->session, &mech, kek);
    if (rv != CKR_OK)
        return rv_fail(err, EIO, rv, "C_EncryptInit(CKM_AES_GCM)");
    CK_ULONG out_len = KEYWRAP_KEY_LEN + KEYWRAP_TAG_LEN;
    rv = p->f->C_Encrypt(p->session, key->data, KEYWRAP_KEY_LEN, out + KEYWRAP_CT_OFFSET, &out_len);
    if (rv != CKR_OK)
        return rv_fail(err, EIO, rv, "C_Encrypt(CKM_AES_GCM)");
    if (out_len != KEYWRAP_KEY_LEN + KEYWRAP_TAG_LEN)
        return tm_err_set(err, EIO, "C_Encrypt(CKM_AES_GCM) returned %lu bytes, expected %d", (unsigned long)out_len,
                          KEYWRAP_KEY_LEN + KEYWRAP_TAG_LEN);
    memcpy(blob, out, KEYWRAP_BLOB_LEN);
    return 0;
}

int p11_unwrap(struct p11 *p, const char *uuid, const uint8_t *blob, size_t len, bool device_bound,
               struct secret **ret_key, tm_err *err)
{
    struct keywrap_info info;
    uint8_t nonce[KEYWRAP_NONCE_LEN], aad[KEYWRAP_AAD_LEN];
    CK_OBJECT_HANDLE kek;
    int r = keywrap_parse(blob, len, device_bound, &info, err);
    if (r < 0 || (r = keywrap_aad(blob, uuid, aad, err)) < 0)
        return r;
    if (info.token != KEYWRAP_TOKEN_PKCS11)
        return tm_err_set(err, EINVAL, "key blob was wrapped by a soft token, not a PKCS#11 token");
    if ((r = p11_find_kek(p, uuid, &kek, err)) < 0)
        return r;
    memcpy(nonce, blob + KEYWRAP_NONCE_OFFSET, sizeof(nonce));
    /* Room for ciphertext and tag: modules differ in how much output space they demand for
     * GCM decryption, and the plaintext must land in locked memory either way. */
    _cleanup_secret_ struct secret *buf = NULL, *key = NULL;
    if ((r = secret_new(KEYWRAP_KEY_LEN + KEYWRAP_TAG_LEN, &buf, err)) < 0 ||
        (r = secret_new(KEYWRAP_KEY_LEN, &key, err)) < 0)
        return r;
    CK_MECHANISM mech;
    CK_GCM_PARAMS gcm;
    gcm_mechanism(&mech, &gcm, nonce, aad);
    CK_RV rv = p->f->C_DecryptInit(p->session, &mech, kek);
    if (rv != CKR_OK)
        return rv_fail(err, EIO, rv, "C_DecryptInit(CKM_AES_GCM)");
    uint8_t in[KEYWRAP_KEY_LEN + KEYWRAP_TAG_LEN];
    memcpy(in, blob + KEYWRAP_CT_OFFSET, sizeof(in));
    CK_ULONG out_len = buf->len;
    rv = p->f->C_Decrypt(p->session, in, sizeof(in), buf->data, &out_len);
    switch (rv) {
    case CKR_OK: break;
    case CKR_ENCRYPTED_DATA_INVALID:
    case CKR_ENCRYPTED_DATA_LEN_RANGE:
    case CKR_GENERAL_ERROR: /* SoftHSM 2.6.1's answer to a wrong tag */
        return tm_err_set(err, EBADMSG,
                          "key blob does not authenticate under the key object "
                          "on token \"%s\": it belongs to another token or container, or it "
                          "was altered (%s)",
                          p->token_label, p11_rv_name(rv));
    default: return rv_fail(err, EIO, rv, "C_Decrypt(CKM_AES_GCM)");
    }
    if (out_len != KEYWRAP_KEY_LEN)
        return tm_err_set(err, EIO, "C_Decrypt(CKM_AES_GCM) returned %lu bytes, expected %d", (unsigned long)out_len,
                          KEYWRAP_KEY_LEN);
    memcpy(key->data, buf->data, KEYWRAP_KEY_LEN);
    *ret_key = steal_ptr(key);
    return 0;
}

static int pin_change_fail(CK_RV rv, const char *what, tm_err *err)
{
    if (rv == CKR_PIN_LEN_RANGE || rv == CKR_PIN_INVALID)
        return tm_err_set(err, EINVAL, "the token refuses the new PIN (%s)", p11_rv_name(rv));
    if (rv == CKR_PIN_INCORRECT)
        return tm_err_set(err, EACCES, "wrong PIN");
    return rv_fail(err, EIO, rv, what);
}

int p11_set_pin(struct p11 *p, const char *old_pin, const char *new_pin, tm_err *err)
{
    CK_RV rv = p->f->C_SetPIN(p->session, (CK_UTF8CHAR_PTR)old_pin, (CK_ULONG)strlen(old_pin), (CK_UTF8CHAR_PTR)new_pin,
                              (CK_ULONG)strlen(new_pin));
    return rv == CKR_OK ? 0 : pin_change_fail(rv, "C_SetPIN", err);
}

int p11_init_pin(struct p11 *p, const char *new_pin, tm_err *err)
{
    CK_RV rv = p->f->C_InitPIN(p->session, (CK_UTF8CHAR_PTR)new_pin, (CK_ULONG)strlen(new_pin));
    return rv == CKR_OK ? 0 : pin_change_fail(rv, "C_InitPIN", err);
}
