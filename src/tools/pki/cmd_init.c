/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme-pki init: a new development PKI, all or nothing.
 *
 * Everything is built in a temporary directory next to DIR (same file system), fsynced, and
 * renamed to DIR with RENAME_NOREPLACE: DIR either does not exist or is complete, and an
 * existing DIR (even an empty one, which plain rename(2) would replace) is never touched. On
 * failure or SIGINT/SIGTERM/SIGHUP the temporary directory is removed and keys generated on a
 * token are destroyed. Only SIGKILL can leave a ".DIR.tmp-XXXXXX" behind, never DIR. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "fileio.h"
#include "pki.h"

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    interrupted = sig;
}

struct init_opts {
    const char *dir;
    enum pki_alg alg;
    int days;
    const char *passphrase_file, *pkcs11, *pin_file, *module;
};

struct built {
    X509 *cert[16];
    EVP_PKEY *key[16];
};

static void built_free(struct built *b)
{
    for (size_t i = 0; i < ARRAY_SIZE(b->cert); i++) {
        X509_free(b->cert[i]);
        EVP_PKEY_free(b->key[i]);
    }
}

static int fsync_dir(const char *path, tm_err *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0)
        return tm_err_sys(err, "cannot fsync %s", path);
    return 0;
}

/* Key, certificate and (for a CA) CRL of entity i, issued by what is already built. */
static int build_entity(const struct init_opts *o, struct pki *p, struct p11tok *tok, const char *pass,
                        const char *label_prefix, size_t i, struct built *b, tm_err *err)
{
    const struct pki_entity *e = &pki_entities[i];
    char subdir[PATH_MAX];
    snprintf(subdir, sizeof(subdir), "%s/%s", p->dir, e->dir);
    _cleanup_close_ int dirfd = open(subdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0)
        return tm_err_sys(err, "cannot open %s", subdir);
    int r;
    char name[64], spec[PATH_MAX];
    if (tok) {
        struct p11uri u = {0};
        struct p11uri given;
        if ((r = p11uri_parse(o->pkcs11, &given, err)) < 0)
            return r;
        snprintf(u.token, sizeof(u.token), "%s", given.token);
        snprintf(u.serial, sizeof(u.serial), "%s", given.serial);
        snprintf(u.object, sizeof(u.object), "%s%s", label_prefix, e->name);
        u.id_len = 16;
        if (RAND_bytes(u.id, (int)u.id_len) != 1)
            return ossl_fail(err, EIO, "no random key id");
        if ((r = p11tok_generate(tok, o->alg, u.object, u.id, u.id_len, &b->key[i], err)) < 0)
            return tm_err_prefix(err, "key of %s", e->name);
        if (p11uri_format(&u, spec, sizeof(spec)) < 0)
            return tm_err_set(err, ENAMETOOLONG, "PKCS#11 URI of %s too long", e->name);
    } else {
        if ((r = key_generate(o->alg, &b->key[i], err)) < 0)
            return tm_err_prefix(err, "key of %s", e->name);
        snprintf(name, sizeof(name), "%s.key", e->name);
        if ((r = key_write_encrypted(dirfd, name, b->key[i], pass, err)) < 0)
            return r;
        snprintf(spec, sizeof(spec), "%s/%s", e->dir, name);
    }
    if ((r = pki_set_key(p, e, spec, err)) < 0)
        return r;

    size_t issuer = i;
    if (e->issuer)
        for (issuer = 0; issuer < pki_entities_count; issuer++)
            if (strcmp(pki_entities[issuer].name, e->issuer) == 0)
                break;
    _cleanup_(X509_NAME_freep) X509_NAME *subject = NULL;
    if ((r = name_make(e->cn, &subject, err)) < 0)
        return r;
    time_t now = time(NULL);
    struct cert_spec cs = {
        .subject = subject,
        .pubkey = b->key[i],
        .profile = e->profile,
        .not_before = now,
        .not_after = now + (time_t)o->days * 86400,
        .issuer = e->issuer ? b->cert[issuer] : NULL,
        .issuer_key = b->key[issuer],
    };
    if ((r = cert_make(&cs, &b->cert[i], err)) < 0)
        return tm_err_prefix(err, "certificate of %s", e->name);
    _cleanup_(BIO_freep) BIO *mem = BIO_new(BIO_s_mem());
    if (!mem || (r = pem_write_cert(mem, b->cert[i], err)) < 0)
        return r < 0 ? r : tm_err_set(err, ENOMEM, "out of memory");
    snprintf(name, sizeof(name), "%s.pem", e->name);
    if ((r = pki_write_new(dirfd, name, mem, 0644, err)) < 0)
        return r;
    if (e->issuer && (r = pki_record_issued(p, &pki_entities[issuer], b->cert[i], err)) < 0)
        return r;
    if (pki_entity_is_ca(e) && (r = pki_write_crl_initial(p, e, b->cert[i], b->key[i], 30, err)) < 0)
        return r;
    return 0;
}

