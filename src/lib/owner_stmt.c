/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "owner_stmt.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "hex.h"
#include "uuid.h"

#define SIG_MAX 80

static const char *magic(enum owner_stmt_type t)
{
    return t == OWNER_STMT_OWNER     ? "trustme-vtpm-owner-v1"
           : t == OWNER_STMT_RELEASE ? "trustme-vtpm-release-v1"
                                     : "trustme-vtpm-refs-v1";
}

/* The next line, which must be "KEY VALUE": value copied to out (at most size - 1 chars). */
static int field(const char **p, const char *end, const char *key, char *out, size_t size, tm_err *err)
{
    const char *nl = memchr(*p, '\n', (size_t)(end - *p));
    size_t klen = strlen(key);
    if (!nl || (size_t)(nl - *p) <= klen + 1 || strncmp(*p, key, klen) != 0 || (*p)[klen] != ' ')
        return tm_err_set(err, EBADMSG, "expected the line \"%s ...\"", key);
    size_t vlen = (size_t)(nl - *p) - klen - 1;
    if (vlen >= size || memchr(*p + klen + 1, '\0', vlen))
        return tm_err_set(err, EBADMSG, "the %s is too long", key);
    memcpy(out, *p + klen + 1, vlen);
    out[vlen] = '\0';
    *p = nl + 1;
    return 0;
}

static int hex_value(const char *hex, uint8_t *out, size_t max, size_t *ret_len, const char *what, tm_err *err)
{
    size_t n = strlen(hex);
    if (n == 0 || n % 2 || n / 2 > max || tm_hex_decode(hex, n, out, n / 2, 0, NULL) < 0)
        return tm_err_set(err, EBADMSG, "the %s is not lower-case hex of at most %zu bytes", what, max);
    *ret_len = n / 2;
    return 0;
}

static void pkey_freep(EVP_PKEY **k)
{
    EVP_PKEY_free(*k);
}

/* A P-256 public key from its SubjectPublicKeyInfo. */
static EVP_PKEY *p256_key(const uint8_t *spki, size_t len)
{
    const unsigned char *p = spki;
    EVP_PKEY *k = d2i_PUBKEY(NULL, &p, (long)len);
    if (!k)
        return NULL;
    char group[32] = "";
    size_t glen = 0;
    if ((const uint8_t *)p != spki + len || EVP_PKEY_get_base_id(k) != EVP_PKEY_EC ||
        !EVP_PKEY_get_utf8_string_param(k, "group", group, sizeof(group), &glen) || strcmp(group, "prime256v1") != 0) {
        EVP_PKEY_free(k);
        return NULL;
    }
    return k;
}

int owner_stmt_parse(const char *text, size_t len, const uint8_t *key, size_t key_len, struct owner_stmt *ret,
                     tm_err *err)
{
    if (len > OWNER_STMT_MAX || memchr(text, '\0', len))
        return tm_err_set(err, EBADMSG, "not a statement of at most %d bytes", OWNER_STMT_MAX);
    struct owner_stmt s = {0};
    const char *p = text, *end = text + len;
    size_t mlen;
    if (len > 23 && memcmp(text, "trustme-vtpm-owner-v1\n", 22) == 0) {
        s.type = OWNER_STMT_OWNER;
        mlen = 22;
    } else if (len > 24 && memcmp(text, "trustme-vtpm-release-v1\n", 24) == 0) {
        s.type = OWNER_STMT_RELEASE;
        mlen = 24;
    } else if (len > 21 && memcmp(text, "trustme-vtpm-refs-v1\n", 21) == 0) {
        s.type = OWNER_STMT_REFS;
        mlen = 21;
    } else {
        return tm_err_set(err, EBADMSG, "not a vTPM owner or release statement");
    }
    p += mlen;
    char buf[2 * OWNER_KEY_MAX + 2];
    size_t n;
    int r;
    if ((r = field(&p, end, "container", s.container, sizeof(s.container), err)) < 0)
        return r;
    if (!tm_uuid_valid(s.container))
        return tm_err_set(err, EBADMSG, "the container is not a UUID");
    if ((r = field(&p, end, "ek", buf, sizeof(buf), err)) < 0 ||
        (r = hex_value(buf, s.ek, sizeof(s.ek), &n, "ek", err)) < 0)
        return r;
    if (n != sizeof(s.ek) || s.ek[0] != 0x00 || s.ek[1] != 0x0b)
        return tm_err_set(err, EBADMSG, "the ek is not a SHA-256 TPM name");
    if (s.type == OWNER_STMT_OWNER) {
        if ((r = field(&p, end, "kind", buf, sizeof(buf), err)) < 0)
            return r;
        if (strcmp(buf, "mandatory") != 0 && strcmp(buf, "discretionary") != 0)
            return tm_err_set(err, EBADMSG, "the kind is neither mandatory nor discretionary");
        s.mandatory = strcmp(buf, "mandatory") == 0;
        if ((r = field(&p, end, "key", buf, sizeof(buf), err)) < 0 ||
            (r = hex_value(buf, s.key, sizeof(s.key), &s.key_len, "key", err)) < 0)
            return r;
        key = s.key;
        key_len = s.key_len;
    } else if (!key) {
        return tm_err_set(err, EKEYREJECTED, "no owner key to check the statement with");
    }
    while (s.type == OWNER_STMT_REFS && (size_t)(end - p) > 6 && memcmp(p, "value ", 6) == 0) {
        char v[TM_EVENT_TYPE_MAX + 70], *sp;
        if ((r = field(&p, end, "value", v, sizeof(v), err)) < 0)
            return r;
        if (s.nrefs == OWNER_REFS_MAX)
            return tm_err_set(err, EBADMSG, "more than %d values", OWNER_REFS_MAX);
        struct owner_ref *ref = &s.refs[s.nrefs++];
        if (!(sp = strchr(v, ' ')) || (size_t)(sp - v) > TM_EVENT_TYPE_MAX || sp == v || strlen(sp + 1) != 64 ||
            tm_hex_decode(sp + 1, 64, ref->sha256, 32, 0, NULL) < 0)
            return tm_err_set(err, EBADMSG, "a value is not \"value TYPE SHA256-HEX\"");
        memcpy(ref->type, v, (size_t)(sp - v));
        ref->type[sp - v] = '\0';
    }
    size_t signed_len = (size_t)(p - text);
    uint8_t sig[SIG_MAX];
    size_t sig_len;
    if ((r = field(&p, end, "signature", buf, sizeof(buf), err)) < 0 ||
        (r = hex_value(buf, sig, sizeof(sig), &sig_len, "signature", err)) < 0)
        return r;
    if (p != end)
        return tm_err_set(err, EBADMSG, "bytes after the signature");
    _cleanup_(pkey_freep) EVP_PKEY *k = p256_key(key, key_len);
    if (!k)
        return tm_err_set(err, EBADMSG, "the owner key is not an ECDSA P-256 public key");
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    bool ok = md && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, k) == 1 &&
              EVP_DigestVerify(md, sig, sig_len, (const uint8_t *)text, signed_len) == 1;
    EVP_MD_CTX_free(md);
    if (!ok)
        return tm_err_set(err, EKEYREJECTED, "the %s statement's signature does not verify with the owner's key",
                          s.type == OWNER_STMT_OWNER ? "owner" : "release");
    *ret = s;
    return 0;
}

