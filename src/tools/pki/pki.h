/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme-pki: the development PKI of docs/PKI.md. Declarations shared by the verbs.
 *
 * Every function that can fail follows error.h: it returns a negative errno value and fills
 * the caller's tm_err. The verbs (cmd_*.c) turn that into an exit code: 0 ok, 1 failure,
 * 2 usage error. */
#pragma once

#include <jansson.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <time.h>

#include "error.h"
#include "ossl.h"
#include "p11_module.h"

#define EXIT_USAGE 2
#define SOFTHSM_MODULE "/usr/lib/softhsm/libsofthsm2.so"

OSSL_DEFINE_FREEP(X509_NAME, X509_NAME_free)
OSSL_DEFINE_FREEP(X509_REQ, X509_REQ_free)
OSSL_DEFINE_FREEP(X509_CRL, X509_CRL_free)
OSSL_DEFINE_FREEP(ASN1_INTEGER, ASN1_INTEGER_free)
OSSL_DEFINE_FREEP(ASN1_TIME, ASN1_TIME_free)
OSSL_DEFINE_FREEP(BIGNUM, BN_free)

/* --- AK enrollment through credential activation (enroll.c, docs/ATTESTATION.md) --- */

#include <tss2/tss2_tpm2_types.h>

struct enroll_bundle {
    X509_REQ *csr;
    TPMT_PUBLIC ak_public;
    uint8_t ak_public_raw[sizeof(TPMT_PUBLIC)];
    size_t ak_public_len;
    STACK_OF(X509) * ek_chain; /* the EK certificate first */
    EVP_PKEY *ek; /* after enroll_check: the EK (the certificate's key) */
    uint8_t ak_name[34]; /* after enroll_check: 000b || SHA-256(TPMT_PUBLIC) */
};
/* `trustme device csr`'s output: the CSR, the AK's TPMT_PUBLIC, the EK certificate chain. A
 * bundle without the last two (an ordinary CSR) is refused: no proof of a TPM. */
int enroll_read_bundle(const char *path, struct enroll_bundle *b, tm_err *err);
/* The same from in (the bundle comes from the device: untrusted); path names it in messages.
 * tests/fuzz/fuzz_enroll_bundle.c runs it on arbitrary bytes. */
int enroll_parse_bundle(BIO *in, const char *path, struct enroll_bundle *b, tm_err *err);
void enroll_bundle_free(struct enroll_bundle *b);
/* The EK certificate chains to one of anchors and is for an ECC P-256 key; the AK is fixedTPM
 * fixedParent sensitiveDataOrigin restricted sign (not decrypt) ECC P-256 with nameAlg SHA-256;
 * the CSR's self-signature verifies and its key is the AK's. Sets b->ek and b->ak_name. */
/* crls: the manufacturer CAs' CRLs (--ek-crl), or NULL: with them every CA of the EK's chain
 * needs its CRL and a revoked EK certificate is refused. */
int enroll_check(struct enroll_bundle *b, STACK_OF(X509) * anchors, STACK_OF(X509_CRL) * crls, tm_err *err);
/* TPM2_MakeCredential in software for an ECC P-256 EK (template L-2: SHA-256, AES-128-CFB):
 * blob (TPM2B_ID_OBJECT, <= 128 bytes) and secret (TPM2B_ENCRYPTED_SECRET, <= 128 bytes),
 * TPM-marshalled. */
int enroll_make_credential(EVP_PKEY *ek, const uint8_t ak_name[34], const uint8_t cred[32], uint8_t *blob,
                           size_t *blob_len, uint8_t *secret, size_t *secret_len, tm_err *err);
/* Write cert encrypted under a fresh credential made for ek and ak_name, as PEM blocks. */
int enroll_write(BIO *out, EVP_PKEY *ek, const uint8_t ak_name[34], X509 *cert, tm_err *err);

/* `trustme device csr --tls`'s bundle (enroll_tls.c): the TLS key's request, its TPMT_PUBLIC,
 * the AK's TPM2_Certify of it for this request, the AK certificate, which device_ca must have
 * issued. The request (its key: the certified TPM key) in *ret; anything else -EKEYREJECTED. */
