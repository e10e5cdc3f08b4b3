/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "bundle.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "crypto.h"
#include "fileio.h"
#include "hex.h"
#include "test_hooks.h"

#define HKDF_INFO "trustme migrate bundle v1"

static void put32(uint8_t out[4], uint32_t v)
{
    out[0] = (uint8_t)(v >> 24);
    out[1] = (uint8_t)(v >> 16);
    out[2] = (uint8_t)(v >> 8);
    out[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t in[4])
{
    return (uint32_t)in[0] << 24 | (uint32_t)in[1] << 16 | (uint32_t)in[2] << 8 | in[3];
}

static int write_all(int fd, const void *buf, size_t len, tm_err *err)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return tm_err_sys(err, "cannot write the bundle");
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int read_at(int fd, void *buf, size_t len, uint64_t off, tm_err *err)
{
    uint8_t *p = buf;
    while (len) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return tm_err_sys(err, "cannot read the bundle");
        if (n == 0)
            return tm_err_set(err, EBADMSG, "bundle format: the file ends early (truncated)");
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

static int manifest_text(const struct bundle_header *h, char **ret, size_t *ret_len, tm_err *err)
{
    char *buf = malloc(BUNDLE_MANIFEST_MAX);
    if (!buf)
        return tm_err_set(err, ENOMEM, "out of memory");
    int n = snprintf(buf, BUNDLE_MANIFEST_MAX,
                     "trustme-migrate-bundle 1\nbundle %s\noffer %s\ntarget-ak %s\nuuid %s\nname %s\nguestos %s\n"
                     "uid-base %u\n",
                     h->bundle_id, h->offer_id, h->target_ak, h->uuid, h->name, h->guestos, h->uid_base);
    for (size_t i = 0; i < h->nparts && n > 0 && n < BUNDLE_MANIFEST_MAX; i++) {
        char hex[65];
        tm_hex(h->parts[i].sha256, 32, hex);
        n += snprintf(buf + n, BUNDLE_MANIFEST_MAX - (size_t)n, "part %s %" PRIu64 " %s\n", h->parts[i].name,
                      h->parts[i].size, hex);
    }
    for (size_t i = 0; i < h->nanchors && n > 0 && n < BUNDLE_MANIFEST_MAX; i++) {
        char hex[2 * BUNDLE_ANCHOR_VALUE_MAX + 1];
        tm_hex(h->anchors[i].value, h->anchors[i].len, hex);
        n += snprintf(buf + n, BUNDLE_MANIFEST_MAX - (size_t)n, "anchor %s %s\n", h->anchors[i].kind, hex);
    }
    if (h->has_tp_index && n > 0 && n < BUNDLE_MANIFEST_MAX) {
        char hex[2 * BUNDLE_TP_INDEX_MAX + 1];
        tm_hex(h->tp_index, h->tp_index_len, hex);
        n += snprintf(buf + n, BUNDLE_MANIFEST_MAX - (size_t)n, "tp-index %s\n", h->tp_index_len ? hex : "-");
    }
    for (size_t i = 0; i < h->ntp && n > 0 && n < BUNDLE_MANIFEST_MAX; i++) {
        char hex[2 * BUNDLE_TP_VALUE_MAX + 1];
        tm_hex(h->tp[i].value, h->tp[i].len, hex);
        n += snprintf(buf + n, BUNDLE_MANIFEST_MAX - (size_t)n, "tp %s %s\n", h->tp[i].id, hex);
    }
    if (n <= 0 || n >= BUNDLE_MANIFEST_MAX) {
        free(buf);
        return tm_err_set(err, EOVERFLOW, "the manifest is too long");
    }
    *ret = buf;
    *ret_len = (size_t)n;
    return 0;
}

static int gcm(bool enc, const uint8_t *k, size_t k_len, const uint8_t iv[12], const char *aad, size_t aad_len,
               const uint8_t *in, size_t len, uint8_t *out, uint8_t tag[16], tm_err *err)
{
    uint8_t key[32];
    tm_hkdf_sha256(k, k_len, NULL, 0, (const uint8_t *)HKDF_INFO, strlen(HKDF_INFO), key, sizeof(key));
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int outl = 0, ok = ctx && EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, iv, enc ? 1 : 0) == 1 &&
                       EVP_CipherUpdate(ctx, NULL, &outl, (const uint8_t *)aad, (int)aad_len) == 1 &&
                       EVP_CipherUpdate(ctx, out, &outl, in, (int)len) == 1;
    if (ok && !enc)
        ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, tag) == 1;
    int fin = ok && EVP_CipherFinal_ex(ctx, out + outl, &outl) == 1;
    if (fin && enc)
        fin = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, tag) == 1;
    EVP_CIPHER_CTX_free(ctx);
    explicit_bzero(key, sizeof(key));
    if (!fin) {
        explicit_bzero(out, len);
        return tm_err_set(err, EBADMSG,
                          enc ? "cannot seal the bundle's keys"
                              : "bundle authentication: the GCM tag does not verify (the manifest, the wrapped key "
                                "or the sealed keys were altered, or the bundle is for another offer)");
    }
    return 0;
}

