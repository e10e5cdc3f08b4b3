/* SPDX-License-Identifier: GPL-2.0-or-later */
/* One GuestOS build: everything goes into PARENT/.NAME-VERSION.XXXXXX, which becomes
 * PARENT/NAME-VERSION by one rename once it is complete and on disk. A reader (or a device
 * fetching updates) sees the whole GuestOS or none; a failed build leaves nothing behind. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "fileio.h"
#include "guestos.h"

volatile int gos_interrupted;

static void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void progress(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("trustme-guestos: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static int check_interrupted(tm_err *err)
{
    return gos_interrupted ? tm_err_set(err, EINTR, "interrupted") : 0;
}

static int check_dir(const char *what, const char *path, tm_err *err)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return tm_err_sys(err, "%s %s", what, path);
    if (!S_ISDIR(st.st_mode))
        return tm_err_set(err, ENOTDIR, "%s %s is not a directory", what, path);
    return 0;
}

/* A source containing the output directory would pack the half-built image into itself. */
static int check_source(const char *source, const char *out_dir, tm_err *err)
{
    int r = check_dir("source directory", source, err);
    if (r < 0)
        return r;
    char src[PATH_MAX], out[PATH_MAX];
    if (!realpath(source, src) || !realpath(out_dir, out))
        return tm_err_sys(err, "cannot resolve %s or %s", source, out_dir);
    size_t len = strlen(src);
    if (strcmp(src, "/") == 0 || (strncmp(out, src, len) == 0 && (out[len] == '/' || !out[len])))
        return tm_err_set(err, EINVAL, "output directory %s is inside source directory %s", out_dir, source);
    return 0;
}

static int check_readable(const char *what, const char *path, tm_err *err)
{
    if (path && access(path, R_OK) < 0)
        return tm_err_sys(err, "%s %s", what, path);
    return 0;
}

static bool executable(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* trustme-pki next to this binary (an installation's bin/), else the first one on $PATH. Found
 * before the images are built, so that a missing signer does not cost a whole build. */
static int find_pki_tool(char *out, size_t size, tm_err *err)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n > 0) {
        self[n] = '\0';
        snprintf(out, size, "%s/trustme-pki", dirname(self));
        if (executable(out))
            return 0;
    }
    const char *path = getenv("PATH");
    for (const char *p = path ? path : ""; *p;) {
        const char *end = strchrnul(p, ':');
        if (end > p && snprintf(out, size, "%.*s/trustme-pki", (int)(end - p), p) < (int)size && executable(out))
            return 0;
        p = *end ? end + 1 : end;
    }
    return tm_err_set(err, ENOENT,
                      "trustme-pki is neither next to trustme-guestos nor on $PATH "
                      "(or build with --unsigned)");
}

static int check_signing(const struct gos_signing *s, tm_err *err)
{
    int r;
    if (s->unsigned_ok)
        return 0;
    if (s->pki_dir && (r = check_dir("PKI directory", s->pki_dir, err)) < 0)
        return r;
    if ((r = check_readable("key", s->key && !strncmp(s->key, "pkcs11:", 7) ? NULL : s->key, err)) < 0 ||
        (r = check_readable("certificate", s->cert, err)) < 0 || (r = check_readable("chain", s->chain, err)) < 0 ||
        (r = check_readable("passphrase file", s->passphrase_file, err)) < 0 ||
        (r = check_readable("PIN file", s->pin_file, err)) < 0 ||
        (r = check_readable("PKCS#11 module", s->pkcs11_module, err)) < 0)
        return r;
    return 0;
}

static int sign(const char *tool, const char *dir, const struct gos_signing *s, tm_err *err)
{
    char json[PATH_MAX];
    snprintf(json, sizeof(json), "%s/guestos.json", dir);
    const char *argv[24]; /* 3 + at most 9 options with values + NULL */
    size_t n = 0;
    argv[n++] = tool;
    argv[n++] = "sign";
    argv[n++] = json;
#define OPT(flag, val)        \
    do {                      \
        if (val) {            \
            argv[n++] = flag; \
            argv[n++] = val;  \
        }                     \
    } while (0)
    OPT("--pki", s->pki_dir);
    OPT("--signer", s->signer);
    OPT("--key", s->key);
    OPT("--cert", s->cert);
    OPT("--chain", s->chain);
    OPT("--passphrase-file", s->passphrase_file);
    OPT("--pin-file", s->pin_file);
    OPT("--pkcs11-module", s->pkcs11_module);
#undef OPT
    argv[n] = NULL;
    /* Not captured: trustme-pki may ask for a passphrase or PIN on the terminal. */
    int r = gos_run(argv, false, err);
    if (r < 0)
        return r;
    static const char *const made[] = {"guestos.json.sig", "guestos.json.chain.pem"};
    for (size_t i = 0; i < ARRAY_SIZE(made); i++) {
        char p[PATH_MAX];
        snprintf(p, sizeof(p), "%s/%s", dir, made[i]);
        if (access(p, R_OK) < 0)
            return tm_err_sys(err, "trustme-pki succeeded but made no %s", made[i]);
    }
    return 0;
}