int enroll_tls_read(const char *path, X509 *device_ca, X509_REQ **ret, tm_err *err);
/* --- the vTPM-issuing key's request (vtpm_issuer.c, docs/VTPM.md "EK certificates") --- */

/* Check the bundle at path (`trustme device csr --vtpm-issuer`): its AK certificate issued by
 * device_ca and valid now, the AK's TPM2_Certify of the issuing key over SHA-256 of the request,
 * the key's attributes (a TPM-bound unrestricted ECDSA P-256 signing key without policy) and that
 * it is the request's key. The request, for issuing. */
int vtpm_issuer_check(const char *path, X509 *device_ca, X509_REQ **ret_req, tm_err *err);

/* --- algorithms (keys.c) --- */

enum pki_alg { PKI_ALG_ECDSA_P256 = 1, PKI_ALG_RSA_PSS_3072 = 2 };
int pki_alg_parse(const char *name, enum pki_alg *ret);
const char *pki_alg_name(enum pki_alg alg);

/* --- secrets (secret.c): passphrases and PINs, from a file or the terminal --- */

/* Read a secret: the first line of file (without its line end), or, if file is NULL, typed on
 * /dev/tty without echo after prompt (twice if confirm). An empty secret is refused. */
int secret_read(const char *file, const char *prompt, bool confirm, char **ret, tm_err *err);
void secret_text_freep(char **s); /* cleanses, then frees */

/* --- software keys (keys.c) --- */

int key_generate(enum pki_alg alg, EVP_PKEY **ret, tm_err *err);
/* PKCS#8, encrypted with AES-256-CBC under a scrypt-derived key, PEM; a new file of mode 0600
 * in dirfd (never replacing one), fsynced. */
int key_write_encrypted(int dirfd, const char *name, EVP_PKEY *key, const char *pass, tm_err *err);
/* Whether the PEM key file is an encrypted PKCS#8 key ("ENCRYPTED PRIVATE KEY") or a plain one
 * ("PRIVATE KEY"); anything else (legacy PEM encryption, no key) is an error. */
int key_file_kind(const char *path, bool *ret_encrypted, tm_err *err);
/* pass NULL for a plain key. */
int key_read(const char *path, const char *pass, EVP_PKEY **ret, tm_err *err);

/* --- PKCS#11 URIs (p11uri.c: p11-kit's parser, RFC 7512, and what this tool accepts) --- */

#define P11URI_FIELD_MAX 128
struct p11uri {
    char token[P11_LABEL_MAX + 1]; /* token label; required */
    char serial[P11_SERIAL_MAX + 1]; /* token serial number, or "" */
    char object[P11URI_FIELD_MAX]; /* key label */
    unsigned char id[64]; /* CKA_ID */
    size_t id_len;
    char type[16]; /* "private" or "" */
    char module_path[PATH_MAX];
};
bool p11uri_is(const char *s);
int p11uri_parse(const char *s, struct p11uri *u, tm_err *err);
/* "pkcs11:serial=..;token=..;id=%..;object=..;type=private" (no module-path; the order is
 * p11-kit's); -ENAMETOOLONG if too long. */
int p11uri_format(const struct p11uri *u, char *out, size_t size);

/* --- keys on a PKCS#11 token (p11key.c) --- */

struct p11tok;
/* The token is found by label and (if not NULL) serial number (src/scd/p11_module.h). */
int p11tok_open(const char *module, const char *token_label, const char *serial, const char *pin, bool rw,
                struct p11tok **ret, tm_err *err);
/* Logs out, closes, unloads; objects made by p11tok_generate and not kept are destroyed first.
 * Keys from this token must be freed before. */
void p11tok_close(struct p11tok *t);
static inline void p11tok_closep(struct p11tok **t)
{
    if (*t)
        p11tok_close(*t);
}
/* A non-extractable, sensitive key pair made on the token, labelled label, with CKA_ID id; the
 * returned EVP_PKEY signs through the token. */
int p11tok_generate(struct p11tok *t, enum pki_alg alg, const char *label, const unsigned char *id, size_t id_len,
                    EVP_PKEY **ret, tm_err *err);