static int build(const struct init_opts *o, const char *tmp, struct p11tok *tok, const char *pass, tm_err *err)
{
    _cleanup_(pki_close) struct pki p = {.lock_fd = -1};
    int r = pki_new(&p, tmp, o->alg, tok ? (o->module ? o->module : SOFTHSM_MODULE) : NULL, err);
    if (r < 0)
        return r;
    static const char *const subdirs[] = {"software-signing", "customer", "crl"};
    for (size_t i = 0; i < ARRAY_SIZE(subdirs); i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/%s", tmp, subdirs[i]);
        if (mkdir(path, 0755) < 0)
            return tm_err_sys(err, "cannot create %s", path);
    }
    /* Token objects of this PKI share a random label prefix: two PKIs on one token never
     * mix up their keys, and the objects of one PKI are easy to find. */
    unsigned char rnd[4];
    char prefix[32] = "";
    if (tok) {
        if (RAND_bytes(rnd, sizeof(rnd)) != 1)
            return ossl_fail(err, EIO, "no random label");
        snprintf(prefix, sizeof(prefix), "trustme-pki-%02x%02x%02x%02x-", rnd[0], rnd[1], rnd[2], rnd[3]);
    }
    _cleanup_(built_free) struct built b = {0};
    for (size_t i = 0; i < pki_entities_count; i++) {
        if (interrupted)
            return tm_err_set(err, EINTR, "interrupted by signal %d", (int)interrupted);
        if ((r = build_entity(o, &p, tok, pass, prefix, i, &b, err)) < 0)
            return r;
    }
    if ((r = pki_write_crl_bundle(tmp, err)) < 0 || (r = pki_save(&p, err)) < 0)
        return r;
    for (size_t i = 0; i < ARRAY_SIZE(subdirs); i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/%s", tmp, subdirs[i]);
        if ((r = fsync_dir(path, err)) < 0)
            return r;
    }
    return fsync_dir(tmp, err);
}

static int parse(int argc, char **argv, struct init_opts *o)
{
    enum { OPT_ALG = 256, OPT_PASS, OPT_P11, OPT_PIN, OPT_MODULE, OPT_DAYS };
    static const struct option opts[] = {{"algorithm", required_argument, NULL, OPT_ALG},
                                         {"passphrase-file", required_argument, NULL, OPT_PASS},
                                         {"pkcs11", required_argument, NULL, OPT_P11},
                                         {"pin-file", required_argument, NULL, OPT_PIN},
                                         {"pkcs11-module", required_argument, NULL, OPT_MODULE},
                                         {"days", required_argument, NULL, OPT_DAYS},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    *o = (struct init_opts){.alg = PKI_ALG_ECDSA_P256, .days = 3650};
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_ALG:
            if (pki_alg_parse(optarg, &o->alg) < 0)
                return usage_error("init", "unknown algorithm \"%s\" (ecdsa-p256, rsa-pss-3072)", optarg);
            break;
        case OPT_PASS: o->passphrase_file = optarg; break;
        case OPT_P11: o->pkcs11 = optarg; break;
        case OPT_PIN: o->pin_file = optarg; break;
        case OPT_MODULE: o->module = optarg; break;
        case OPT_DAYS:
            if (parse_days(optarg, &o->days) < 0)
                return usage_error("init", "--days wants a number of days, 1..36500");
            break;
        case 'h': pki_usage(stdout); return -1;
        default: return EXIT_USAGE;
        }
    }
    if (optind != argc - 1)
        return usage_error("init", "one directory expected");
    o->dir = argv[optind];
    if (o->pkcs11 && o->passphrase_file)
        return usage_error("init", "--passphrase-file and --pkcs11 exclude each other");
    if (!o->pkcs11 && (o->pin_file || o->module))
        return usage_error("init", "--pin-file and --pkcs11-module need --pkcs11");
    if (!o->dir[0] || strlen(o->dir) > 200)
        return usage_error("init", "the directory name must have 1..200 characters");
    return 0;
}

