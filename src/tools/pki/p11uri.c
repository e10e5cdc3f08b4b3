/* PKCS#11 URIs (RFC 7512): the attributes that name a key on a token, and module-path.
 * Anything else is refused rather than ignored: a URI naming a token by an attribute this
 * tool would not check could silently pick another token. PINs never come in a URI (pin-value
 * would put them in ps and shell history): --pin-file or the terminal. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "pki.h"

#define SCHEME "pkcs11:"

bool p11uri_is(const char *s)
{
    return strncmp(s, SCHEME, strlen(SCHEME)) == 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decode [v, v + n) into out (size bytes; text is NUL-terminated and may not contain
 * NUL). Returns the decoded length, or -1 if malformed or too long. */
static long pct_decode(const char *v, size_t n, unsigned char *out, size_t size, bool binary)
{
    size_t o = 0, room = binary ? size : size - 1;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)v[i];
        if (c == '%') {
            if (n - i < 3)
                return -1;
            int hi = hexval(v[i + 1]), lo = hexval(v[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = hi << 4 | lo;
            i += 2;
        }
        if ((!binary && c == '\0') || o >= room)
            return -1;
        out[o++] = (unsigned char)c;
    }
    if (!binary)
        out[o] = '\0';
    return (long)o;
}

static int set_text(char *field, size_t size, const char *name, const char *v, size_t n,
                    tm_err *err)
{
    if (field[0])
        return tm_err_set(err, EINVAL, "PKCS#11 URI: %s given twice", name);
    if (pct_decode(v, n, (unsigned char *)field, size, false) < 0)
        return tm_err_set(err, EINVAL, "PKCS#11 URI: bad or too long value of %s", name);
    return 0;
}

static int set_attr(struct p11uri *u, const char *a, size_t n, bool query, tm_err *err)
{
    const char *eq = memchr(a, '=', n);
    if (!eq)
        return tm_err_set(err, EINVAL, "PKCS#11 URI: \"%.*s\" is not NAME=VALUE", (int)n, a);
    size_t klen = (size_t)(eq - a);
    const char *v = eq + 1;
    size_t vlen = n - klen - 1;
#define IS(k) (klen == strlen(k) && memcmp(a, k, klen) == 0)
    if (IS("module-path"))
        return set_text(u->module_path, sizeof(u->module_path), "module-path", v, vlen, err);
    if (query && (IS("pin-value") || IS("pin-source")))
        return tm_err_set(err, EINVAL, "PKCS#11 URI: %.*s is not accepted, give the PIN with "
                          "--pin-file", (int)klen, a);
    if (query)
        return tm_err_set(err, EINVAL, "PKCS#11 URI: query attribute %.*s is not supported",
                          (int)klen, a);
    if (IS("token"))
        return set_text(u->token, sizeof(u->token), "token", v, vlen, err);
    if (IS("object"))
        return set_text(u->object, sizeof(u->object), "object", v, vlen, err);
    if (IS("type")) {
        int r = set_text(u->type, sizeof(u->type), "type", v, vlen, err);
        if (r == 0 && strcmp(u->type, "private") != 0)
            return tm_err_set(err, EINVAL, "PKCS#11 URI: type=%s, only private keys are used",
                              u->type);
        return r;
    }
    if (IS("id")) {
        if (u->id_len)
            return tm_err_set(err, EINVAL, "PKCS#11 URI: id given twice");
        long len = pct_decode(v, vlen, u->id, sizeof(u->id), true);
        if (len <= 0)
            return tm_err_set(err, EINVAL, "PKCS#11 URI: bad, empty or too long id");
        u->id_len = (size_t)len;
        return 0;
    }
#undef IS
    return tm_err_set(err, EINVAL, "PKCS#11 URI: attribute %.*s is not supported (token, "
                      "object, id, type, module-path are)", (int)klen, a);
}

int p11uri_parse(const char *s, struct p11uri *u, tm_err *err)
{
    memset(u, 0, sizeof(*u));
    if (!p11uri_is(s))
        return tm_err_set(err, EINVAL, "\"%s\" is not a PKCS#11 URI (pkcs11:...)", s);
    const char *p = s + strlen(SCHEME);
    const char *q = strchr(p, '?');
    const char *path_end = q ? q : p + strlen(p);
    for (const char *a = p; a < path_end;) {
        const char *end = memchr(a, ';', (size_t)(path_end - a));
        if (!end)
            end = path_end;
        if (end > a) {
            int r = set_attr(u, a, (size_t)(end - a), false, err);
            if (r < 0)
                return r;
        }
        a = end + 1;
    }
    if (q)
        for (const char *a = q + 1; *a;) {
            const char *end = strchr(a, '&');
            if (!end)
                end = a + strlen(a);
            if (end > a) {
                int r = set_attr(u, a, (size_t)(end - a), true, err);
                if (r < 0)
                    return r;
            }
            a = *end ? end + 1 : end;
        }
    if (!u->token[0])
        return tm_err_set(err, EINVAL, "PKCS#11 URI \"%s\" names no token (token=LABEL)", s);
    if (u->module_path[0] && u->module_path[0] != '/')
        return tm_err_set(err, EINVAL, "PKCS#11 URI: module-path must be absolute");
    return 0;
}

/* Append v percent-encoded (everything but RFC 3986 unreserved characters) */
static int pct_append(char *out, size_t size, size_t *o, const unsigned char *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = v[i];
        bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     c == '-' || c == '.' || c == '_' || c == '~';
        int w = plain ? snprintf(out + *o, size - *o, "%c", c)
                      : snprintf(out + *o, size - *o, "%%%02X", c);
        if (w < 0 || (size_t)w >= size - *o)
            return -ENAMETOOLONG;
        *o += (size_t)w;
    }
    return 0;
}

static int lit_append(char *out, size_t size, size_t *o, const char *s)
{
    int w = snprintf(out + *o, size - *o, "%s", s);
    if (w < 0 || (size_t)w >= size - *o)
        return -ENAMETOOLONG;
    *o += (size_t)w;
    return 0;
}

int p11uri_format(const struct p11uri *u, char *out, size_t size)
{
    size_t o = 0;
    int r = lit_append(out, size, &o, SCHEME "token=");
    if (r == 0)
        r = pct_append(out, size, &o, (const unsigned char *)u->token, strlen(u->token));
    if (r == 0 && u->object[0] && (r = lit_append(out, size, &o, ";object=")) == 0)
        r = pct_append(out, size, &o, (const unsigned char *)u->object, strlen(u->object));
    /* ids are binary: every byte encoded, so that they read the same whatever they contain */
    if (r == 0 && u->id_len && (r = lit_append(out, size, &o, ";id=")) == 0)
        for (size_t i = 0; r == 0 && i < u->id_len; i++) {
            char hex[4];
            snprintf(hex, sizeof(hex), "%%%02X", u->id[i]);
            r = lit_append(out, size, &o, hex);
        }
    if (r == 0)
        r = lit_append(out, size, &o, ";type=private");
    return r;
}
