/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "p11_module.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"

const char *p11_rv_name(CK_RV rv)
{
    /* The return values a token may give trustme's calls, by name (PKCS#11 v2.40 section 11). */
    static const struct {
        CK_RV rv;
        const char *name;
    } names[] = {
#define N(x) {x, #x}
        N(CKR_OK),
        N(CKR_HOST_MEMORY),
        N(CKR_SLOT_ID_INVALID),
        N(CKR_GENERAL_ERROR),
        N(CKR_FUNCTION_FAILED),
        N(CKR_ARGUMENTS_BAD),
        N(CKR_CANT_LOCK),
        N(CKR_ATTRIBUTE_SENSITIVE),
        N(CKR_ATTRIBUTE_TYPE_INVALID),
        N(CKR_ATTRIBUTE_VALUE_INVALID),
        N(CKR_DATA_INVALID),
        N(CKR_DATA_LEN_RANGE),
        N(CKR_DEVICE_ERROR),
        N(CKR_DEVICE_MEMORY),
        N(CKR_DEVICE_REMOVED),
        N(CKR_ENCRYPTED_DATA_INVALID),
        N(CKR_ENCRYPTED_DATA_LEN_RANGE),
        N(CKR_FUNCTION_NOT_SUPPORTED),
        N(CKR_KEY_HANDLE_INVALID),
        N(CKR_KEY_SIZE_RANGE),
        N(CKR_KEY_TYPE_INCONSISTENT),
        N(CKR_KEY_FUNCTION_NOT_PERMITTED),
        N(CKR_MECHANISM_INVALID),
        N(CKR_MECHANISM_PARAM_INVALID),
        N(CKR_OBJECT_HANDLE_INVALID),
        N(CKR_OPERATION_ACTIVE),
        N(CKR_OPERATION_NOT_INITIALIZED),
        N(CKR_PIN_INCORRECT),
        N(CKR_PIN_INVALID),
        N(CKR_PIN_LEN_RANGE),
        N(CKR_PIN_EXPIRED),
        N(CKR_PIN_LOCKED),
        N(CKR_SESSION_CLOSED),
        N(CKR_SESSION_COUNT),
        N(CKR_SESSION_HANDLE_INVALID),
        N(CKR_SESSION_READ_ONLY),
        N(CKR_SESSION_READ_ONLY_EXISTS),
        N(CKR_TEMPLATE_INCOMPLETE),
        N(CKR_TEMPLATE_INCONSISTENT),
        N(CKR_TOKEN_NOT_PRESENT),
        N(CKR_TOKEN_NOT_RECOGNIZED),
        N(CKR_TOKEN_WRITE_PROTECTED),
        N(CKR_USER_ALREADY_LOGGED_IN),
        N(CKR_USER_NOT_LOGGED_IN),
        N(CKR_USER_PIN_NOT_INITIALIZED),
        N(CKR_USER_TYPE_INVALID),
        N(CKR_USER_ANOTHER_ALREADY_LOGGED_IN),
        N(CKR_BUFFER_TOO_SMALL),
        N(CKR_CRYPTOKI_NOT_INITIALIZED),
        N(CKR_CRYPTOKI_ALREADY_INITIALIZED),
#undef N
    };
    for (size_t i = 0; i < ARRAY_SIZE(names); i++)
        if (names[i].rv == rv)
            return names[i].name;
    return "unknown CKR";
}

int p11_rv_fail(tm_err *err, int code, CK_RV rv, const char *what)
{
    return tm_err_set(err, code, "%s failed: %s (0x%lx)", what, p11_rv_name(rv), (unsigned long)rv);
}

void p11_module_close(struct p11_module *m, CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE session, bool logged_in,
                      bool have_session)
{
    if (f && logged_in)
        f->C_Logout(session);
    if (f && have_session)
        f->C_CloseSession(session);
    p11_module_unload(m);
}

void p11_module_unload(struct p11_module *m)
{
    if (m->initialized)
        m->f->C_Finalize(NULL);
    if (m->dl)
        dlclose(m->dl);
    *m = (struct p11_module){0};
}

