/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The rules of docs/GUESTOS.md. The daemon parses guestos.json strictly, so anything it would
 * refuse is refused here, before an image is built, with the offending value in the message. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "guestos.h"

static bool name_char(char c)
{
    return isascii((unsigned char)c) && (isalnum((unsigned char)c) || c == '_' || c == '.' || c == '-');
}

static bool name_like(const char *s, size_t max)
{
    size_t len = strlen(s);
    if (len < 1 || len > max || !isascii((unsigned char)s[0]) || !isalnum((unsigned char)s[0]))
        return false;
    for (size_t i = 0; i < len; i++)
        if (!name_char(s[i]))
            return false;
    return true;
}

bool gos_valid_name(const char *s)
{
    return name_like(s, GOS_NAME_MAX);
}

/* Starting with a letter or digit also rules out "." and ".."; the signature's files are not
 * images. */
bool gos_valid_image_name(const char *s)
{
    return name_like(s, GOS_IMAGE_NAME_MAX) && strcmp(s, "guestos.json") != 0 && strncmp(s, "guestos.json.", 13) != 0;
}

/* Environment names as in container configs: letters, digits, '_', not starting with a digit. */
static bool env_name_valid(const char *s, size_t len)
{
    if (len < 1 || len > GOS_ENV_NAME_MAX || isdigit((unsigned char)s[0]))
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isascii((unsigned char)s[i]) || !(isalnum((unsigned char)s[i]) || s[i] == '_'))
            return false;
    return true;
}

/* "/" or "/a/b": absolute, no empty, "." or ".." components, no trailing slash. */
bool gos_canonical_path(const char *s)
{
    if (s[0] != '/' || strlen(s) >= 4096 || !gos_valid_utf8(s))
        return false;
    if (s[1] == '\0')
        return true;
    for (const char *p = s; *p;) {
        const char *c = p + 1, *end = strchrnul(c, '/');
        size_t len = (size_t)(end - c);
        if (len == 0 || (len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.'))
            return false;
        p = end;
    }
    return true;
}

/* JSON strings are UTF-8: refused here with the option's name rather than by jansson, which
 * would not make the string at all. Overlong forms and surrogates are refused too, as a strict
 * parser on the other side would. */
bool gos_valid_utf8(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p, n;
        uint32_t cp;
        if (c < 0x80) {
            p++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            n = 1, cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2, cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3, cp = c & 0x07;
        } else {
            return false;
        }
        for (unsigned i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        if ((n == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)))
            return false;
        p += n + 1;
    }
    return true;
}

/* Decimal, canonical (the directory is NAME-VERSION, so "03" would not name what it says). */
int gos_parse_version(const char *s, uint64_t *ret, tm_err *err)
{
    uint64_t v = 0;
    size_t len = strlen(s);
    if (len == 0 || len > 16 || s[0] == '0')
        goto bad;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            goto bad;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v < 1 || v > GOS_VERSION_MAX)
        goto bad;
    *ret = v;
    return 0;
bad:
    return tm_err_set(err, EINVAL, "version '%s': expected an integer from 1 to 2^53, without leading zeros", s);
}

const char *gos_fs_name(enum gos_fs fs)
{
    return fs == GOS_EROFS ? "erofs" : "squashfs";
}

const char *gos_kind_name(enum gos_kind kind)
{
    static const char *const names[] = {"shared", "overlay", "data", "tmpfs"};
    return names[kind];
}

/* trustmed also wants '/' first (mounts are applied in order, everything else goes on top of it)
 * and overlays only there; the builder makes it so, this keeps it so. */
static int validate_mounts(const struct gos_spec *spec, tm_err *err)
{
    size_t roots = 0;
    if (spec->n_mounts < 1 || spec->n_mounts > GOS_MOUNTS_MAX)
        return tm_err_set(err, EINVAL, "%zu mounts: a GuestOS has 1 to %d", spec->n_mounts, GOS_MOUNTS_MAX);
    for (size_t i = 0; i < spec->n_mounts; i++) {
        const struct gos_mount *m = &spec->mounts[i];
        bool has_image = m->kind == GOS_SHARED || m->kind == GOS_OVERLAY;
        if (!gos_canonical_path(m->mount_point))
            return tm_err_set(
                err, EINVAL,
                "mount point '%s': expected a canonical absolute path (no '.', '..', '//' or trailing '/')",
                m->mount_point);
        if (strcmp(m->mount_point, "/") == 0) {
            if (!has_image)
                return tm_err_set(err, EINVAL, "'/' can only be the root image, not a %s mount",
                                  gos_kind_name(m->kind));
            if (i != 0)
                return tm_err_set(err, EINVAL, "'/' must be the first mount");
            roots++;
        } else if (m->kind == GOS_OVERLAY) {
            return tm_err_set(err, EINVAL, "%s: only '/' can be an overlay", m->mount_point);
        }
        if (has_image && !gos_valid_image_name(m->image))
            return tm_err_set(err, EINVAL,
                              "image name '%s' (for %s): expected 1-%d letters, digits, '.', '_', '-', starting with a "
                              "letter or digit, not guestos.json*",
                              m->image, m->mount_point, GOS_IMAGE_NAME_MAX);
        if (m->kind == GOS_TMPFS && m->size_mb > GOS_TMPFS_MB_MAX)
            return tm_err_set(err, EINVAL, "tmpfs %s: size %u MiB is more than %d", m->mount_point, m->size_mb,
                              GOS_TMPFS_MB_MAX);
        for (size_t j = 0; j < i; j++) {
            if (strcmp(spec->mounts[j].mount_point, m->mount_point) == 0)
                return tm_err_set(err, EINVAL, "mount point %s is given twice", m->mount_point);
            if (has_image && spec->mounts[j].image[0] && strcmp(spec->mounts[j].image, m->image) == 0)
                return tm_err_set(err, EINVAL, "image name %s (for %s) is taken by %s", m->image, m->mount_point,
                                  spec->mounts[j].mount_point);
        }
    }
    if (roots != 1)
        return tm_err_set(err, EINVAL, "exactly one mount must be '/'");
    return 0;
}

