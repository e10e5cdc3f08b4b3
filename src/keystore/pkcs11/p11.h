/* SPDX-License-Identifier: GPL-2.0-or-later */
/* libtrustme-pkcs11: a PKCS#11 module for processes inside a container, in front of the
 * container's keystore socket (docs/KEYSTORE.md "PKCS#11"). Internal interfaces. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <p11-kit/pkcs11.h>

#include "keystore.pb-c.h"

typedef Trustme__Keystore__KsRequest KsRequest;
typedef Trustme__Keystore__KsResponse KsResponse;
typedef Trustme__Keystore__KsKeyCharacteristics KsKeyCharacteristics;
typedef Trustme__Keystore__KsOperationParams KsOperationParams;

#define P11_DEFAULT_SOCKET "/run/trustme/keystore.sock"
#define P11_MAX_KEYS 256 /* the keystore's own bound per container */
#define P11_MAX_SESSIONS 64
#define P11_ALIAS_MAX 64
#define P11_PIN_MAX 256
#define P11_IO_CHUNK (32u * 1024) /* the keystore's bound on one update */
#define P11_HELD_MAX 1024 /* a raw mechanism's input (a hash or a DigestInfo) */
#define P11_FRAME_MAX (1024u * 1024)

#define ALG_EC TRUSTME__KEYSTORE__KS_ALGORITHM__KS_ALG_EC
#define ALG_RSA TRUSTME__KEYSTORE__KS_ALGORITHM__KS_ALG_RSA
#define PURPOSE_SIGN TRUSTME__KEYSTORE__KS_PURPOSE__KS_PURPOSE_SIGN
#define PURPOSE_VERIFY TRUSTME__KEYSTORE__KS_PURPOSE__KS_PURPOSE_VERIFY
#define PURPOSE_DECRYPT TRUSTME__KEYSTORE__KS_PURPOSE__KS_PURPOSE_DECRYPT
#define DIGEST_NONE TRUSTME__KEYSTORE__KS_DIGEST__KS_DIGEST_NONE
#define DIGEST_SHA256 TRUSTME__KEYSTORE__KS_DIGEST__KS_DIGEST_SHA256
#define DIGEST_SHA384 TRUSTME__KEYSTORE__KS_DIGEST__KS_DIGEST_SHA384
#define DIGEST_SHA512 TRUSTME__KEYSTORE__KS_DIGEST__KS_DIGEST_SHA512
#define PAD_NONE TRUSTME__KEYSTORE__KS_PADDING__KS_PAD_NONE
#define PAD_PSS TRUSTME__KEYSTORE__KS_PADDING__KS_PAD_RSA_PSS
#define PAD_PKCS1 TRUSTME__KEYSTORE__KS_PADDING__KS_PAD_RSA_PKCS1
#define PAD_OAEP TRUSTME__KEYSTORE__KS_PADDING__KS_PAD_RSA_OAEP

/* ---- the link to the keystore (conn.c) ---- */
/* One request and its answer; *ret is freed with p11_response_free. CKR_DEVICE_ERROR when the
 * keystore cannot be reached (the next call connects again). */
CK_RV p11_call(KsRequest *req, KsResponse **ret);
void p11_response_free(KsResponse *resp);
void p11_conn_close(void);
/* Whether the keystore's socket is there: the slot's token. */
bool p11_token_present(void);
/* The PKCS#11 error for a keystore refusal. */
CK_RV p11_rv_of(int ks_error);

/* ---- keys as objects (objects.c) ---- */
struct p11_key {
    bool used, seen;
    char alias[P11_ALIAS_MAX + 1];
    int alg;
    unsigned bits;
    int64_t created;
    bool sign, decrypt, passphrase, imported;
    uint8_t *spki, *ec_point, *modulus, *exponent;
    size_t spki_len, ec_point_len, modulus_len, exponent_len;
    const uint8_t *ec_params;
    size_t ec_params_len;
};
extern struct p11_key p11_keys[P11_MAX_KEYS];

