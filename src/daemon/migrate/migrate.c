/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "migrate.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "container.h"
#include "fileio.h"
#include "hex.h"
#include "log.h"

#define LOCK_MAX 4096

static void lock_path(const struct container *c, char out[PATH_MAX])
{
    char dir[PATH_MAX - 16];
    container_data_dir(c, dir, sizeof(dir));
    snprintf(out, PATH_MAX, "%s/migrating", dir);
}

bool migrate_locked(const struct container *c)
{
    char p[PATH_MAX];
    struct stat st;
    lock_path(c, p);
    return lstat(p, &st) == 0 || errno != ENOENT;
}

int migrate_lock_read(const struct container *c, struct migrate_lock *ret, tm_err *err)
{
    char p[PATH_MAX];
    lock_path(c, p);
    _cleanup_free_ char *text = NULL;
    size_t len = 0;
    *ret = (struct migrate_lock){0};
    int r = read_file(p, LOCK_MAX, &text, &len, err);
    if (r < 0)
        return r;
    char state[16], spki_hex[2 * MIGRATE_SPKI_MAX + 1];
    if (sscanf(text, "state %15s\nbundle %32s\noffer %32s\nak %1024s\n", state, ret->bundle_id, ret->offer_id,
               spki_hex) != 4 ||
        strlen(spki_hex) % 2 || strlen(spki_hex) / 2 > MIGRATE_SPKI_MAX ||
        tm_hex_decode_str(spki_hex, ret->ak_spki, strlen(spki_hex) / 2, 0, err) < 0)
        return tm_err_set(err, EBADMSG, "%s does not parse", p);
    ret->ak_spki_len = strlen(spki_hex) / 2;
    const char *path = strstr(text, "\npath /");
    if (path) {
        path += 6;
        size_t n = strcspn(path, "\n");
        if (n < sizeof(ret->path))
            memcpy(ret->path, path, n);
    }
    const char *digest = strstr(text, "\ndigest ");
    if (digest && strspn(digest + 8, "0123456789abcdef") == 64)
        memcpy(ret->digest, digest + 8, 64);
    ret->exported = strcmp(state, "exported") == 0;
    return 0;
}

int migrate_lock_write(const struct container *c, const struct migrate_lock *l, tm_err *err)
{
    char p[PATH_MAX], spki_hex[2 * MIGRATE_SPKI_MAX + 1];
    _cleanup_free_ char *text = malloc(LOCK_MAX);
    if (!text)
        return tm_err_set(err, ENOMEM, "out of memory");
    lock_path(c, p);
    tm_hex(l->ak_spki, l->ak_spki_len, spki_hex);
    int n = snprintf(text, LOCK_MAX, "state %s\nbundle %s\noffer %s\nak %s\npath %s\ndigest %s\n",
                     l->exported ? "exported" : "exporting", l->bundle_id, l->offer_id, spki_hex, l->path,
                     l->digest[0] ? l->digest : "-");
    if (n < 0 || n >= LOCK_MAX)
        return tm_err_set(err, ENAMETOOLONG, "the migration lock does not fit");
    int r = write_file_atomic(p, text, (size_t)n, 0600, err);
    if (r == 0)
        fsync_parent(p);
    return r;
}

int migrate_lock_remove(const struct container *c, tm_err *err)
{
    char p[PATH_MAX];
    lock_path(c, p);
    if (unlink(p) < 0 && errno != ENOENT)
        return tm_err_sys(err, "cannot remove %s", p);
    fsync_parent(p);
    return 0;
}

void migrate_recover(struct container *c)
{
    struct migrate_lock l;
    tm_err err = {0};
    char part[PATH_MAX + 8];
    if (migrate_lock_read(c, &l, &err) < 0 || !l.path[0])
        return;
    snprintf(part, sizeof(part), "%s.part", l.path);
    if (l.exported) {
        struct stat st;
        if (lstat(l.path, &st) < 0 && errno == ENOENT &&
            renameat2(AT_FDCWD, part, AT_FDCWD, l.path, RENAME_NOREPLACE) == 0) {
            fsync_parent(l.path);
            log_warn("container %s: bundle %s: the interrupted export's rename done", c->uuid, l.path);
        }
        return;
    }
    if (unlink(part) < 0 && errno != ENOENT) {
        log_warn("container %s: cannot remove %s: %m; the container stays locked", c->uuid, part);
        return;
    }
    fsync_parent(part);
    if (migrate_lock_remove(c, &err) < 0) {
        log_warn("container %s: %s", c->uuid, err.msg);
        return;
    }
    daemon_audit(c->d, "migrate.abort", "ok", c, "trustmed",
                 "an export killed before its bundle was complete: %s removed, the lock released", part);
}

int migrate_text(const char *kind, const char *bundle_id, const char *offer_id, const char *uuid, const char *check,
                 const char *digest, char *out, size_t size)
{
    int n = snprintf(out, size, "%s\nbundle %s\noffer %s\nuuid %s\n%s%s%s%s%s%s", kind, bundle_id, offer_id, uuid,
                     check ? "check " : "", check ? check : "", check ? "\n" : "", digest ? "digest " : "",
                     digest ? digest : "", digest ? "\n" : "");
    return n > 0 && (size_t)n < size ? n : -EOVERFLOW;
}

int migrate_sig_der(const uint8_t sig[64], uint8_t **ret)
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
    int der_len = -1;
    *ret = NULL;
    if (es && r && s && ECDSA_SIG_set0(es, r, s) == 1) {
        r = s = NULL;
        der_len = i2d_ECDSA_SIG(es, ret);
    }
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return der_len;
}

int migrate_verify(const uint8_t *spki, size_t spki_len, const char *text, const uint8_t *sig, size_t sig_len,
                   tm_err *err)
{
    if (sig_len != 64)
        return tm_err_set(err, EBADMSG, "receipt signature: %zu bytes, not r || s", sig_len);
    const uint8_t *p = spki;
    EVP_PKEY *key = d2i_PUBKEY(NULL, &p, (long)spki_len);
    uint8_t *der = NULL;
    int der_len = key ? migrate_sig_der(sig, &der) : -1, ok = 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (der_len > 0 && md && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
        EVP_DigestVerifyUpdate(md, MIGRATE_SIGN_TAG, sizeof(MIGRATE_SIGN_TAG)) == 1 &&
        EVP_DigestVerifyUpdate(md, text, strlen(text)) == 1)
        ok = EVP_DigestVerifyFinal(md, der, (size_t)der_len) == 1;
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    EVP_PKEY_free(key);
    return ok ? 0
              : tm_err_set(err, EBADMSG,
                           "receipt signature: not the target AK's signature over this bundle, offer and container");
}