/* "80/tcp" as an image's ExposedPorts has it (a bare "80" means tcp there; the importer adds it). */
bool gos_valid_port(const char *s)
{
    size_t n = strspn(s, "0123456789");
    if (n < 1 || n > 5 || s[0] == '0' || strtoul(s, NULL, 10) > 65535)
        return false;
    return !strcmp(s + n, "/tcp") || !strcmp(s + n, "/udp") || !strcmp(s + n, "/sctp");
}

int gos_spec_validate(const struct gos_spec *spec, tm_err *err)
{
    if (!gos_valid_name(spec->name))
        return tm_err_set(err, EINVAL,
                          "name '%s': expected 1-%d letters, digits, '_', '.', '-', starting with a letter or digit",
                          spec->name, GOS_NAME_MAX);
    if (spec->version < 1 || spec->version > GOS_VERSION_MAX)
        return tm_err_set(err, EINVAL, "version %llu: expected 1 to 2^53", (unsigned long long)spec->version);
    /* uname -m values: x86_64, aarch64, armv7l, riscv64, ... */
    size_t alen = strlen(spec->architecture);
    if (alen < 1 || alen > GOS_ARCH_MAX || strspn(spec->architecture, "abcdefghijklmnopqrstuvwxyz0123456789_") != alen)
        return tm_err_set(err, EINVAL, "architecture '%s': expected a 'uname -m' name like x86_64", spec->architecture);
    if (!gos_canonical_path(spec->init) || strcmp(spec->init, "/") == 0)
        return tm_err_set(err, EINVAL, "init '%s': expected a canonical absolute path", spec->init);
    if (spec->n_args > GOS_ARGS_MAX || spec->n_env > GOS_ENV_MAX)
        return tm_err_set(err, EINVAL, "at most %d arguments and %d environment variables", GOS_ARGS_MAX, GOS_ENV_MAX);
    for (size_t i = 0; i < spec->n_args; i++)
        if (strlen(spec->args[i]) > GOS_ARG_LEN_MAX || !gos_valid_utf8(spec->args[i]))
            return tm_err_set(err, EINVAL, "argument %zu: at most %d bytes of UTF-8", i + 1, GOS_ARG_LEN_MAX);
    for (size_t i = 0; i < spec->n_env; i++) {
        const char *e = spec->env[i], *eq = strchr(e, '=');
        if (!eq || !env_name_valid(e, (size_t)(eq - e)) || strlen(eq + 1) > GOS_ARG_LEN_MAX || !gos_valid_utf8(eq + 1))
            return tm_err_set(err, EINVAL,
                              "environment '%.64s': expected KEY=VALUE, KEY letters, digits and '_' "
                              "(not first a digit), VALUE at most %d bytes of UTF-8",
                              e, GOS_ARG_LEN_MAX);
        for (size_t j = 0; j < i; j++)
            if (strncmp(spec->env[j], e, (size_t)(eq - e) + 1) == 0)
                return tm_err_set(err, EINVAL, "environment variable %.*s is given twice", (int)(eq - e), e);
    }
    if (spec->description && (strlen(spec->description) > GOS_DESCRIPTION_MAX || !gos_valid_utf8(spec->description)))
        return tm_err_set(err, EINVAL, "description: at most %d bytes of UTF-8", GOS_DESCRIPTION_MAX);
    if (spec->working_dir && (!gos_canonical_path(spec->working_dir) || strlen(spec->working_dir) >= 4096))
        return tm_err_set(err, EINVAL, "working directory '%.64s': expected a canonical absolute path",
                          spec->working_dir);
    if (spec->n_ports > GOS_PORTS_MAX)
        return tm_err_set(err, EINVAL, "at most %d ports", GOS_PORTS_MAX);
    for (size_t i = 0; i < spec->n_ports; i++)
        if (!gos_valid_port(spec->ports[i]))
            return tm_err_set(err, EINVAL, "port '%.32s': expected PORT/tcp, PORT/udp or PORT/sctp, PORT 1-65535",
                              spec->ports[i]);
    return validate_mounts(spec, err);
}
