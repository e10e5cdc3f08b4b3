/* SPDX-License-Identifier: GPL-2.0-or-later */
/* libtrustme-pkcs11's general, slot, token, session and login functions. One slot (0) holds one
 * token: the container's keystore. The token needs no login (the socket's permissions decide who
 * may use it); a C_Login's PIN is only the passphrase sent for keys that have one
 * (docs/KEYSTORE.md "PKCS#11"). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "p11.h"
#include "version.h"

pthread_mutex_t p11_lock = PTHREAD_MUTEX_INITIALIZER;
static bool initialized;
static pid_t init_pid;
static struct p11_session sessions[P11_MAX_SESSIONS];
static CK_SESSION_HANDLE next_session = 1;
static size_t n_sessions;
/* The user PIN of C_Login(CKU_USER): the passphrase for every key that needs one. */
static uint8_t user_pin[P11_PIN_MAX];
static size_t user_pin_len;
static bool logged_in;

bool p11_ready(void)
{
    return initialized && init_pid == getpid();
}

struct p11_session *p11_session_of(CK_SESSION_HANDLE h)
{
    if (h == CK_INVALID_HANDLE)
        return NULL;
    for (size_t i = 0; i < P11_MAX_SESSIONS; i++)
        if (sessions[i].handle == h)
            return &sessions[i];
    return NULL;
}

CK_RV p11_give(const void *value, size_t len, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
    if (!out) {
        *out_len = len;
        return CKR_OK;
    }
    if (*out_len < len) {
        *out_len = len;
        return CKR_BUFFER_TOO_SMALL;
    }
    memcpy(out, value, len);
    *out_len = len;
    return CKR_OK;
}

void p11_op_passphrase(const struct p11_op *op, KsOperationParams *p)
{
    if (op->has_pass) {
        p->has_passphrase = true;
        p->passphrase = (ProtobufCBinaryData){op->pass_len, (uint8_t *)op->pass};
    } else if (logged_in) {
        p->has_passphrase = true;
        p->passphrase = (ProtobufCBinaryData){user_pin_len, user_pin};
    }
}

static void session_free(struct p11_session *s)
{
    p11_op_end(&s->op);
    free(s->found);
    memset(s, 0, sizeof(*s));
}

static void reset(void)
{
    for (size_t i = 0; i < P11_MAX_SESSIONS; i++)
        if (sessions[i].handle)
            session_free(&sessions[i]);
    n_sessions = 0;
    explicit_bzero(user_pin, sizeof(user_pin));
    user_pin_len = 0;
    logged_in = false;
    p11_keys_clear();
    p11_conn_close();
}

/* Space-padded, not terminated: PKCS#11's fixed-size strings. */
static void pad(unsigned char *dst, size_t n, const char *src)
{
    memset(dst, ' ', n);
    size_t l = strlen(src);
    memcpy(dst, src, l < n ? l : n);
}

CK_RV C_Initialize(CK_VOID_PTR init_args)
{
    CK_C_INITIALIZE_ARGS *a = init_args;
    if (a) {
        if (a->pReserved)
            return CKR_ARGUMENTS_BAD;
        bool fns = a->CreateMutex || a->DestroyMutex || a->LockMutex || a->UnlockMutex;
        bool all = a->CreateMutex && a->DestroyMutex && a->LockMutex && a->UnlockMutex;
        if (fns && !all)
            return CKR_ARGUMENTS_BAD;
        /* The module locks with pthreads; an application that offers only its own mutexes
         * cannot have them used. */
        if (fns && !(a->flags & CKF_OS_LOCKING_OK))
            return CKR_CANT_LOCK;
    }
    pthread_mutex_lock(&p11_lock);
    CK_RV rv = CKR_OK;
    if (p11_ready()) {
        rv = CKR_CRYPTOKI_ALREADY_INITIALIZED;
    } else {
        /* A child of a fork that initialised: start afresh (its sessions were its parent's). */
        reset();
        initialized = true;
        init_pid = getpid();
    }
    pthread_mutex_unlock(&p11_lock);
    return rv;
}

CK_RV C_Finalize(CK_VOID_PTR reserved)
{
    if (reserved)
        return CKR_ARGUMENTS_BAD;
    pthread_mutex_lock(&p11_lock);
    CK_RV rv = CKR_CRYPTOKI_NOT_INITIALIZED;
    if (p11_ready()) {
        reset();
        initialized = false;
        rv = CKR_OK;
    }
    pthread_mutex_unlock(&p11_lock);
    return rv;
}

static CK_RV get_info(CK_INFO_PTR info)
{
    if (!info)
        return CKR_ARGUMENTS_BAD;
    memset(info, 0, sizeof(*info));
    info->cryptokiVersion.major = 2;
    info->cryptokiVersion.minor = 40;
    pad(info->manufacturerID, sizeof(info->manufacturerID), "trustme");
    pad(info->libraryDescription, sizeof(info->libraryDescription), "trustme keystore PKCS#11 module");
    info->libraryVersion.major = 0;
    info->libraryVersion.minor = 1;
    return CKR_OK;
}