/* Private key i is handle 2i+1, its public key 2i+2. */
static inline CK_OBJECT_HANDLE p11_priv_handle(size_t i)
{
    return 2 * (CK_OBJECT_HANDLE)i + 1;
}
static inline CK_OBJECT_HANDLE p11_pub_handle(size_t i)
{
    return 2 * (CK_OBJECT_HANDLE)i + 2;
}
/* The key behind a handle, or NULL; *ret_private says which of its two objects. */
struct p11_key *p11_key_of(CK_OBJECT_HANDLE h, bool *ret_private);
/* Re-reads the keystore's list (EC and RSA keys become objects; secret keys do not). */
CK_RV p11_keys_refresh(void);
/* Adds (or updates) one key from its characteristics; *ret_index its slot. */
CK_RV p11_key_add(const KsKeyCharacteristics *ch, size_t *ret_index);
void p11_keys_clear(void);
/* One attribute of an object: CKR_OK with value and length set, CKR_ATTRIBUTE_SENSITIVE or
 * CKR_ATTRIBUTE_TYPE_INVALID. scratch holds values that are not stored. */
CK_RV p11_attr(const struct p11_key *k, bool priv, CK_ATTRIBUTE_TYPE type, CK_ULONG scratch[2], const void **ret_value,
               CK_ULONG *ret_len);
/* The OID (DER) of a named curve for CKA_EC_PARAMS, by size; and back. */
unsigned p11_curve_bits(const uint8_t *der, size_t len);

/* ---- mechanisms (mech.c) ---- */
struct p11_mech {
    CK_MECHANISM_TYPE type;
    int alg;
    int digest; /* DIGEST_NONE: the caller hashed (raw mechanisms) */
    int padding;
    CK_FLAGS flags;
    unsigned min_bits, max_bits;
};
const struct p11_mech *p11_mech_find(CK_MECHANISM_TYPE type);
size_t p11_mech_count(void);
const struct p11_mech *p11_mech_at(size_t i);
/* The digest a DigestInfo names (CKM_RSA_PKCS's input), with the hash's offset; DIGEST_NONE if
 * none of SHA-256/384/512. */
int p11_digestinfo(const uint8_t *in, size_t len, size_t *ret_hash_off);
size_t p11_digest_len(int digest);
int p11_digest_of_ckm(CK_MECHANISM_TYPE hash);
CK_RSA_PKCS_MGF_TYPE p11_mgf_of(int digest);
/* ECDSA's DER signature as PKCS#11's r || s, each n bytes. */
int p11_ecdsa_raw(const uint8_t *der, size_t der_len, size_t n, uint8_t *out);

/* ---- sessions (module.c) ---- */
enum { OP_NONE, OP_SIGN, OP_DECRYPT };
struct p11_op {
    int kind;
    size_t key;
    const struct p11_mech *mech;
    int digest, padding;
    bool prehashed, multipart, begun;
    uint64_t ks_handle;
    uint8_t held[P11_HELD_MAX];
    size_t held_len;
    uint8_t pass[P11_PIN_MAX];
    size_t pass_len;
    bool has_pass;
    uint8_t *result; /* a decryption's plaintext kept for a second call with a larger buffer */
    size_t result_len;
};
struct p11_session {
    CK_SESSION_HANDLE handle; /* 0: free */
    CK_FLAGS flags;
    bool finding;
    CK_OBJECT_HANDLE *found;
    size_t n_found, pos;
    struct p11_op op;
};
void p11_op_end(struct p11_op *op);
/* The passphrase to send for key k in this operation: the context-specific login's, else the
 * user PIN's, else none. */
void p11_op_passphrase(const struct p11_op *op, KsOperationParams *p);

/* ---- the module's state (module.c) ---- */
#include <pthread.h>
extern pthread_mutex_t p11_lock;
/* C_Initialize was called in this process (a forked child must call it again). */
bool p11_ready(void);
struct p11_session *p11_session_of(CK_SESSION_HANDLE h);
#define P11_LOCKED(expr)                                                 \
    do {                                                                 \
        pthread_mutex_lock(&p11_lock);                                   \
        CK_RV rv_ = p11_ready() ? (expr) : CKR_CRYPTOKI_NOT_INITIALIZED; \
        pthread_mutex_unlock(&p11_lock);                                 \
        return rv_;                                                      \
    } while (0)
/* Copies a value to a caller's buffer by PKCS#11's rules: NULL asks for the length,
 * a short buffer is CKR_BUFFER_TOO_SMALL with the length needed. */
CK_RV p11_give(const void *value, size_t len, CK_BYTE_PTR out, CK_ULONG_PTR out_len);
