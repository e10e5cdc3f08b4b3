/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A PKCS#11 token holding a container's KEK as a non-extractable AES-256 key object labelled
 * "trustme:<uuid>". The module is loaded with dlopen for each use and unloaded afterwards
 * (C_Logout, C_CloseSession, C_Finalize, dlclose on every path, in p11_close), so scd keeps no
 * session open and a removed token shows as an error on the next use, not a stale handle.
 *
 * Wrapping is C_Encrypt / C_Decrypt with CKM_AES_GCM (12-byte IV, 128-bit tag, the AAD of
 * keywrap.h) producing the same blob as a soft token, with token type 2. The PUK of a PKCS#11
 * token is its SO PIN.
 *
 * Why C_Encrypt and not C_WrapKey: the container key is data that must come back out (it goes
 * into the kernel), not a key object to import; and SoftHSM offers GCM for encrypt/decrypt only
 * (C_WrapKey with CKM_AES_GCM: CKR_MECHANISM_INVALID).
 *
 * What SoftHSM 2.6.1 (Debian 12) does, as measured:
 *   - CKM_AES_GCM: keys of 16..32 bytes, encrypt/decrypt; IVs of 1..16 bytes and tags of 96
 *     and 128 bits all accepted. CK_GCM_PARAMS only in the v2.40-errata layout with ulIvBits
 *     (p11-kit's header has it); the older five-field layout gets CKR_ARGUMENTS_BAD.
 *   - A wrong GCM tag is CKR_GENERAL_ERROR, not CKR_ENCRYPTED_DATA_INVALID.
 *   - C_Decrypt wants room for ciphertext + tag (80 bytes) although it returns 64.
 *   - C_GetMechanismInfo(CKM_AES_GCM) ORs its flags into the caller's structure instead of
 *     setting them: zero it first.
 *   - It has no PIN lockout of its own: our counters are the only limit.
 *   - Also offered: CKM_AES_KEY_GEN, CKM_AES_KEY_WRAP(_PAD), AES-CBC/CTR/ECB/CMAC. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <p11-kit/pkcs11.h>

#include "cleanup.h"
#include "error.h"
#include "keywrap.h"
#include "p11_module.h"
#include "secmem.h"

#define P11_KEK_LABEL_PREFIX "trustme:"

struct p11_config {
    const char *module; /* absolute path of the module */
    const char *label; /* the token's label, or NULL */
    const char *serial; /* the token's serial number, or NULL; at least one of the two */
};

struct p11 {
    struct p11_module mod;
    CK_FUNCTION_LIST_PTR f; /* mod.f */
    bool have_session;
    bool logged_in;
    CK_SESSION_HANDLE session;
    CK_SLOT_ID slot;
    char token_label[P11_LABEL_MAX + 1]; /* for messages */
};

/* Load the module, initialise it, find the one token that matches cfg, open a R/W session.
 * -ENOENT: no such module file, -ELIBBAD: not a PKCS#11 module, -ENODEV: no matching token,
 * -ENOTUNIQ: several match. */
int p11_open(const struct p11_config *cfg, struct p11 **ret, tm_err *err);
void p11_close(struct p11 *p);
static inline void p11_closep(struct p11 **p)
{
    p11_close(*p);
}
#define _cleanup_p11_ _cleanup_(p11_closep)

/* C_Login as user (so = false) or SO. -EACCES: the token says the PIN is wrong
 * (CKR_PIN_INCORRECT, CKR_PIN_LEN_RANGE); -EPERM: the token itself locked it (CKR_PIN_LOCKED). */
int p11_login(struct p11 *p, bool so, const char *pin, tm_err *err);

/* The container's KEK object (needs a user login: it is private). -ENOKEY: none,
 * -ENOTUNIQ: several. */
int p11_find_kek(struct p11 *p, const char *uuid, CK_OBJECT_HANDLE *ret, tm_err *err);
/* Generate it; -EEXIST if the token already holds one for this UUID. */
int p11_create_kek(struct p11 *p, const char *uuid, tm_err *err);
int p11_destroy_kek(struct p11 *p, const char *uuid, tm_err *err);

int p11_wrap(struct p11 *p, const char *uuid, const struct secret *key, bool device_bound,
             uint8_t blob[KEYWRAP_BLOB_LEN], tm_err *err);
/* -EBADMSG: the blob does not authenticate under this token's KEK. */
int p11_unwrap(struct p11 *p, const char *uuid, const uint8_t *blob, size_t len, bool device_bound,
               struct secret **ret_key, tm_err *err);

/* C_SetPIN after a user login. */
int p11_set_pin(struct p11 *p, const char *old_pin, const char *new_pin, tm_err *err);
/* C_InitPIN after an SO login: sets a new user PIN (and clears the token's own lock). */
int p11_init_pin(struct p11 *p, const char *new_pin, tm_err *err);