static int rsa_wrap(const uint8_t *spki, size_t spki_len, const uint8_t *k, size_t k_len, uint8_t *out, size_t *out_len,
                    tm_err *err)
{
    const uint8_t *p = spki;
    EVP_PKEY *key = d2i_PUBKEY(NULL, &p, (long)spki_len);
    if (!key || EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA || EVP_PKEY_get_bits(key) != 2048) {
        EVP_PKEY_free(key);
        return tm_err_set(err, EINVAL, "the migration key is not an RSA-2048 public key");
    }
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(key, NULL);
    int ok = ctx && EVP_PKEY_encrypt_init(ctx) == 1 && EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) == 1 &&
             EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256()) == 1 &&
             EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()) == 1 && EVP_PKEY_encrypt(ctx, out, out_len, k, k_len) == 1;
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(key);
    return ok ? 0 : tm_err_set(err, EIO, "RSA-OAEP to the migration key failed");
}

static int hash_file(int fd, uint8_t out[32], uint64_t *ret_size, tm_err *err)
{
    return tm_sha256_fd(fd, out, ret_size, NULL, NULL, err);
}

static void head_digest(const char *manifest, size_t manifest_len, const uint8_t *wrapped, size_t wrapped_len,
                        const uint8_t iv[12], const uint8_t *sealed, char out[65])
{
    struct tm_sha256_ctx c;
    uint8_t len4[4], md[32];
    tm_sha256_init(&c);
    put32(len4, (uint32_t)manifest_len);
    tm_sha256_update(&c, len4, 4);
    tm_sha256_update(&c, manifest, manifest_len);
    put32(len4, (uint32_t)wrapped_len);
    tm_sha256_update(&c, len4, 4);
    tm_sha256_update(&c, wrapped, wrapped_len);
    tm_sha256_update(&c, iv, 12);
    tm_sha256_update(&c, sealed, BUNDLE_SECRETS_LEN + 16);
    tm_sha256_final(&c, md);
    tm_hex(md, sizeof(md), out);
}

