#include "token_pkcs11.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fs_err.h"
#include "uuid.h"

const char *p11_rv_name(CK_RV rv)
{
    switch (rv) {
#define N(x) case x: return #x;
    N(CKR_OK) N(CKR_HOST_MEMORY) N(CKR_SLOT_ID_INVALID) N(CKR_GENERAL_ERROR)
    N(CKR_FUNCTION_FAILED) N(CKR_ARGUMENTS_BAD) N(CKR_CANT_LOCK)
    N(CKR_ATTRIBUTE_SENSITIVE) N(CKR_ATTRIBUTE_TYPE_INVALID) N(CKR_ATTRIBUTE_VALUE_INVALID)
    N(CKR_DATA_INVALID) N(CKR_DATA_LEN_RANGE) N(CKR_DEVICE_ERROR) N(CKR_DEVICE_MEMORY)
    N(CKR_DEVICE_REMOVED) N(CKR_ENCRYPTED_DATA_INVALID) N(CKR_ENCRYPTED_DATA_LEN_RANGE)
    N(CKR_FUNCTION_NOT_SUPPORTED) N(CKR_KEY_HANDLE_INVALID) N(CKR_KEY_SIZE_RANGE)
    N(CKR_KEY_TYPE_INCONSISTENT) N(CKR_KEY_FUNCTION_NOT_PERMITTED) N(CKR_MECHANISM_INVALID)
    N(CKR_MECHANISM_PARAM_INVALID) N(CKR_OBJECT_HANDLE_INVALID) N(CKR_OPERATION_ACTIVE)
    N(CKR_OPERATION_NOT_INITIALIZED) N(CKR_PIN_INCORRECT) N(CKR_PIN_INVALID)
    N(CKR_PIN_LEN_RANGE) N(CKR_PIN_EXPIRED) N(CKR_PIN_LOCKED) N(CKR_SESSION_CLOSED)
    N(CKR_SESSION_COUNT) N(CKR_SESSION_HANDLE_INVALID) N(CKR_SESSION_READ_ONLY)
    N(CKR_SESSION_READ_ONLY_EXISTS) N(CKR_TEMPLATE_INCOMPLETE) N(CKR_TEMPLATE_INCONSISTENT)
    N(CKR_TOKEN_NOT_PRESENT) N(CKR_TOKEN_NOT_RECOGNIZED) N(CKR_TOKEN_WRITE_PROTECTED)
    N(CKR_USER_ALREADY_LOGGED_IN) N(CKR_USER_NOT_LOGGED_IN) N(CKR_USER_PIN_NOT_INITIALIZED)
    N(CKR_USER_TYPE_INVALID) N(CKR_USER_ANOTHER_ALREADY_LOGGED_IN) N(CKR_BUFFER_TOO_SMALL)
    N(CKR_CRYPTOKI_NOT_INITIALIZED) N(CKR_CRYPTOKI_ALREADY_INITIALIZED)
#undef N
    }
    return "unknown CKR";
}

static int rv_fail(tm_err *err, int code, CK_RV rv, const char *what)
{
    return tm_err_set(err, code, "%s failed: %s (0x%lx)", what, p11_rv_name(rv), (unsigned long)rv);
}

/* CK_TOKEN_INFO strings are fixed-size and padded with spaces, not NUL-terminated. */
static bool padded_equal(const CK_UTF8CHAR *field, size_t size, const char *want)
{
    size_t n = strlen(want);
    if (n > size || memcmp(field, want, n) != 0)
        return false;
    for (size_t i = n; i < size; i++)
        if (field[i] != ' ')
            return false;
    return true;
}

static void padded_copy(char *out, const CK_UTF8CHAR *field, size_t size)
{
    size_t n = size;
    while (n > 0 && (field[n - 1] == ' ' || field[n - 1] == '\0'))
        n--;
    memcpy(out, field, n);
    out[n] = '\0';
}

static void kek_label(const char *uuid, char out[sizeof(P11_KEK_LABEL_PREFIX) + TM_UUID_STR_LEN])
{
    snprintf(out, sizeof(P11_KEK_LABEL_PREFIX) + TM_UUID_STR_LEN, P11_KEK_LABEL_PREFIX "%s", uuid);
}