CK_RV C_GetInfo(CK_INFO_PTR info)
{
    P11_LOCKED(get_info(info));
}

static CK_RV get_slot_list(CK_BBOOL token_present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count)
{
    if (!count)
        return CKR_ARGUMENTS_BAD;
    CK_ULONG n = token_present && !p11_token_present() ? 0 : 1;
    if (list && n) {
        if (*count < n) {
            *count = n;
            return CKR_BUFFER_TOO_SMALL;
        }
        list[0] = 0;
    }
    *count = n;
    return CKR_OK;
}

CK_RV C_GetSlotList(CK_BBOOL token_present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count)
{
    P11_LOCKED(get_slot_list(token_present, list, count));
}

static CK_RV get_slot_info(CK_SLOT_ID slot, CK_SLOT_INFO_PTR info)
{
    if (slot != 0)
        return CKR_SLOT_ID_INVALID;
    if (!info)
        return CKR_ARGUMENTS_BAD;
    memset(info, 0, sizeof(*info));
    pad(info->slotDescription, sizeof(info->slotDescription), "trustme container keystore");
    pad(info->manufacturerID, sizeof(info->manufacturerID), "trustme");
    info->flags = p11_token_present() ? CKF_TOKEN_PRESENT : 0;
    return CKR_OK;
}

CK_RV C_GetSlotInfo(CK_SLOT_ID slot, CK_SLOT_INFO_PTR info)
{
    P11_LOCKED(get_slot_info(slot, info));
}

static CK_RV get_token_info(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info)
{
    if (slot != 0)
        return CKR_SLOT_ID_INVALID;
    if (!info)
        return CKR_ARGUMENTS_BAD;
    if (!p11_token_present())
        return CKR_TOKEN_NOT_PRESENT;
    memset(info, 0, sizeof(*info));
    pad(info->label, sizeof(info->label), "trustme keystore");
    pad(info->manufacturerID, sizeof(info->manufacturerID), "trustme");
    pad(info->model, sizeof(info->model), "keystore");
    pad(info->serialNumber, sizeof(info->serialNumber), "1");
    /* No CKF_LOGIN_REQUIRED: whoever may open the socket may use its keys; a PIN is a key's
     * passphrase. No CKF_RNG: C_GenerateRandom is not offered. */
    info->flags = CKF_TOKEN_INITIALIZED | CKF_USER_PIN_INITIALIZED;
    info->ulMaxSessionCount = P11_MAX_SESSIONS;
    info->ulSessionCount = n_sessions;
    info->ulMaxRwSessionCount = P11_MAX_SESSIONS;
    info->ulRwSessionCount = n_sessions;
    info->ulMaxPinLen = P11_PIN_MAX;
    info->ulMinPinLen = 0;
    info->ulTotalPublicMemory = info->ulFreePublicMemory = CK_UNAVAILABLE_INFORMATION;
    info->ulTotalPrivateMemory = info->ulFreePrivateMemory = CK_UNAVAILABLE_INFORMATION;
    info->firmwareVersion.minor = 1;
    return CKR_OK;
}

CK_RV C_GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info)
{
    P11_LOCKED(get_token_info(slot, info));
}

static CK_RV get_mechanism_list(CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR count)
{
    if (slot != 0)
        return CKR_SLOT_ID_INVALID;
    if (!count)
        return CKR_ARGUMENTS_BAD;
    size_t n = p11_mech_count();
    if (list) {
        if (*count < n) {
            *count = n;
            return CKR_BUFFER_TOO_SMALL;
        }
        for (size_t i = 0; i < n; i++)
            list[i] = p11_mech_at(i)->type;
    }
    *count = n;
    return CKR_OK;
}

CK_RV C_GetMechanismList(CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR count)
{
    P11_LOCKED(get_mechanism_list(slot, list, count));
}

static CK_RV get_mechanism_info(CK_SLOT_ID slot, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info)
{
    if (slot != 0)
        return CKR_SLOT_ID_INVALID;
    if (!info)
        return CKR_ARGUMENTS_BAD;
    const struct p11_mech *m = p11_mech_find(type);
    if (!m)
        return CKR_MECHANISM_INVALID;
    info->ulMinKeySize = m->min_bits;
    info->ulMaxKeySize = m->max_bits;
    info->flags = m->flags;
    return CKR_OK;
}

CK_RV C_GetMechanismInfo(CK_SLOT_ID slot, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info)
{
    P11_LOCKED(get_mechanism_info(slot, type, info));
}

static CK_RV open_session(CK_SLOT_ID slot, CK_FLAGS flags, CK_SESSION_HANDLE_PTR ret)
{
    if (slot != 0)
        return CKR_SLOT_ID_INVALID;
    if (!(flags & CKF_SERIAL_SESSION))
        return CKR_SESSION_PARALLEL_NOT_SUPPORTED;
    if (!ret)
        return CKR_ARGUMENTS_BAD;
    if (!p11_token_present())
        return CKR_TOKEN_NOT_PRESENT;
    for (size_t i = 0; i < P11_MAX_SESSIONS; i++) {
        struct p11_session *s = &sessions[i];
        if (s->handle)
            continue;
        memset(s, 0, sizeof(*s));
        s->handle = next_session++;
        if (next_session == CK_INVALID_HANDLE)
            next_session = 1;
        s->flags = flags & (CKF_SERIAL_SESSION | CKF_RW_SESSION);
        n_sessions++;
        *ret = s->handle;
        return CKR_OK;
    }
    return CKR_SESSION_COUNT;
}

