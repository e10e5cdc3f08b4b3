/* SPDX-License-Identifier: GPL-2.0-or-later */
/* PKCS#11 URIs (RFC 7512), parsed and written by p11-kit (p11_kit_uri_parse/_format); here only
 * what this tool accepts of them. A URI names a private key by token label (required), serial
 * number, object label, id and type=private, and may carry module-path. Anything else is refused
 * rather than ignored: a URI naming a token by an attribute this tool would not check could
 * silently pick another token. PINs never come in a URI (pin-value would put them in ps and
 * shell history): --pin-file or the terminal. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <p11-kit/uri.h>

#include "cleanup.h"
#include "pki.h"

#define SCHEME "pkcs11:"

static inline void uri_freep(P11KitUri **u)
{
    p11_kit_uri_free(*u);
}

bool p11uri_is(const char *s)
{
    return strncmp(s, SCHEME, strlen(SCHEME)) == 0;
}

static bool all_zero(const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        if (c[i])
            return false;
    return true;
}

/* A CK_TOKEN_INFO field as p11-kit fills it (blank-padded, or all zero when not given) into a C
 * string; -EINVAL for a NUL inside, which a C string could not say. */
static int field_text(const CK_UTF8CHAR *f, size_t size, char *out, const char *name, tm_err *err)
{
    size_t n = size;
    while (n > 0 && (f[n - 1] == ' ' || f[n - 1] == '\0'))
        n--;
    if (memchr(f, '\0', n))
        return tm_err_set(err, EINVAL, "PKCS#11 URI: a NUL in the value of %s", name);
    memcpy(out, f, n);
    out[n] = '\0';
    return 0;
}

int p11uri_parse(const char *s, struct p11uri *u, tm_err *err)
{
    memset(u, 0, sizeof(*u));
    if (!p11uri_is(s))
        return tm_err_set(err, EINVAL, "\"%s\" is not a PKCS#11 URI (pkcs11:...)", s);
    _cleanup_(uri_freep) P11KitUri *k = p11_kit_uri_new();
    if (!k)
        return tm_err_set(err, ENOMEM, "out of memory");
    int r = p11_kit_uri_parse(s, P11_KIT_URI_FOR_OBJECT_ON_TOKEN, k);
    if (r != P11_KIT_URI_OK)
        return tm_err_set(err, EINVAL, "PKCS#11 URI: %s", p11_kit_uri_message(r));
    /* Attributes of slots and modules, unknown ones, values longer than their field */
    if (p11_kit_uri_any_unrecognized(k))
        return tm_err_set(err, EINVAL,
                          "PKCS#11 URI: an attribute is not supported (token, "
                          "serial, object, id, type, module-path are) or a value is too long");
    if (p11_kit_uri_get_pin_value(k) || p11_kit_uri_get_pin_source(k))
        return tm_err_set(err, EINVAL,
                          "PKCS#11 URI: a PIN is not accepted in it, give the PIN "
                          "with --pin-file");
    if (p11_kit_uri_get_module_name(k))
        return tm_err_set(err, EINVAL,
                          "PKCS#11 URI: module-name is not supported, use "
                          "module-path or --pkcs11-module");
    CK_TOKEN_INFO *ti = p11_kit_uri_get_token_info(k);
    if (!all_zero(ti->model, sizeof(ti->model)) || !all_zero(ti->manufacturerID, sizeof(ti->manufacturerID)))
        return tm_err_set(err, EINVAL,
                          "PKCS#11 URI: model and manufacturer are not supported "
                          "(token and serial are)");
    if ((r = field_text(ti->label, sizeof(ti->label), u->token, "token", err)) < 0 ||
        (r = field_text(ti->serialNumber, sizeof(ti->serialNumber), u->serial, "serial", err)) < 0)
        return r;

    CK_ATTRIBUTE *a = p11_kit_uri_get_attribute(k, CKA_LABEL);
    if (a) {
        if (a->ulValueLen >= sizeof(u->object) || memchr(a->pValue, '\0', a->ulValueLen))
            return tm_err_set(err, EINVAL, "PKCS#11 URI: bad or too long value of object");
        memcpy(u->object, a->pValue, a->ulValueLen);
    }
    if ((a = p11_kit_uri_get_attribute(k, CKA_ID))) {
        if (a->ulValueLen == 0 || a->ulValueLen > sizeof(u->id))
            return tm_err_set(err, EINVAL, "PKCS#11 URI: empty or too long id");
        memcpy(u->id, a->pValue, a->ulValueLen);
        u->id_len = a->ulValueLen;
    }
    if ((a = p11_kit_uri_get_attribute(k, CKA_CLASS))) {
        CK_OBJECT_CLASS cls;
        if (a->ulValueLen != sizeof(cls))
            return tm_err_set(err, EINVAL, "PKCS#11 URI: bad type");
        memcpy(&cls, a->pValue, sizeof(cls));
        if (cls != CKO_PRIVATE_KEY)
            return tm_err_set(err, EINVAL, "PKCS#11 URI: only private keys are used (type=private)");
        snprintf(u->type, sizeof(u->type), "private");
    }
    const char *mp = p11_kit_uri_get_module_path(k);
    if (mp) {
        if (mp[0] != '/')
            return tm_err_set(err, EINVAL, "PKCS#11 URI: module-path must be absolute");
        if (strlen(mp) >= sizeof(u->module_path))
            return tm_err_set(err, EINVAL, "PKCS#11 URI: module-path too long");
        snprintf(u->module_path, sizeof(u->module_path), "%s", mp);
    }
    if (!u->token[0])
        return tm_err_set(err, EINVAL, "PKCS#11 URI \"%s\" names no token (token=LABEL)", s);
    return 0;
}

/* The token's label and serial go in blank-padded, as p11-kit's parser leaves them. */
static void set_field(CK_UTF8CHAR *f, size_t size, const char *v)
{
    if (!v[0])
        return;
    memset(f, ' ', size);
    memcpy(f, v, strlen(v));
}

int p11uri_format(const struct p11uri *u, char *out, size_t size)
{
    if (strlen(u->token) > P11_LABEL_MAX || strlen(u->serial) > P11_SERIAL_MAX)
        return -EINVAL;
    _cleanup_(uri_freep) P11KitUri *k = p11_kit_uri_new();
    if (!k)
        return -ENOMEM;
    CK_TOKEN_INFO *ti = p11_kit_uri_get_token_info(k);
    set_field(ti->label, sizeof(ti->label), u->token);
    set_field(ti->serialNumber, sizeof(ti->serialNumber), u->serial);
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE attrs[3] = {{CKA_CLASS, &cls, sizeof(cls)}};
    CK_ULONG n = 1;
    if (u->object[0])
        attrs[n++] = (CK_ATTRIBUTE){CKA_LABEL, (void *)u->object, strlen(u->object)};
    if (u->id_len)
        attrs[n++] = (CK_ATTRIBUTE){CKA_ID, (void *)u->id, u->id_len};
    if (p11_kit_uri_set_attributes(k, attrs, n) != P11_KIT_URI_OK)
        return -ENOMEM;
    _cleanup_free_ char *s = NULL;
    if (p11_kit_uri_format(k, P11_KIT_URI_FOR_OBJECT_ON_TOKEN, &s) != P11_KIT_URI_OK)
        return -ENOMEM;
    if (strlen(s) >= size)
        return -ENAMETOOLONG;
    memcpy(out, s, strlen(s) + 1);
    return 0;
}
