/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme-guestos: the GuestOS builder (docs/GUESTOS.md, "Building a GuestOS"). */
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include "cleanup.h"
#include "guestos.h"
#include "oci.h"
#include "version.h"

static void usage(FILE *out)
{
    fprintf(out, "Usage: trustme-guestos build ROOTFS_DIR --name NAME --version N --out PARENT_DIR\n"
                 "                             (--pki DIR --signer software|guestos | --key KEY --cert CERT\n"
                 "                              [--chain PEM] | --unsigned) [OPTIONS]\n"
                 "       trustme-guestos import SOURCE --name NAME --version N --out PARENT_DIR (signing) [OPTIONS]\n"
                 "       trustme-guestos hash FILE\n"
                 "\n"
                 "build   makes PARENT_DIR/NAME-N/ (docs/GUESTOS.md): root.img from ROOTFS_DIR, the images\n"
                 "        of --image, guestos.json describing them, and its signature made by trustme-pki.\n"
                 "        The directory appears complete or not at all; an existing NAME-N is refused.\n"
                 "import  the same from an OCI image: SOURCE is an OCI image layout directory (index.json),\n"
                 "        an OCI archive (a tar of one) or a docker-archive (docker save). Every blob is\n"
                 "        checked against its digest, the layers are applied in order (whiteouts included)\n"
                 "        keeping owners, modes and file capabilities, and the image config gives init,\n"
                 "        args, env, working_dir, user, ports and data mounts (the options override them).\n"
                 "hash    prints the SHA-256 (lower-case hex) of FILE, as guestos.json has it.\n"
                 "\n"
                 "Build options:\n"
                 "  --name NAME              1-63 letters, digits, '_', '.', '-' (first a letter or digit)\n"
                 "  --version N              integer 1 .. 2^53; devices install only greater versions\n"
                 "  --out PARENT_DIR         existing directory the GuestOS directory is made in\n"
                 "  --fs squashfs|erofs      file system of root.img (default squashfs; both lz4)\n"
                 "  --root-kind overlay|shared\n"
                 "                           '/' writable through an overlay (default) or read-only\n"
                 "  --data PATH              a per-container persistent directory at PATH\n"
                 "  --tmpfs PATH[:SIZE_MB]   a tmpfs at PATH (default size: the daemon's, 64 MiB)\n"
                 "  --image DIR:PATH[:squashfs|erofs]\n"
                 "                           another read-only (shared) image, built from DIR, mounted at\n"
                 "                           PATH, named after it (/opt/tools: opt-tools.img); default --fs\n"
                 "  --init PATH              pid 1 of the container (default /sbin/init)\n"
                 "  --arg ARG                an argument of init (repeatable, in order)\n"
                 "  --env KEY=VALUE          init's environment (repeatable)\n"
                 "  --arch ARCH              architecture (default: this machine's, uname -m)\n"
                 "  --description TEXT       free text, at most 256 bytes\n"
                 "Mounts are applied in the order given, after '/'; at most 16 in all.\n"
                 "\n"
                 "Import options (and the build options but --image):\n"
                 "  --platform OS/ARCH[/VARIANT]  the image of an index to take (default: the\n"
                 "                           platform this tool was built for, below)\n"
                 "  --ref NAME               the image named NAME in index.json (ref.name annotation) or,\n"
                 "                           in a docker-archive, with the tag NAME; needed if several\n"
                 "  --max-size MIB           refuse images that unpack to more (default 16384)\n"
                 "  --init PATH [--arg A]... replace the image's Entrypoint and Cmd\n"
                 "\n"
                 "Signing (one of them is required; passed to trustme-pki sign, docs/PKI.md):\n"
                 "  --pki DIR --signer software|guestos\n"
                 "                           a key of a trustme-pki development PKI\n"
                 "  --key KEY --cert CERT [--chain PEM]\n"
                 "                           a key file or PKCS#11 URI with its certificate and CA chain\n"
                 "  --passphrase-file F      the key's passphrase (else trustme-pki asks)\n"
                 "  --pin-file F             the token's PIN for a PKCS#11 key (else trustme-pki asks)\n"
                 "  --pkcs11-module PATH     the PKCS#11 module, if the key's URI names none\n"
                 "  --unsigned               no signature (development only: trustmed may refuse it)\n"
                 "trustme-pki is taken from next to trustme-guestos, else from $PATH.\n");
    fprintf(out, "This trustme-guestos's default --platform: %s\n", oci_host_platform());
}

static void on_signal(int sig)
{
    gos_interrupted = sig;
}