/* The objects generated so far stay on the token when it is closed. */
void p11tok_keep(struct p11tok *t);
int p11tok_load(struct p11tok *t, const struct p11uri *u, EVP_PKEY **ret, tm_err *err);

/* --- where keys come from (keyring.c): files or a token, each secret asked for once --- */

/* The options of every verb that signs: where the keys' secrets come from. Their codes lie above
 * any verb's own (which start at 256). */
enum { KEYRING_OPT_PASS = 1000, KEYRING_OPT_PIN, KEYRING_OPT_MODULE };
#define KEYRING_OPTIONS                                              \
    {"passphrase-file", required_argument, NULL, KEYRING_OPT_PASS},  \
        {"pin-file", required_argument, NULL, KEYRING_OPT_PIN},      \
    {                                                                \
        "pkcs11-module", required_argument, NULL, KEYRING_OPT_MODULE \
    }

struct keyring {
    const char *passphrase_file;
    const char *pin_file;
    const char *module; /* --pkcs11-module; NULL = the URI's module-path, else SoftHSM */
    char *pass;
    char *pin;
    struct p11tok *tok;
    char tok_label[P11URI_FIELD_MAX];
};
/* Takes getopt_long's option c (and its arg) if it is one of KEYRING_OPTIONS; false if not. */
bool keyring_option(struct keyring *kr, int c, const char *arg);
/* spec is a key file or a pkcs11: URI. A key file of the PKI (base_dir given, relative paths
 * from there) must be encrypted; a key given on the command line (base_dir NULL) may also be a
 * plain PKCS#8 file, such as `openssl req -nodes` makes for an extra test signer. */
int keyring_load(struct keyring *kr, const char *spec, const char *base_dir, EVP_PKEY **ret, tm_err *err);
void keyring_done(struct keyring *kr);

/* --- certificates and CRLs (cert.c) --- */

/* PROFILE_GUESTOS_CA: a sub-CA marked for GuestOS signing (VERIFY_GUESTOS_CA_POLICY_OID, the
 * only kind of CA a device registers as a GuestOS Signing CA). */
/* PROFILE_GENERAL_ROOT_CA / PROFILE_DEVICE_CA: one level more below them than the other root and
 * sub-CAs, for the vTPM issuers the Device CA certifies (PROFILE_VTPM_ISSUER: a CA for vTPM EK
 * certificates only, marked with TM_OID_VTPM_ISSUER; docs/VTPM.md "EK certificates"). */
enum cert_profile {
    PROFILE_ROOT_CA,
    PROFILE_SUB_CA,
    PROFILE_SIGNING,
    PROFILE_DEVICE,
    PROFILE_EK,
    PROFILE_GUESTOS_CA,
    PROFILE_GENERAL_ROOT_CA,
    PROFILE_DEVICE_CA,
    PROFILE_VTPM_ISSUER
};

struct cert_spec {
    const X509_NAME *subject;
    EVP_PKEY *pubkey;
    enum cert_profile profile;
    time_t not_before, not_after;
    X509 *issuer; /* NULL: self-signed (a root) */
    EVP_PKEY *issuer_key;
};
int cert_make(const struct cert_spec *spec, X509 **ret, tm_err *err);

struct revoked_entry {
    const char *serial_hex;
    time_t date;
    int reason; /* CRL_REASON_*, or CRL_REASON_NONE for no reason code */
};
int crl_make(X509 *ca, EVP_PKEY *ca_key, const struct revoked_entry *revoked, size_t n, long number, time_t this_update,
             time_t next_update, X509_CRL **ret, tm_err *err);

/* A digest-sign context for key: ECDSA with SHA-256, or RSA-PSS with SHA-256, MGF1-SHA-256 and
 * a 32-byte salt. */
int sign_ctx_new(EVP_PKEY *key, EVP_MD_CTX **ret, tm_err *err);
int name_make(const char *cn, X509_NAME **ret, tm_err *err);
void name_string(const X509_NAME *name, char *out, size_t size); /* RFC 2253 */
/* "YYYYMMDDHHMMSSZ" (GeneralizedTime, UTC) to time_t; -EINVAL if malformed. */
int time_parse(const char *s, time_t *ret);
void time_format(time_t t, char out[16]);
int revoke_reason_parse(const char *name, int *ret);
const char *revoke_reason_name(int reason);