int p11_module_load(const char *path, struct p11_module *ret, tm_err *err)
{
    _cleanup_(p11_module_unload) struct p11_module m = {0};
    m.dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!m.dl)
        return tm_err_set(err, ELIBBAD, "cannot load PKCS#11 module %s: %s", path, dlerror());
    CK_C_GetFunctionList get_list;
    void *sym = dlsym(m.dl, "C_GetFunctionList");
    if (!sym)
        return tm_err_set(err, ELIBBAD, "%s is not a PKCS#11 module (no C_GetFunctionList)", path);
    memcpy(&get_list, &sym, sizeof(get_list));
    CK_RV rv = get_list(&m.f);
    if (rv != CKR_OK || !m.f)
        return p11_rv_fail(err, ELIBBAD, rv, "C_GetFunctionList");
    CK_C_INITIALIZE_ARGS args = {.flags = CKF_OS_LOCKING_OK};
    rv = m.f->C_Initialize(&args);
    if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED)
        return p11_rv_fail(err, EIO, rv, "C_Initialize");
    m.initialized = rv == CKR_OK;
    *ret = m;
    m = (struct p11_module){0};
    return 0;
}

/* CK_TOKEN_INFO strings are fixed-size and padded, not NUL-terminated. */
static bool padded_equal(const CK_UTF8CHAR *field, size_t size, const char *want)
{
    size_t n = strlen(want);
    if (n > size || memcmp(field, want, n) != 0)
        return false;
    for (size_t i = n; i < size; i++)
        if (field[i] != ' ' && field[i] != '\0')
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

int p11_module_find_token(const struct p11_module *m, const char *path, const char *label, const char *serial,
                          CK_SLOT_ID *ret_slot, char ret_label[P11_LABEL_MAX + 1], tm_err *err)
{
    if (!label && !serial)
        return tm_err_set(err, EINVAL, "PKCS#11 token: give its label or its serial number");
    CK_ULONG n = 0;
    CK_RV rv = m->f->C_GetSlotList(CK_TRUE, NULL, &n);
    if (rv != CKR_OK)
        return p11_rv_fail(err, EIO, rv, "C_GetSlotList");
    _cleanup_free_ CK_SLOT_ID *slots = calloc(n ? n : 1, sizeof(*slots));
    if (!slots)
        return tm_err_set(err, ENOMEM, "out of memory");
    if ((rv = m->f->C_GetSlotList(CK_TRUE, slots, &n)) != CKR_OK)
        return p11_rv_fail(err, EIO, rv, "C_GetSlotList");
    int matches = 0;
    CK_SLOT_ID slot = 0;
    char found_label[P11_LABEL_MAX + 1] = "";
    char seen[512] = "";
    size_t seen_len = 0;
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        if (m->f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
            continue; /* a token pulled out meanwhile is simply not a match */
        char l[P11_LABEL_MAX + 1];
        padded_copy(l, ti.label, sizeof(ti.label));
        if (seen_len < sizeof(seen))
            seen_len += (size_t)snprintf(seen + seen_len, sizeof(seen) - seen_len, "%s\"%s\"", seen_len ? ", " : "", l);
        if (label && !padded_equal(ti.label, sizeof(ti.label), label))
            continue;
        if (serial && !padded_equal(ti.serialNumber, sizeof(ti.serialNumber), serial))
            continue;
        if (!(ti.flags & CKF_TOKEN_INITIALIZED))
            continue;
        if (matches++ == 0) {
            slot = slots[i];
            memcpy(found_label, l, sizeof(l));
        }
    }
    const char *what = label ? label : serial;
    const char *kind = label ? "labelled" : "with serial";
    if (matches == 0)
        return tm_err_set(err, ENODEV,
                          "no PKCS#11 token %s \"%s\"%s%s%s is initialised in %s "
                          "(tokens present: %s)",
                          kind, what, label && serial ? " and serial \"" : "", label && serial ? serial : "",
                          label && serial ? "\"" : "", path, seen_len ? seen : "none");
    if (matches > 1)
        return tm_err_set(err, ENOTUNIQ,
                          "%d PKCS#11 tokens %s \"%s\" in %s: give the serial "
                          "number too",
                          matches, kind, what, path);
    *ret_slot = slot;
    if (ret_label)
        memcpy(ret_label, found_label, sizeof(found_label));
    return 0;
}