void p11_close(struct p11 *p)
{
    if (!p)
        return;
    if (p->logged_in)
        p->f->C_Logout(p->session);
    if (p->have_session)
        p->f->C_CloseSession(p->session);
    if (p->initialized)
        p->f->C_Finalize(NULL);
    if (p->dl)
        dlclose(p->dl);
    free(p);
}

static int find_slot(struct p11 *p, const struct p11_config *cfg, tm_err *err)
{
    CK_ULONG n = 0;
    CK_RV rv = p->f->C_GetSlotList(CK_TRUE, NULL, &n);
    if (rv != CKR_OK)
        return rv_fail(err, EIO, rv, "C_GetSlotList");
    _cleanup_free_ CK_SLOT_ID *slots = calloc(n ? n : 1, sizeof(*slots));
    if (!slots)
        return tm_err_set(err, ENOMEM, "out of memory");
    if ((rv = p->f->C_GetSlotList(CK_TRUE, slots, &n)) != CKR_OK)
        return rv_fail(err, EIO, rv, "C_GetSlotList");
    int matches = 0;
    char seen[512] = "";
    size_t seen_len = 0;
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        if (p->f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
            continue; /* a token pulled out meanwhile is simply not a match */
        char label[P11_LABEL_MAX + 1];
        padded_copy(label, ti.label, sizeof(ti.label));
        if (seen_len < sizeof(seen))
            seen_len += (size_t)snprintf(seen + seen_len, sizeof(seen) - seen_len, "%s\"%s\"",
                                         seen_len ? ", " : "", label);
        if (cfg->label && !padded_equal(ti.label, sizeof(ti.label), cfg->label))
            continue;
        if (cfg->serial && !padded_equal(ti.serialNumber, sizeof(ti.serialNumber), cfg->serial))
            continue;
        if (!(ti.flags & CKF_TOKEN_INITIALIZED))
            continue;
        if (matches++ == 0) {
            p->slot = slots[i];
            memcpy(p->token_label, label, sizeof(label));
        }
    }
    const char *what = cfg->label ? cfg->label : cfg->serial;
    const char *kind = cfg->label ? "labelled" : "with serial";
    if (matches == 0)
        return tm_err_set(err, ENODEV, "no initialised token %s \"%s\" in %s (tokens present: %s)",
                          kind, what, cfg->module, seen_len ? seen : "none");
    if (matches > 1)
        return tm_err_set(err, ENOTUNIQ, "%d tokens %s \"%s\" in %s: give the serial number too",
                          matches, kind, what, cfg->module);
    return 0;
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
    /* RTLD_LOCAL: a module's symbols must not resolve those of another module or our own. */
    p->dl = dlopen(cfg->module, RTLD_NOW | RTLD_LOCAL);
    if (!p->dl)
        return tm_err_set(err, ELIBBAD, "cannot load PKCS#11 module %s: %s", cfg->module,
                          dlerror());
    CK_C_GetFunctionList get_list;
    void *sym = dlsym(p->dl, "C_GetFunctionList");
    if (!sym)
        return tm_err_set(err, ELIBBAD, "%s is not a PKCS#11 module (no C_GetFunctionList)",
                          cfg->module);
    memcpy(&get_list, &sym, sizeof(get_list));
    CK_RV rv = get_list(&p->f);
    if (rv != CKR_OK || !p->f)
        return rv_fail(err, ELIBBAD, rv, "C_GetFunctionList");
    CK_C_INITIALIZE_ARGS args = {.flags = CKF_OS_LOCKING_OK};
    rv = p->f->C_Initialize(&args);
    /* Someone else in this process initialised the module (dlopen gave us the same copy): use
     * it, but leave finalising to them. */
    if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED)
        return rv_fail(err, EIO, rv, "C_Initialize");
    p->initialized = rv == CKR_OK;
    int r = find_slot(p, cfg, err);
    if (r < 0)
        return r;
    rv = p->f->C_OpenSession(p->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                             &p->session);
    if (rv != CKR_OK)
        return rv_fail(err, EIO, rv, "C_OpenSession");
    p->have_session = true;
    *ret = steal_ptr(p);
    return 0;
}