/* --- files (files.c) --- */

int pem_read_cert(const char *path, X509 **ret, tm_err *err);
int pem_write_cert(BIO *bio, X509 *x, tm_err *err);
/* The contents of bio, written to path atomically (temp file, fsync, rename, fsync dir). */
int bio_write_atomic(BIO *bio, const char *path, mode_t mode, tm_err *err);

/* --- the PKI's layout (layout.c) --- */

struct pki_entity {
    const char *name; /* key in pki.json and base of the file names */
    const char *dir; /* software-signing or customer */
    const char *cn; /* subject common name */
    const char *issuer; /* entity name; NULL: a root */
    enum cert_profile profile;
};
extern const struct pki_entity pki_entities[];
extern const size_t pki_entities_count;
const struct pki_entity *pki_entity_find(const char *name);
/* The CA named by an option value: "software", "guestos", "device", or a CA's entity name. */
const struct pki_entity *pki_ca_find(const char *name);
bool pki_entity_is_ca(const struct pki_entity *e);

/* --- an existing PKI (pkidb.c) --- */

struct pki {
    char dir[PATH_MAX];
    int lock_fd; /* the directory, flock'ed while pki.json is read and rewritten */
    json_t *db; /* pki.json */
    enum pki_alg alg;
    char module[PATH_MAX]; /* PKCS#11 module, "" for key files */
};
int pki_open(const char *dir, struct pki *p, tm_err *err);
/* A new pki.json in memory for dir (init); module is NULL for key files. */
int pki_new(struct pki *p, const char *dir, enum pki_alg alg, const char *module, tm_err *err);
int pki_set_key(struct pki *p, const struct pki_entity *e, const char *spec, tm_err *err);
void pki_close(struct pki *p);
int pki_save(struct pki *p, tm_err *err);
/* Path of the entity's certificate. */
void pki_cert_path(const struct pki *p, const struct pki_entity *e, char out[PATH_MAX]);
int pki_load_cert(const struct pki *p, const struct pki_entity *e, X509 **ret, tm_err *err);
int pki_load_key(struct pki *p, struct keyring *kr, const struct pki_entity *e, EVP_PKEY **ret, tm_err *err);
int pki_record_issued(struct pki *p, const struct pki_entity *ca, X509 *cert, tm_err *err);
/* -EEXIST if the serial is already revoked. */
int pki_record_revoked(struct pki *p, const struct pki_entity *ca, X509 *cert, int reason, tm_err *err);
/* Sign a new CRL of ca (number incremented) and write crl/<ca>.pem and crls.pem. */
int pki_write_crl(struct pki *p, struct keyring *kr, const struct pki_entity *ca, int days, tm_err *err);
/* The same with a certificate and key in hand (init). */
int pki_write_crl_initial(struct pki *p, const struct pki_entity *ca, X509 *cert, EVP_PKEY *key, int days, tm_err *err);
/* crls.pem: every CA's current CRL in one file (what a verifier given CRLs needs). */
int pki_write_crl_bundle(const char *dir, tm_err *err);

/* --- the verbs --- */

int cmd_init(int argc, char **argv);
int cmd_sign(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_issue(int argc, char **argv);
int cmd_revoke(int argc, char **argv);
int cmd_crl(int argc, char **argv);
int cmd_rim(int argc, char **argv);
int cmd_ek_cert(int argc, char **argv);
int cmd_verify_ek(int argc, char **argv);

void pki_usage(FILE *out);
/* Print "trustme-pki: <verb>: <message>" to stderr; returns 1 (the failure exit code). */
int verb_fail(const char *verb, const tm_err *err);
/* Print a usage error; returns EXIT_USAGE. */
int usage_error(const char *verb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Parse a positive day count. */
int parse_days(const char *s, int *ret);

/* Create name in dirfd (O_EXCL) with mode, write mem's contents and fsync it (files.c). */
int pki_write_new(int dirfd, const char *name, BIO *mem, mode_t mode, tm_err *err);
