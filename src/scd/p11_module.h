/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The one PKCS#11 module loader of trustme, for trustme-scd's tokens (token_pkcs11.c) and
 * trustme-pki's keys (src/tools/pki/p11key.c): load a module, initialise it, find the one token
 * a label and/or serial number names.
 *
 * Modules are dlopen'ed (p11-kit provides the header, not the proxy module: the path is the
 * operator's choice, and scd's sandbox holds only that one file). */
#pragma once

#include <stdbool.h>

#include <p11-kit/pkcs11.h>

#include "error.h"

#define P11_LABEL_MAX 32 /* CK_TOKEN_INFO.label */
#define P11_SERIAL_MAX 16 /* CK_TOKEN_INFO.serialNumber */

struct p11_module {
    void *dl;
    CK_FUNCTION_LIST_PTR f;
    bool initialized; /* by us: we finalize */
};

/* dlopen path (RTLD_NOW | RTLD_LOCAL: a module's symbols must not resolve those of another
 * module or our own), C_GetFunctionList, C_Initialize with CKF_OS_LOCKING_OK. A module someone
 * else in this process initialised (CKR_CRYPTOKI_ALREADY_INITIALIZED: dlopen gave us the same
 * copy) is used, and finalising is left to them. -ELIBBAD: cannot be loaded or is not a PKCS#11
 * module; -EIO: C_Initialize failed. *ret is written only on success. */
int p11_module_load(const char *path, struct p11_module *ret, tm_err *err);
/* C_Finalize (if we initialised it) and dlclose; m is zeroed, so a second call does nothing. */
void p11_module_unload(struct p11_module *m);
/* The end of a user of m: log out of session (if logged_in), close it (if have_session), unload m.
 * f may be NULL (nothing was loaded). */
void p11_module_close(struct p11_module *m, CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE session, bool logged_in,
                      bool have_session);

/* The one present, initialised token whose label equals label and whose serial number equals
 * serial (NULL: not checked; at least one of the two). CK_TOKEN_INFO's fields are padded with
 * blanks (some modules: NULs), both are accepted. path is the module's, for the messages.
 * ret_label (may be NULL) receives the token's label. -ENODEV: none (the message lists the
 * tokens present), -ENOTUNIQ: several. */
int p11_module_find_token(const struct p11_module *m, const char *path, const char *label, const char *serial,
                          CK_SLOT_ID *ret_slot, char ret_label[P11_LABEL_MAX + 1], tm_err *err);

/* "CKR_PIN_INCORRECT" etc., for messages. */
const char *p11_rv_name(CK_RV rv);
/* tm_err_set(err, code, "<what> failed: <name> (0x..)"). */
int p11_rv_fail(tm_err *err, int code, CK_RV rv, const char *what);