int bundle_write(const char *path, const char *dir, struct bundle_header *h, const uint8_t *key_spki,
                 size_t key_spki_len, const struct secret *secrets, tm_err *err)
{
    int fds[BUNDLE_PARTS_MAX];
    int r = 0;
    for (size_t i = 0; i < h->nparts; i++)
        fds[i] = -1;
    _cleanup_close_ int out = -1;
    _cleanup_free_ char *manifest = NULL;
    _cleanup_secret_ struct secret *k = NULL;
    size_t manifest_len = 0;
    for (size_t i = 0; i < h->nparts; i++) {
        char p[PATH_MAX];
        snprintf(p, sizeof(p), "%s/%s", dir, h->parts[i].name);
        if (h->parts[i].src)
            snprintf(p, sizeof(p), "%s", h->parts[i].src);
        if (h->parts[i].has_fd) {
            snprintf(p, sizeof(p), "%s", h->parts[i].name);
            if ((fds[i] = fcntl(h->parts[i].fd, F_DUPFD_CLOEXEC, 0)) >= 0 && lseek(fds[i], 0, SEEK_SET) < 0) {
                r = tm_err_sys(err, "cannot rewind %s", p);
                goto done;
            }
        } else {
            fds[i] = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        }
        if (fds[i] < 0) {
            r = tm_err_sys(err, "cannot open %s", p);
            goto done;
        }
        if ((r = hash_file(fds[i], h->parts[i].sha256, &h->parts[i].size, err)) < 0)
            goto done;
    }
    uint8_t wrapped[512], iv[12], sealed[BUNDLE_SECRETS_LEN + 16], len4[4];
    size_t wrapped_len = sizeof(wrapped);
    if (secrets->len != BUNDLE_SECRETS_LEN) {
        r = tm_err_set(err, EINVAL, "the keys to seal are %zu bytes", secrets->len);
        goto done;
    }
    if ((r = manifest_text(h, &manifest, &manifest_len, err)) < 0 || (r = secret_random(32, &k, err)) < 0 ||
        (r = secure_random(iv, sizeof(iv), err)) < 0 ||
        (r = rsa_wrap(key_spki, key_spki_len, k->data, k->len, wrapped, &wrapped_len, err)) < 0 ||
        (r = gcm(true, k->data, k->len, iv, manifest, manifest_len, secrets->data, secrets->len, sealed,
                 sealed + BUNDLE_SECRETS_LEN, err)) < 0)
        goto done;
    head_digest(manifest, manifest_len, wrapped, wrapped_len, iv, sealed, h->digest);
    if ((out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0) {
        r = tm_err_sys(err, "cannot create %s", path);
        goto done;
    }
    if ((r = write_all(out, BUNDLE_MAGIC, 8, err)) < 0)
        goto done;
    put32(len4, (uint32_t)manifest_len);
    if ((r = write_all(out, len4, 4, err)) < 0 || (r = write_all(out, manifest, manifest_len, err)) < 0)
        goto done;
    put32(len4, (uint32_t)wrapped_len);
    if ((r = write_all(out, len4, 4, err)) < 0 || (r = write_all(out, wrapped, wrapped_len, err)) < 0 ||
        (r = write_all(out, iv, sizeof(iv), err)) < 0 || (r = write_all(out, sealed, sizeof(sealed), err)) < 0)
        goto done;
    for (size_t i = 0; i < h->nparts; i++) {
        uint64_t left = h->parts[i].size;
        loff_t in_off = 0;
        while (left) {
            ssize_t n = copy_file_range(fds[i], &in_off, out, NULL, left > (1u << 30) ? (1u << 30) : left, 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && errno == EXDEV && h->parts[i].has_fd) {
                /* A part in memory (not a file system copy_file_range crosses): it is small. */
                uint8_t buf[4096];
                n = pread(fds[i], buf, left > sizeof(buf) ? sizeof(buf) : left, in_off);
                if (n > 0 && (r = write_all(out, buf, (size_t)n, err)) < 0)
                    goto done;
                if (n > 0)
                    in_off += n;
            }
            if (n <= 0) {
                r = n < 0 ? tm_err_sys(err, "cannot copy %s", h->parts[i].name)
                          : tm_err_set(err, EIO, "%s shrank while it was copied", h->parts[i].name);
                goto done;
            }
            left -= (uint64_t)n;
        }
        /* Killed with the bundle half written (its dir: the container's, where the test arms it). */
        test_crash_point(dir, "migrate-export-mid-write");
    }
    if (fsync(out) < 0) {
        r = tm_err_sys(err, "cannot sync %s", path);
        goto done;
    }
    r = 0;
done:
    for (size_t i = 0; i < h->nparts; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    if (r < 0 && out >= 0)
        (void)unlink(path);
    return r;
}

static int parse_hex_field(const char *line, const char *key, char *out, size_t hex_len, tm_err *err)
{
    size_t kl = strlen(key);
    if (strncmp(line, key, kl) != 0 || line[kl] != ' ' || strlen(line + kl + 1) != hex_len ||
        strspn(line + kl + 1, "0123456789abcdef") != hex_len)
        return tm_err_set(err, EBADMSG, "bundle format: manifest line \"%s\" expected", key);
    memcpy(out, line + kl + 1, hex_len + 1);
    return 0;
}

static int parse_text_field(const char *line, const char *key, char *out, size_t size, tm_err *err)
{
    size_t kl = strlen(key);
    if (strncmp(line, key, kl) != 0 || line[kl] != ' ' || strlen(line + kl + 1) >= size || !line[kl + 1])
        return tm_err_set(err, EBADMSG, "bundle format: manifest line \"%s\" expected", key);
    snprintf(out, size, "%s", line + kl + 1);
    return 0;
}

static bool component_ok(const char *n, size_t len, const char *alphabet)
{
    size_t k = 0;
    while (k < len && strchr(alphabet, n[k]))
        k++;
    return len > 0 && n[0] != '.' && k == len;
}

static bool part_name_ok(const char *n)
{
    /* Files of the container's own data dir: no path separators, no dot files. */
    if (!strchr(n, '/'))
        return n[0] && n[0] != '.' && strlen(n) < BUNDLE_PLAIN_NAME_MAX &&
               strspn(n, "abcdefghijklmnopqrstuvwxyz0123456789._-") == strlen(n);
    /* Or below one of the carried state's directories (bundle_carried_dir): "vtpm/" (the vTPM's
     * state) or "keystore/" (the keystore's key blobs, key index and secure store), at most four
     * components, none empty, none a dot file (so no "." or ".."). */
    if (strlen(n) >= BUNDLE_PART_NAME_MAX || !bundle_carried_dir(n))
        return false;
    static const char alpha[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";
    size_t depth = 0;
    for (const char *p = n;; depth++) {
        size_t len = strcspn(p, "/");
        if (depth == 4 || !component_ok(p, len, alpha))
            return false;
        if (!p[len])
            break;
        p += len + 1;
    }
    return depth > 0;
}

bool bundle_carried_dir(const char *name)
{
    return strncmp(name, "vtpm/", 5) == 0 || strncmp(name, "keystore/", 9) == 0;
}

static bool tp_id_ok(const char *id, size_t n)
{
    if (n == 0 || n > BUNDLE_TP_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z') || (id[i] >= '0' && id[i] <= '9') ||
              id[i] == '.' || id[i] == '_' || id[i] == '-'))
            return false;
    return true;
}

int bundle_tp_ids(const uint8_t *v, size_t len, char ids[BUNDLE_TP_MAX][BUNDLE_TP_ID_MAX + 1])
{
    int n = 0;
    for (size_t k = 0; k < len;) {
        const uint8_t *end = memchr(v + k, '\0', len - k);
        size_t l = end ? (size_t)(end - (v + k)) : 0;
        if (!end || n == BUNDLE_TP_MAX || !tp_id_ok((const char *)v + k, l))
            return -1;
        memcpy(ids[n], v + k, l);
        ids[n][l] = '\0';
        for (int i = 0; i < n; i++)
            if (strcmp(ids[i], ids[n]) == 0)
                return -1;
        n++;
        k += l + 1;
    }
    return n;
}

/* "tp-index HEX" (or "-": an empty index), once, before the "tp ID HEX" lines: the objects must
 * be exactly the ones it lists, in its order, at most the store's quota (a bundle brings no more
 * than the source could hold). */
static int parse_tp(const char *line, struct bundle_header *h, tm_err *err)
{
    char hex[2 * BUNDLE_TP_VALUE_MAX + 2];
    int end = 0;
    if (strncmp(line, "tp-index ", 9) == 0) {
        char ihex[2 * BUNDLE_TP_INDEX_MAX + 2];
        if (h->has_tp_index || h->ntp || sscanf(line, "tp-index %257s%n", ihex, &end) != 1 || line[end])
            return tm_err_set(err, EBADMSG, "bundle format: a bad tp-index line");
        h->has_tp_index = true;
        if (strcmp(ihex, "-") == 0)
            return 0;
        char ids[BUNDLE_TP_MAX][BUNDLE_TP_ID_MAX + 1];
        size_t len = strlen(ihex) / 2;
        if (strlen(ihex) % 2 || len > BUNDLE_TP_INDEX_MAX || tm_hex_decode_str(ihex, h->tp_index, len, 0, err) < 0)
            return tm_err_set(err, EBADMSG,
                              "bundle format: the tamper-proof index is malformed or lists more than the quota of %d "
                              "objects",
                              BUNDLE_TP_MAX);
        h->tp_index_len = len;
        if (bundle_tp_ids(h->tp_index, len, ids) < 0)
            return tm_err_set(err, EBADMSG,
                              "bundle format: the tamper-proof index is malformed or lists more than the quota of %d "
                              "objects",
                              BUNDLE_TP_MAX);
        return 0;
    }
    if (h->ntp == BUNDLE_TP_MAX)
        return tm_err_set(err, EDQUOT, "bundle format: more than %d tamper-proof objects (a store's quota)",
                          BUNDLE_TP_MAX);
    struct bundle_tp *t = &h->tp[h->ntp];
    char id[BUNDLE_TP_ID_MAX + 2];
    if (!h->has_tp_index || sscanf(line, "tp %16s %249s%n", id, hex, &end) != 2 || line[end] ||
        !tp_id_ok(id, strlen(id)) || strlen(hex) % 2 || strlen(hex) / 2 < BUNDLE_TP_VALUE_MIN ||
        strlen(hex) / 2 > BUNDLE_TP_VALUE_MAX)
        return tm_err_set(err, EBADMSG, "bundle format: a bad tamper-proof object line");
    char ids[BUNDLE_TP_MAX][BUNDLE_TP_ID_MAX + 1];
    int n = bundle_tp_ids(h->tp_index, h->tp_index_len, ids);
    if (n < 0 || h->ntp >= (size_t)n || strcmp(ids[h->ntp], id) != 0)
        return tm_err_set(err, EBADMSG, "bundle format: tamper-proof object %s is not the next one its index lists",
                          id);
    snprintf(t->id, sizeof(t->id), "%s", id);
    t->len = strlen(hex) / 2;
    if (tm_hex_decode_str(hex, t->value, t->len, 0, err) < 0)
        return tm_err_set(err, EBADMSG, "bundle format: a bad tamper-proof object value");
    h->ntp++;
    return 0;
}

static bool anchor_kind_ok(const char *k)
{
    return strcmp(k, "vtpm") == 0 || strcmp(k, "sstore") == 0 || strcmp(k, "sstore-keys") == 0;
}

/* "anchor KIND HEX": at most one of each kind. */
static int parse_anchor(const char *line, struct bundle_header *h, tm_err *err)
{
    char kind[16], hex[2 * BUNDLE_ANCHOR_VALUE_MAX + 2];
    int end = 0;
    if (h->nanchors == BUNDLE_ANCHORS_MAX || sscanf(line, "anchor %15s %129s%n", kind, hex, &end) != 2 || line[end] ||
        !anchor_kind_ok(kind) || strlen(hex) % 2 || strlen(hex) > 2 * BUNDLE_ANCHOR_VALUE_MAX || !hex[0])
        return tm_err_set(err, EBADMSG, "bundle format: a bad anchor line");
    for (size_t i = 0; i < h->nanchors; i++)
        if (strcmp(h->anchors[i].kind, kind) == 0)
            return tm_err_set(err, EBADMSG, "bundle format: anchor %s twice", kind);
    struct bundle_anchor *a = &h->anchors[h->nanchors];
    snprintf(a->kind, sizeof(a->kind), "%s", kind);
    a->len = strlen(hex) / 2;
    if (tm_hex_decode_str(hex, a->value, a->len, 0, err) < 0)
        return tm_err_set(err, EBADMSG, "bundle format: a bad anchor value");
    h->nanchors++;
    return 0;
}

static int parse_manifest(char *text, struct bundle_header *h, tm_err *err)
{
    char *save = NULL, *line = strtok_r(text, "\n", &save);
    int r;
    if (!line || strcmp(line, "trustme-migrate-bundle 1") != 0)
        return tm_err_set(err, EBADMSG, "bundle format: not a version 1 manifest");
    char *lines[7];
    for (size_t i = 0; i < 7; i++)
        if (!(lines[i] = strtok_r(NULL, "\n", &save)))
            return tm_err_set(err, EBADMSG, "bundle format: the manifest ends early");
    if ((r = parse_hex_field(lines[0], "bundle", h->bundle_id, BUNDLE_ID_LEN, err)) < 0 ||
        (r = parse_hex_field(lines[1], "offer", h->offer_id, BUNDLE_ID_LEN, err)) < 0 ||
        (r = parse_hex_field(lines[2], "target-ak", h->target_ak, 68, err)) < 0 ||
        (r = parse_text_field(lines[3], "uuid", h->uuid, sizeof(h->uuid), err)) < 0 ||
        (r = parse_text_field(lines[4], "name", h->name, sizeof(h->name), err)) < 0 ||
        (r = parse_text_field(lines[5], "guestos", h->guestos, sizeof(h->guestos), err)) < 0)
        return r;
    unsigned long ub;
    int end = 0;
    if (sscanf(lines[6], "uid-base %lu%n", &ub, &end) != 1 || lines[6][end] || ub > UINT32_MAX)
        return tm_err_set(err, EBADMSG, "bundle format: manifest line \"uid-base\" expected");
    h->uid_base = (uint32_t)ub;
    h->nparts = 0;
    h->nanchors = 0;
    h->has_tp_index = false;
    h->tp_index_len = h->ntp = 0;
    while ((line = strtok_r(NULL, "\n", &save))) {
        if (strncmp(line, "tp-index ", 9) == 0 || strncmp(line, "tp ", 3) == 0) {
            if ((r = parse_tp(line, h, err)) < 0)
                return r;
            continue;
        }
        if (h->has_tp_index)
            return tm_err_set(err, EBADMSG, "bundle format: a part or anchor line after the tamper-proof objects");
        if (strncmp(line, "anchor ", 7) == 0) {
            if ((r = parse_anchor(line, h, err)) < 0)
                return r;
            continue;
        }
        if (h->nanchors)
            return tm_err_set(err, EBADMSG, "bundle format: a part line after the anchors");
        if (h->nparts == BUNDLE_PARTS_MAX)
            return tm_err_set(err, EBADMSG, "bundle format: more than %d parts", BUNDLE_PARTS_MAX);
        struct bundle_part *p = &h->parts[h->nparts];
        char name[BUNDLE_PART_NAME_MAX + 1], hex[65];
        unsigned long long size;
        int pend = 0;
        if (sscanf(line, "part %128s %llu %64s%n", name, &size, hex, &pend) != 3 || line[pend] || !part_name_ok(name) ||
            strlen(hex) != 64)
            return tm_err_set(err, EBADMSG, "bundle format: a bad part line");
        for (size_t i = 0; i < h->nparts; i++)
            if (strcmp(h->parts[i].name, name) == 0)
                return tm_err_set(err, EBADMSG, "bundle format: part %s twice", name);
        snprintf(p->name, sizeof(p->name), "%s", name);
        p->size = size;
        if (tm_hex_decode_str(hex, p->sha256, 32, 0, err) < 0)
            return tm_err_set(err, EBADMSG, "bundle format: a bad part digest");
        h->nparts++;
    }
    if (h->nparts == 0 || strcmp(h->parts[0].name, "config.json") != 0)
        return tm_err_set(err, EBADMSG, "bundle format: the first part must be config.json");
    char ids[BUNDLE_TP_MAX][BUNDLE_TP_ID_MAX + 1];
    int ntp = bundle_tp_ids(h->tp_index, h->tp_index_len, ids);
    if (h->has_tp_index && (ntp < 0 || (size_t)ntp != h->ntp))
        return tm_err_set(err, EBADMSG,
                          "bundle format: the tamper-proof index lists %d objects, the manifest carries %zu", ntp,
                          h->ntp);
    return 0;
}

int bundle_open(const char *path, struct bundle_in *ret, tm_err *err)
{
    *ret = (struct bundle_in){.fd = -1};
    struct bundle_in *b = ret;
    int r;
    /* O_NONBLOCK: a FIFO (or a device) at path must not hold trustmed in open(); it is refused
     * below as not a regular file. */
    if ((b->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)) < 0)
        return tm_err_sys(err, "cannot open %s", path);
    struct stat st;
    if (fstat(b->fd, &st) < 0 || !S_ISREG(st.st_mode))
        return tm_err_set(err, EINVAL, "%s is not a regular file", path);
    uint8_t head[12];
    uint64_t off = 0;
    if ((r = read_at(b->fd, head, 12, off, err)) < 0)
        return r;
    if (memcmp(head, BUNDLE_MAGIC_V1, 8) == 0)
        return tm_err_set(err, EBADMSG,
                          "bundle format: %s is a version 1 bundle, which carries no signature of its source (an "
                          "older trustme wrote it): abort on the source and export again",
                          path);
    if (memcmp(head, BUNDLE_MAGIC, 8) != 0)
        return tm_err_set(err, EBADMSG, "bundle format: %s is not a trustme migration bundle", path);
    b->manifest_len = get32(head + 8);
    if (b->manifest_len == 0 || b->manifest_len >= BUNDLE_MANIFEST_MAX)
        return tm_err_set(err, EBADMSG, "bundle format: a manifest of %zu bytes", b->manifest_len);
    if (!(b->manifest = malloc(b->manifest_len + 1)))
        return tm_err_set(err, ENOMEM, "out of memory");
    off = 12;
    if ((r = read_at(b->fd, b->manifest, b->manifest_len, off, err)) < 0)
        return r;
    b->manifest[b->manifest_len] = '\0';
    if (strlen(b->manifest) != b->manifest_len)
        return tm_err_set(err, EBADMSG, "bundle format: a NUL in the manifest");
    off += b->manifest_len;
    uint8_t len4[4];
    if ((r = read_at(b->fd, len4, 4, off, err)) < 0)
        return r;
    b->wrapped_len = get32(len4);
    if (b->wrapped_len == 0 || b->wrapped_len > sizeof(b->wrapped))
        return tm_err_set(err, EBADMSG, "bundle format: a wrapped key of %zu bytes", b->wrapped_len);
    off += 4;
    if ((r = read_at(b->fd, b->wrapped, b->wrapped_len, off, err)) < 0)
        return r;
    off += b->wrapped_len;
    if ((r = read_at(b->fd, b->iv, sizeof(b->iv), off, err)) < 0 ||
        (r = read_at(b->fd, b->sealed, sizeof(b->sealed), off + sizeof(b->iv), err)) < 0)
        return r;
    off += sizeof(b->iv) + sizeof(b->sealed);
    _cleanup_free_ char *copy = strdup(b->manifest);
    if (!copy)
        return tm_err_set(err, ENOMEM, "out of memory");
    if ((r = parse_manifest(copy, &b->h, err)) < 0)
        return r;
    head_digest(b->manifest, b->manifest_len, b->wrapped, b->wrapped_len, b->iv, b->sealed, b->h.digest);
    for (size_t i = 0; i < b->h.nparts; i++) {
        struct bundle_part *p = &b->h.parts[i];
        p->offset = off;
        if (p->size > (uint64_t)st.st_size || off > (uint64_t)st.st_size - p->size)
            return tm_err_set(err, EBADMSG, "part %s: the bundle ends before it does (truncated)", p->name);
        /* Hashed in chunks from the file: the parts can be large (the data volume). */
        struct tm_sha256_ctx c;
        tm_sha256_init(&c);
        _cleanup_free_ uint8_t *buf = malloc(1u << 20);
        if (!buf)
            return tm_err_set(err, ENOMEM, "out of memory");
        for (uint64_t done = 0; done < p->size;) {
            size_t n = p->size - done > (1u << 20) ? (1u << 20) : (size_t)(p->size - done);
            if ((r = read_at(b->fd, buf, n, off + done, err)) < 0)
                return r;
            tm_sha256_update(&c, buf, n);
            done += n;
        }
        uint8_t got[32];
        tm_sha256_final(&c, got);
        if (memcmp(got, p->sha256, 32) != 0)
            return tm_err_set(err, EBADMSG, "part %s: its SHA-256 is not the manifest's (altered)", p->name);
        off += p->size;
    }
    b->tail_offset = off;
    b->size = (uint64_t)st.st_size;
    return 0;
}

void bundle_close(struct bundle_in *b)
{
    if (b->fd >= 0)
        close(b->fd);
    free(b->manifest);
    explicit_bzero(b->sealed, sizeof(b->sealed));
    *b = (struct bundle_in){.fd = -1};
}

int bundle_unseal(const struct bundle_in *b, const uint8_t *k, size_t k_len, struct secret **ret, tm_err *err)
{
    _cleanup_secret_ struct secret *s = NULL;
    int r = secret_new(BUNDLE_SECRETS_LEN, &s, err);
    if (r < 0)
        return r;
    uint8_t tag[16];
    memcpy(tag, b->sealed + BUNDLE_SECRETS_LEN, 16);
    if ((r = gcm(false, k, k_len, b->iv, b->manifest, b->manifest_len, b->sealed, BUNDLE_SECRETS_LEN, s->data, tag,
                 err)) < 0)
        return r;
    *ret = steal_ptr(s);
    return 0;
}

int bundle_extract(const struct bundle_in *b, size_t i, const char *dest, tm_err *err)
{
    const struct bundle_part *p = &b->h.parts[i];
    _cleanup_close_ int out = open(dest, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (out < 0)
        return tm_err_sys(err, "cannot create %s", dest);
    loff_t in_off = (loff_t)p->offset;
    for (uint64_t left = p->size; left;) {
        ssize_t n = copy_file_range(b->fd, &in_off, out, NULL, left > (1u << 30) ? (1u << 30) : left, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? tm_err_sys(err, "cannot copy part %s", p->name)
                         : tm_err_set(err, EIO, "part %s: the bundle shrank", p->name);
        left -= (uint64_t)n;
    }
    /* The bundle was hashed when it was opened, but whoever serves the file (a share, a stick, its
     * owner) can change it since: what was copied is checked again, not what was read then. */
    uint8_t got[32];
    uint64_t size = 0;
    int r = tm_sha256_fd(out, got, &size, NULL, NULL, err);
    if (r < 0)
        return r;
    if (size != p->size || memcmp(got, p->sha256, 32) != 0)
        return tm_err_set(err, EBADMSG, "part %s: it changed after its digest was checked (altered)", p->name);
    if (fsync(out) < 0)
        return tm_err_sys(err, "cannot sync %s", dest);
    return 0;
}

int bundle_extract_into(const struct bundle_in *b, size_t i, const char *dir, tm_err *err)
{
    const char *name = b->h.parts[i].name;
    char p[PATH_MAX];
    if (snprintf(p, sizeof(p), "%s/%s", dir, name) >= (int)sizeof(p))
        return tm_err_set(err, ENAMETOOLONG, "part %s: the path is too long", name);
    /* The name was checked at parse (part_name_ok): no dot components, at most four deep. */
    for (char *s = p + strlen(dir) + 1; (s = strchr(s, '/')); s++) {
        *s = '\0';
        if (mkdir(p, 0700) < 0 && errno != EEXIST) {
            int r = tm_err_sys(err, "cannot create %s", p);
            *s = '/';
            return r;
        }
        struct stat st;
        if (lstat(p, &st) < 0 || !S_ISDIR(st.st_mode))
            return tm_err_set(err, ENOTDIR, "%s is not a directory", p);
        *s = '/';
    }
    return bundle_extract(b, i, p, err);
}