CK_RV C_OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, CK_VOID_PTR app, CK_NOTIFY notify, CK_SESSION_HANDLE_PTR ret)
{
    P11_LOCKED(open_session(slot, flags, ret));
}

static void logout_if_last(void)
{
    /* The login state belongs to the application's sessions: it ends with the last of them. */
    if (n_sessions == 0) {
        explicit_bzero(user_pin, sizeof(user_pin));
        user_pin_len = 0;
        logged_in = false;
    }
}

static CK_RV close_session(CK_SESSION_HANDLE h)
{
    struct p11_session *s = p11_session_of(h);
    if (!s)
        return CKR_SESSION_HANDLE_INVALID;
    session_free(s);
    n_sessions--;
    logout_if_last();
    return CKR_OK;
}

CK_RV C_CloseSession(CK_SESSION_HANDLE h)
{
    P11_LOCKED(close_session(h));
}

static CK_RV close_all(CK_SLOT_ID slot)
{
    if (slot != 0)
        return CKR_SLOT_ID_INVALID;
    for (size_t i = 0; i < P11_MAX_SESSIONS; i++)
        if (sessions[i].handle)
            session_free(&sessions[i]);
    n_sessions = 0;
    logout_if_last();
    return CKR_OK;
}

CK_RV C_CloseAllSessions(CK_SLOT_ID slot)
{
    P11_LOCKED(close_all(slot));
}

static CK_RV get_session_info(CK_SESSION_HANDLE h, CK_SESSION_INFO_PTR info)
{
    struct p11_session *s = p11_session_of(h);
    if (!s)
        return CKR_SESSION_HANDLE_INVALID;
    if (!info)
        return CKR_ARGUMENTS_BAD;
    memset(info, 0, sizeof(*info));
    info->slotID = 0;
    bool rw = s->flags & CKF_RW_SESSION;
    info->state = logged_in ? (rw ? CKS_RW_USER_FUNCTIONS : CKS_RO_USER_FUNCTIONS)
                            : (rw ? CKS_RW_PUBLIC_SESSION : CKS_RO_PUBLIC_SESSION);
    info->flags = s->flags;
    return CKR_OK;
}

CK_RV C_GetSessionInfo(CK_SESSION_HANDLE h, CK_SESSION_INFO_PTR info)
{
    P11_LOCKED(get_session_info(h, info));
}

static CK_RV login(CK_SESSION_HANDLE h, CK_USER_TYPE type, CK_UTF8CHAR_PTR pin, CK_ULONG len)
{
    struct p11_session *s = p11_session_of(h);
    if (!s)
        return CKR_SESSION_HANDLE_INVALID;
    if (!pin && len)
        return CKR_ARGUMENTS_BAD;
    if (len > P11_PIN_MAX)
        return CKR_PIN_LEN_RANGE;
    switch (type) {
    case CKU_USER:
        /* The keystore cannot check a passphrase without using a key (which may count its
         * uses): the PIN is kept and a wrong one shows at the use, as CKR_PIN_INCORRECT. */
        if (logged_in)
            return CKR_USER_ALREADY_LOGGED_IN;
        if (len)
            memcpy(user_pin, pin, len);
        user_pin_len = len;
        logged_in = true;
        return CKR_OK;
    case CKU_CONTEXT_SPECIFIC:
        /* The passphrase of the key of the operation just begun (CKA_ALWAYS_AUTHENTICATE). */
        if (s->op.kind == OP_NONE)
            return CKR_OPERATION_NOT_INITIALIZED;
        if (len)
            memcpy(s->op.pass, pin, len);
        s->op.pass_len = len;
        s->op.has_pass = true;
        return CKR_OK;
    case CKU_SO: return CKR_USER_TYPE_INVALID; /* there is no security officer: nothing to administer */
    default: return CKR_USER_TYPE_INVALID;
    }
}

CK_RV C_Login(CK_SESSION_HANDLE h, CK_USER_TYPE type, CK_UTF8CHAR_PTR pin, CK_ULONG len)
{
    P11_LOCKED(login(h, type, pin, len));
}

static CK_RV logout(CK_SESSION_HANDLE h)
{
    if (!p11_session_of(h))
        return CKR_SESSION_HANDLE_INVALID;
    if (!logged_in)
        return CKR_USER_NOT_LOGGED_IN;
    explicit_bzero(user_pin, sizeof(user_pin));
    user_pin_len = 0;
    logged_in = false;
    return CKR_OK;
}

CK_RV C_Logout(CK_SESSION_HANDLE h)
{
    P11_LOCKED(logout(h));
}