int owner_stmt_sign(const struct owner_stmt *s, const char *key_path, char **ret, size_t *ret_len, tm_err *err)
{
    FILE *f = fopen(key_path, "re");
    if (!f)
        return tm_err_sys(err, "%s", key_path);
    _cleanup_(pkey_freep) EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (!k)
        return tm_err_set(err, EINVAL, "%s: not a PEM private key (without a passphrase)", key_path);
    uint8_t *spki = NULL;
    int spki_len = i2d_PUBKEY(k, &spki);
    _cleanup_(pkey_freep) EVP_PKEY *pub = spki_len > 0 ? p256_key(spki, (size_t)spki_len) : NULL;
    if (!pub || spki_len > OWNER_KEY_MAX) {
        OPENSSL_free(spki);
        return tm_err_set(err, EINVAL, "%s: the owner key must be ECDSA P-256", key_path);
    }
    char ek[69], spki_hex[2 * OWNER_KEY_MAX + 1];
    tm_hex(s->ek, sizeof(s->ek), ek);
    tm_hex(spki, (size_t)spki_len, spki_hex);
    OPENSSL_free(spki);
    char body[OWNER_STMT_MAX];
    int n = s->type == OWNER_STMT_OWNER
                ? snprintf(body, sizeof(body), "%s\ncontainer %s\nek %s\nkind %s\nkey %s\n", magic(s->type),
                           s->container, ek, s->mandatory ? "mandatory" : "discretionary", spki_hex)
                : snprintf(body, sizeof(body), "%s\ncontainer %s\nek %s\n", magic(s->type), s->container, ek);
    for (size_t i = 0; s->type == OWNER_STMT_REFS && i < s->nrefs && i < OWNER_REFS_MAX; i++) {
        char hex[65];
        tm_hex(s->refs[i].sha256, 32, hex);
        n += snprintf(body + n, sizeof(body) - (size_t)n, "value %s %s\n", s->refs[i].type, hex);
        if ((size_t)n >= sizeof(body))
            return tm_err_set(err, E2BIG, "too many values");
    }
    uint8_t sig[SIG_MAX];
    size_t sig_len = sizeof(sig);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    bool ok = md && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, k) == 1 &&
              EVP_DigestSign(md, sig, &sig_len, (const uint8_t *)body, (size_t)n) == 1;
    EVP_MD_CTX_free(md);
    if (!ok)
        return tm_err_set(err, EIO, "signing failed");
    char sig_hex[2 * SIG_MAX + 1];
    tm_hex(sig, sig_len, sig_hex);
    size_t total = (size_t)n + strlen("signature \n") + strlen(sig_hex);
    char *out = malloc(total + 1);
    if (!out)
        return tm_err_set(err, ENOMEM, "out of memory");
    snprintf(out, total + 1, "%ssignature %s\n", body, sig_hex);
    *ret = out;
    *ret_len = total;
    return 0;
}