static int parse_fs(const char *s, enum gos_fs *fs)
{
    if (strcmp(s, "squashfs") == 0)
        *fs = GOS_SQUASHFS;
    else if (strcmp(s, "erofs") == 0)
        *fs = GOS_EROFS;
    else
        return -1;
    return 0;
}

static bool all_digits(const char *s)
{
    return *s && strspn(s, "0123456789") == strlen(s);
}

/* --image DIR:PATH[:FS]. Splitting from the right lets DIR contain ':'. Parsed in place. */
static int parse_image(char *arg, enum gos_fs default_fs, struct gos_mount *m)
{
    m->kind = GOS_SHARED;
    m->fs = default_fs;
    char *c = strrchr(arg, ':');
    if (c && parse_fs(c + 1, &m->fs) == 0) {
        *c = '\0';
        c = strrchr(arg, ':');
    }
    if (!c || c == arg || c[1] != '/') {
        fprintf(stderr, "trustme-guestos: --image %s: expected DIR:/MOUNT/POINT[:squashfs|erofs]\n", arg);
        return -1;
    }
    *c = '\0';
    m->source = arg;
    m->mount_point = c + 1;
    if (strcmp(m->mount_point, "/") == 0) {
        fprintf(stderr, "trustme-guestos: --image %s:/: the root image is made from ROOTFS_DIR\n", arg);
        return -1;
    }
    /* "/opt/tools" -> "opt-tools.img"; "/" is refused by validation (the root image is ROOTFS_DIR). */
    size_t len = strlen(m->mount_point + 1);
    if (len + 4 > GOS_IMAGE_NAME_MAX) {
        fprintf(stderr,
                "trustme-guestos: --image mount point %s is too long for an image name "
                "(at most %d characters)\n",
                m->mount_point, GOS_IMAGE_NAME_MAX - 4 + 1);
        return -1;
    }
    snprintf(m->image, sizeof(m->image), "%s.img", m->mount_point + 1);
    for (char *p = m->image; *p; p++)
        if (*p == '/')
            *p = '-';
    return 0;
}

/* --tmpfs PATH[:SIZE_MB] */
static int parse_tmpfs(char *arg, struct gos_mount *m)
{
    m->kind = GOS_TMPFS;
    m->mount_point = arg;
    char *c = strrchr(arg, ':');
    if (!c)
        return 0;
    unsigned long mb = all_digits(c + 1) && strlen(c + 1) <= 9 ? strtoul(c + 1, NULL, 10) : 0;
    if (mb < 1 || mb > GOS_TMPFS_MB_MAX) {
        fprintf(stderr, "trustme-guestos: --tmpfs %s: SIZE_MB must be 1 to %d\n", arg, GOS_TMPFS_MB_MAX);
        return -1;
    }
    *c = '\0';
    m->size_mb = (unsigned)mb;
    return 0;
}

static int check_signing_options(const struct gos_signing *s)
{
    const char *msg = NULL;
    bool pki = s->pki_dir || s->signer, key = s->key || s->cert || s->chain;
    if (s->unsigned_ok && (pki || key || s->passphrase_file || s->pin_file || s->pkcs11_module))
        msg = "--unsigned excludes the signing options";
    else if (pki && key)
        msg = "--pki/--signer and --key/--cert/--chain exclude each other";
    else if (pki && (!s->pki_dir || !s->signer))
        msg = "--pki DIR needs --signer software|guestos";
    else if (s->signer && strcmp(s->signer, "software") && strcmp(s->signer, "guestos"))
        msg = "--signer must be software or guestos";
    else if (key && (!s->key || !s->cert))
        msg = "--key needs --cert (and --chain if the CA is not the root)";
    else if (!pki && !key && !s->unsigned_ok)
        msg = "how to sign: --pki DIR --signer ..., --key ... --cert ..., or --unsigned";
    if (msg)
        fprintf(stderr, "trustme-guestos: %s\n", msg);
    return msg ? -1 : 0;
}

enum {
    O_NAME = 256,
    O_VERSION,
    O_OUT,
    O_FS,
    O_ROOT_KIND,
    O_DATA,
    O_TMPFS,
    O_IMAGE,
    O_INIT,
    O_ARG,
    O_ENV,
    O_ARCH,
    O_DESCRIPTION,
    O_PKI,
    O_SIGNER,
    O_KEY,
    O_CERT,
    O_CHAIN,
    O_PASSPHRASE_FILE,
    O_PIN_FILE,
    O_PKCS11_MODULE,
    O_UNSIGNED,
    O_PLATFORM,
    O_REF,
    O_MAX_SIZE,
};