/* The image tools do not fsync; the rename must not reach the disk before the files do. */
static int sync_dir_contents(const char *dir, tm_err *err)
{
    _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return tm_err_sys(err, "cannot open %s", dir);
    _cleanup_(closedirp) DIR *d = fdopendir(dup(dfd));
    if (!d)
        return tm_err_sys(err, "cannot read %s", dir);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        _cleanup_close_ int fd = openat(dfd, e->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0 || fsync(fd) < 0)
            return tm_err_sys(err, "cannot sync %s/%s", dir, e->d_name);
    }
    /* mkdtemp made it 0700; the GuestOS is for trustmed and anyone installing it. */
    if (fchmod(dfd, 0755) < 0 || fsync(dfd) < 0)
        return tm_err_sys(err, "cannot sync %s", dir);
    return 0;
}

static int build_images(struct gos_spec *spec, const char *tmp, tm_err *err)
{
    for (size_t i = 0; i < spec->n_mounts; i++) {
        struct gos_mount *m = &spec->mounts[i];
        if (m->kind != GOS_SHARED && m->kind != GOS_OVERLAY)
            continue;
        char path[PATH_MAX], seed[256];
        snprintf(path, sizeof(path), "%s/%s", tmp, m->image);
        snprintf(seed, sizeof(seed), "trustme-guestos:%s-%llu:%s", spec->name, (unsigned long long)spec->version,
                 m->image);
        progress("building %s (%s) from %s...", m->image, gos_fs_name(m->fs), m->source);
        int r = gos_make_image(m->source, path, m->fs, seed, m->keep_owners, err);
        if (r < 0 || (r = check_interrupted(err)) < 0)
            return tm_err_prefix(err, "building %s", m->image);
        progress("hashing %s...", m->image);
        if ((r = gos_hash_file(path, m->sha256, &m->size, err)) < 0)
            return tm_err_prefix(err, "hashing");
        if ((r = check_interrupted(err)) < 0)
            return r;
    }
    return 0;
}

static int build_in(struct gos_spec *spec, const char *tmp, const char *pki_tool, const struct gos_signing *s,
                    tm_err *err)
{
    int r = build_images(spec, tmp, err);
    if (r < 0)
        return r;
    char json[PATH_MAX];
    snprintf(json, sizeof(json), "%s/guestos.json", tmp);
    progress("writing guestos.json");
    if ((r = gos_manifest_write(spec, json, err)) < 0)
        return r;
    if (!s->unsigned_ok) {
        progress("signing guestos.json with %s...", pki_tool);
        if ((r = sign(pki_tool, tmp, s, err)) < 0)
            return tm_err_prefix(err, "signing guestos.json");
    }
    if ((r = check_interrupted(err)) < 0)
        return r;
    return sync_dir_contents(tmp, err);
}

int gos_build(struct gos_spec *spec, const char *out_dir, const struct gos_signing *s, char *ret_path,
              size_t ret_path_size, tm_err *err)
{
    int r = gos_spec_validate(spec, err);
    if (r < 0)
        return r;
    if ((r = check_dir("output directory", out_dir, err)) < 0)
        return r;
    for (size_t i = 0; i < spec->n_mounts; i++)
        if (spec->mounts[i].source && (r = check_source(spec->mounts[i].source, out_dir, err)) < 0)
            return r;
    char pki_tool[PATH_MAX] = "";
    if ((r = check_signing(s, err)) < 0 ||
        (!s->unsigned_ok && (r = find_pki_tool(pki_tool, sizeof(pki_tool), err)) < 0))
        return r;

    char final[PATH_MAX], tmp[PATH_MAX];
    if (snprintf(final, sizeof(final), "%s/%s-%llu", out_dir, spec->name, (unsigned long long)spec->version) >=
            (int)sizeof(final) ||
        snprintf(tmp, sizeof(tmp), "%s/.%s-%llu.XXXXXX", out_dir, spec->name, (unsigned long long)spec->version) >=
            (int)sizeof(tmp))
        return tm_err_set(err, ENAMETOOLONG, "output directory name too long");
    struct stat st;
    if (lstat(final, &st) == 0)
        return tm_err_set(err, EEXIST,
                          "%s exists; a GuestOS version is never rebuilt in place "
                          "(remove it or raise --version)",
                          final);
    if (!mkdtemp(tmp))
        return tm_err_sys(err, "cannot create a directory in %s", out_dir);

    r = build_in(spec, tmp, pki_tool, s, err);
    /* NOREPLACE: another build of the same version may have finished meanwhile. */
    if (r >= 0 && renameat2(AT_FDCWD, tmp, AT_FDCWD, final, RENAME_NOREPLACE) < 0)
        r = tm_err_sys(err, "cannot rename %s to %s", tmp, final);
    if (r >= 0 && (r = fsync_parent(final)) < 0) {
        errno = -r;
        return tm_err_sys(err, "cannot sync %s", out_dir); /* complete, just maybe not durable */
    }
    if (r < 0) {
        int rr = rm_rf(tmp);
        if (rr < 0)
            fprintf(stderr, "trustme-guestos: cannot remove %s: %s\n", tmp, strerror(-rr));
        return r;
    }
    snprintf(ret_path, ret_path_size, "%s", final);
    return 0;
}