int p11_login(struct p11 *p, bool so, const char *pin, tm_err *err)
{
    const char *who = so ? "SO PIN (PUK)" : "PIN";
    CK_RV rv = p->f->C_Login(p->session, so ? CKU_SO : CKU_USER, (CK_UTF8CHAR_PTR)pin,
                             (CK_ULONG)strlen(pin));
    switch (rv) {
    case CKR_OK:
    case CKR_USER_ALREADY_LOGGED_IN:
        p->logged_in = true;
        return 0;
    case CKR_PIN_INCORRECT:
    case CKR_PIN_LEN_RANGE:
        return tm_err_set(err, EACCES, "wrong %s", who);
    case CKR_PIN_LOCKED:
        return tm_err_set(err, EPERM, "token \"%s\" itself locked its %s (CKR_PIN_LOCKED)",
                          p->token_label, who);
    default:
        return rv_fail(err, EIO, rv, "C_Login");
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
        return tm_err_set(err, ENOKEY, "token \"%s\" holds no key object \"%s\"", p->token_label,
                          label);
    if (n > 1)
        return tm_err_set(err, ENOTUNIQ, "token \"%s\" holds several key objects \"%s\"",
                          p->token_label, label);
    *ret = found[0];
    return 0;
}

int p11_create_kek(struct p11 *p, const char *uuid, tm_err *err)
{
    CK_OBJECT_HANDLE h;
    int r = p11_find_kek(p, uuid, &h, err);
    if (r == 0)
        return tm_err_set(err, EEXIST, "token \"%s\" already holds a key object \"" 
                          P11_KEK_LABEL_PREFIX "%s\" from an earlier pairing: delete it "
                          "(pkcs11-tool --delete-object --type secrkey --label ...) or use "
                          "another token", p->token_label, uuid);
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
        return tm_err_set(err, EINVAL, "container key of %zu bytes, expected %d", key->len,
                          KEYWRAP_KEY_LEN);
    uint8_t out[KEYWRAP_BLOB_LEN], aad[KEYWRAP_AAD_LEN];
    CK_OBJECT_HANDLE kek;
    int r = keywrap_header_init(out, KEYWRAP_TOKEN_PKCS11, device_bound, err);
    if (r < 0 || (r = keywrap_aad(out, uuid, aad, err)) < 0 ||
        (r = p11_find_kek(p, uuid, &kek, err)) < 0)
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
        return tm_err_set(err, EIO, "C_Encrypt(CKM_AES_GCM) returned %lu bytes, expected %d",
                          (unsigned long)out_len, KEYWRAP_KEY_LEN + KEYWRAP_TAG_LEN);
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
    case CKR_OK:
        break;
    case CKR_ENCRYPTED_DATA_INVALID:
    case CKR_ENCRYPTED_DATA_LEN_RANGE:
    case CKR_GENERAL_ERROR: /* SoftHSM 2.6.1's answer to a wrong tag */
        return tm_err_set(err, EBADMSG, "key blob does not authenticate under the key object "
                          "on token \"%s\": it belongs to another token or container, or it "
                          "was altered (%s)", p->token_label, p11_rv_name(rv));
    default:
        return rv_fail(err, EIO, rv, "C_Decrypt(CKM_AES_GCM)");
    }
    if (out_len != KEYWRAP_KEY_LEN)
        return tm_err_set(err, EIO, "C_Decrypt(CKM_AES_GCM) returned %lu bytes, expected %d",
                          (unsigned long)out_len, KEYWRAP_KEY_LEN);
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
    CK_RV rv = p->f->C_SetPIN(p->session, (CK_UTF8CHAR_PTR)old_pin, (CK_ULONG)strlen(old_pin),
                              (CK_UTF8CHAR_PTR)new_pin, (CK_ULONG)strlen(new_pin));
    return rv == CKR_OK ? 0 : pin_change_fail(rv, "C_SetPIN", err);
}

int p11_init_pin(struct p11 *p, const char *new_pin, tm_err *err)
{
    CK_RV rv = p->f->C_InitPIN(p->session, (CK_UTF8CHAR_PTR)new_pin, (CK_ULONG)strlen(new_pin));
    return rv == CKR_OK ? 0 : pin_change_fail(rv, "C_InitPIN", err);
}