int cmd_init(int argc, char **argv)
{
    struct init_opts o;
    int r = parse(argc, argv, &o);
    if (r != 0)
        return r < 0 ? 0 : r;
    tm_err err = {0};
    /* DIR without trailing slashes, so that its parent and base name are right */
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", o.dir);
    for (size_t n = strlen(dir); n > 1 && dir[n - 1] == '/'; n--)
        dir[n - 1] = '\0';
    struct stat st;
    if (lstat(dir, &st) == 0) {
        tm_err_set(&err, EEXIST, "%s exists: refusing to touch it (init makes a new PKI only)", dir);
        return verb_fail("init", &err);
    }
    char parent_buf[PATH_MAX], base_buf[PATH_MAX];
    snprintf(parent_buf, sizeof(parent_buf), "%s", dir);
    snprintf(base_buf, sizeof(base_buf), "%s", dir);
    const char *parent = dirname(parent_buf), *base = basename(base_buf);

    _cleanup_(secret_text_freep) char *secret = NULL;
    _cleanup_(p11tok_closep) struct p11tok *tok = NULL;
    if (o.pkcs11) {
        struct p11uri u;
        if ((r = p11uri_parse(o.pkcs11, &u, &err)) < 0)
            return verb_fail("init", &err);
        if (u.object[0] || u.id_len)
            return usage_error("init", "--pkcs11 names the token only (pkcs11:token=LABEL): "
                                       "init makes the keys");
        if (!o.module && u.module_path[0])
            o.module = strdupa(u.module_path);
        char prompt[P11URI_FIELD_MAX + 32];
        snprintf(prompt, sizeof(prompt), "PIN of token \"%s\"", u.token);
        if ((r = secret_read(o.pin_file, prompt, false, &secret, &err)) < 0 ||
            (r = p11tok_open(o.module ? o.module : SOFTHSM_MODULE, u.token, u.serial[0] ? u.serial : NULL, secret, true,
                             &tok, &err)) < 0)
            return verb_fail("init", &err);
    } else if ((r = secret_read(o.passphrase_file, "passphrase for the PKI's keys", true, &secret, &err)) < 0) {
        return verb_fail("init", &err);
    }

    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s/.%s.tmp-XXXXXX", parent, base);
    struct sigaction sa = {.sa_handler = on_signal}, old[3];
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < ARRAY_SIZE(sigs); i++)
        sigaction(sigs[i], &sa, &old[i]);
    if (!mkdtemp(tmp)) {
        tm_err_sys(&err, "cannot create a temporary directory in %s", parent);
        return verb_fail("init", &err);
    }
    r = chmod(tmp, 0755) < 0 ? tm_err_sys(&err, "cannot chmod %s", tmp) : 0;
    if (r == 0)
        r = build(&o, tmp, tok, o.pkcs11 ? NULL : secret, &err);
    if (r == 0 && interrupted)
        r = tm_err_set(&err, EINTR, "interrupted by signal %d", (int)interrupted);
    if (r == 0 && renameat2(AT_FDCWD, tmp, AT_FDCWD, dir, RENAME_NOREPLACE) < 0)
        r = errno == EEXIST ? tm_err_set(&err, EEXIST,
                                         "%s appeared while the PKI was being made: "
                                         "left untouched",
                                         dir)
                            : tm_err_sys(&err, "cannot rename %s to %s", tmp, dir);
    if (r < 0) {
        rm_rf(tmp); /* token objects go in p11tok_close: not kept */
        return verb_fail("init", &err);
    }
    fsync_parent(dir);
    if (tok)
        p11tok_keep(tok);
    printf("%s: %s PKI made, keys %s\n", dir, pki_alg_name(o.alg), tok ? "on the token" : "in encrypted files");
    return 0;
}