static const struct option build_options[] = {
    {"name", required_argument, NULL, O_NAME},
    {"version", required_argument, NULL, O_VERSION},
    {"out", required_argument, NULL, O_OUT},
    {"fs", required_argument, NULL, O_FS},
    {"root-kind", required_argument, NULL, O_ROOT_KIND},
    {"data", required_argument, NULL, O_DATA},
    {"tmpfs", required_argument, NULL, O_TMPFS},
    {"image", required_argument, NULL, O_IMAGE},
    {"init", required_argument, NULL, O_INIT},
    {"arg", required_argument, NULL, O_ARG},
    {"env", required_argument, NULL, O_ENV},
    {"arch", required_argument, NULL, O_ARCH},
    {"description", required_argument, NULL, O_DESCRIPTION},
    {"pki", required_argument, NULL, O_PKI},
    {"signer", required_argument, NULL, O_SIGNER},
    {"key", required_argument, NULL, O_KEY},
    {"cert", required_argument, NULL, O_CERT},
    {"chain", required_argument, NULL, O_CHAIN},
    {"passphrase-file", required_argument, NULL, O_PASSPHRASE_FILE},
    {"pin-file", required_argument, NULL, O_PIN_FILE},
    {"pkcs11-module", required_argument, NULL, O_PKCS11_MODULE},
    {"unsigned", no_argument, NULL, O_UNSIGNED},
    {"platform", required_argument, NULL, O_PLATFORM},
    {"ref", required_argument, NULL, O_REF},
    {"max-size", required_argument, NULL, O_MAX_SIZE},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* build, or with import set, import (the same options, and SOURCE for ROOTFS_DIR). */
static int cmd_build(int argc, char **argv, bool import)
{
    struct gos_spec spec = {.init = "/sbin/init"};
    struct gos_import_opts imp = {.max_bytes = (uint64_t)OCI_DEFAULT_MAX_SIZE_MB << 20};
    const char *cmd = import ? "import" : "build";
    struct gos_signing sign = {0};
    /* mounts[0] is '/', filled in after all options (--fs may come after --image). */
    struct gos_mount *root = &spec.mounts[0];
    const char *version = NULL, *root_kind = "overlay";
    char *out = NULL;
    char *image_args[GOS_MOUNTS_MAX] = {0}; /* --image values, parsed once --fs is known */
    enum gos_fs fs = GOS_SQUASHFS;
    _cleanup_free_ const char **args = calloc((size_t)argc, sizeof(*args));
    _cleanup_free_ const char **env = calloc((size_t)argc, sizeof(*env));
    if (!args || !env)
        return fprintf(stderr, "trustme-guestos: out of memory\n"), 1;
    spec.args = args;
    spec.env = env;
    spec.n_mounts = 1;

    int c;
    while ((c = getopt_long(argc, argv, "h", build_options, NULL)) != -1) {
        struct gos_mount *m = &spec.mounts[spec.n_mounts];
        if ((c == O_DATA || c == O_TMPFS || c == O_IMAGE) && spec.n_mounts == GOS_MOUNTS_MAX) {
            fprintf(stderr, "trustme-guestos: too many mounts (at most %d, '/' included)\n", GOS_MOUNTS_MAX);
            return 2;
        }
        switch (c) {
        case O_NAME: spec.name = optarg; break;
        case O_VERSION: version = optarg; break;
        case O_OUT: out = optarg; break;
        case O_FS:
            if (parse_fs(optarg, &fs) < 0)
                return fprintf(stderr, "trustme-guestos: --fs must be squashfs or erofs\n"), 2;
            break;
        case O_ROOT_KIND: root_kind = optarg; break;
        case O_DATA:
            m->kind = GOS_DATA;
            m->mount_point = optarg;
            spec.n_mounts++;
            break;
        case O_TMPFS:
            if (parse_tmpfs(optarg, m) < 0)
                return 2;
            spec.n_mounts++;
            break;
        case O_IMAGE: image_args[spec.n_mounts++] = optarg; break;
        case O_INIT:
            spec.init = optarg;
            imp.init_given = true;
            break;
        case O_ARG: args[spec.n_args++] = optarg; break;
        case O_ENV: env[spec.n_env++] = optarg; break;
        case O_ARCH: spec.architecture = optarg; break;
        case O_DESCRIPTION: spec.description = optarg; break;
        case O_PKI: sign.pki_dir = optarg; break;
        case O_SIGNER: sign.signer = optarg; break;
        case O_KEY: sign.key = optarg; break;
        case O_CERT: sign.cert = optarg; break;
        case O_CHAIN: sign.chain = optarg; break;
        case O_PASSPHRASE_FILE: sign.passphrase_file = optarg; break;
        case O_PIN_FILE: sign.pin_file = optarg; break;
        case O_PKCS11_MODULE: sign.pkcs11_module = optarg; break;
        case O_UNSIGNED: sign.unsigned_ok = true; break;
        case O_PLATFORM: imp.platform = optarg; break;
        case O_REF: imp.ref = optarg; break;
        case O_MAX_SIZE: {
            unsigned long long mb = all_digits(optarg) && strlen(optarg) <= 9 ? strtoull(optarg, NULL, 10) : 0;
            if (!mb)
                return fprintf(stderr, "trustme-guestos: --max-size must be 1 to 999999999 (MiB)\n"), 2;
            imp.max_bytes = mb << 20;
            break;
        }
        case 'h': usage(stdout); return 0;
        default: fprintf(stderr, "Try 'trustme-guestos --help'.\n"); return 2;
        }
    }
    if (optind + 1 != argc || !spec.name || !version || !out) {
        fprintf(stderr,
                "trustme-guestos %s: %s, --name, --version and --out are required "
                "(and nothing else without an option)\nTry 'trustme-guestos --help'.\n",
                cmd, import ? "SOURCE" : "ROOTFS_DIR");
        return 2;
    }
    if (import && (spec.n_args && !imp.init_given))
        return fprintf(stderr, "trustme-guestos import: --arg replaces the image's arguments only with --init\n"), 2;
    if (!import && (imp.platform || imp.ref || imp.max_bytes != (uint64_t)OCI_DEFAULT_MAX_SIZE_MB << 20))
        return fprintf(stderr, "trustme-guestos build: --platform, --ref and --max-size are import options\n"), 2;
    if (import)
        for (size_t i = 1; i < spec.n_mounts; i++)
            if (image_args[i])
                return fprintf(stderr, "trustme-guestos import: --image is a build option\n"), 2;
    if (check_signing_options(&sign) < 0)
        return 2;
    /* "out/" would make "out//name-1" in every message */
    for (size_t n = strlen(out); n > 1 && out[n - 1] == '/'; n--)
        out[n - 1] = '\0';
    tm_err err = {0};
    if (gos_parse_version(version, &spec.version, &err) < 0)
        return fprintf(stderr, "trustme-guestos: %s\n", err.msg), 2;
    for (size_t i = 1; i < spec.n_mounts; i++)
        if (image_args[i] && parse_image(image_args[i], fs, &spec.mounts[i]) < 0)
            return 2;
    root->mount_point = "/";
    root->source = argv[optind];
    root->fs = fs;
    snprintf(root->image, sizeof(root->image), "root.img");
    if (strcmp(root_kind, "overlay") == 0)
        root->kind = GOS_OVERLAY;
    else if (strcmp(root_kind, "shared") == 0)
        root->kind = GOS_SHARED;
    else
        return fprintf(stderr, "trustme-guestos: --root-kind must be overlay or shared\n"), 2;
    struct utsname u = {0};
    if (!spec.architecture)
        spec.architecture = uname(&u) == 0 ? u.machine : "";

    /* Ctrl-C or a kill ends the build at its next step, which removes the temporary directory. */
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);

    char path[PATH_MAX];
    imp.source = argv[optind];
    imp.arch_given = spec.architecture != NULL && spec.architecture != u.machine;
    imp.description = spec.description;
    if ((import ? gos_import(&spec, &imp, out, &sign, path, sizeof(path), &err)
                : gos_build(&spec, out, &sign, path, sizeof(path), &err)) < 0) {
        fprintf(stderr, "trustme-guestos: %s\n", err.msg);
        return err.code == EINVAL || err.code == EEXIST ? 2 : 1;
    }
    fprintf(stderr, "trustme-guestos: built %s\n", path);
    printf("%s\n", path);
    return 0;
}

static int cmd_hash(int argc, char **argv)
{
    if (argc != 2 || argv[1][0] == '-') {
        if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")))
            return usage(stdout), 0;
        fprintf(stderr, "Usage: trustme-guestos hash FILE\n");
        return 2;
    }
    char hex[TM_SHA256_HEX_LEN + 1];
    uint64_t size;
    tm_err err = {0};
    if (gos_hash_file(argv[1], hex, &size, &err) < 0) {
        fprintf(stderr, "trustme-guestos: %s\n", err.msg);
        return 1;
    }
    printf("%s\n", hex);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))
        return usage(stdout), 0;
    if (!strcmp(argv[1], "--version"))
        return printf("trustme-guestos %s\n", TRUSTME_VERSION), 0;
    if (!strcmp(argv[1], "build"))
        return cmd_build(argc - 1, argv + 1, false);
    if (!strcmp(argv[1], "import"))
        return cmd_build(argc - 1, argv + 1, true);
    if (!strcmp(argv[1], "hash"))
        return cmd_hash(argc - 1, argv + 1);
    fprintf(stderr, "trustme-guestos: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
