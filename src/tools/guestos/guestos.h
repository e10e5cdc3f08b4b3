/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme-guestos: builds a GuestOS directory (docs/GUESTOS.md) from root file system trees. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto.h"
#include "error.h"

/* The limits of docs/GUESTOS.md, checked before any work is done. */
#define GOS_NAME_MAX 63
#define GOS_IMAGE_NAME_MAX 64
#define GOS_VERSION_MAX (UINT64_C(1) << 53)
#define GOS_DESCRIPTION_MAX 256
#define GOS_MOUNTS_MAX 16
#define GOS_TMPFS_MB_MAX (1024 * 1024)
#define GOS_ARCH_MAX 31
/* As for container configs (docs/CONFIG.md), which guestos.json is parsed like. */
#define GOS_ARGS_MAX 256
#define GOS_ENV_MAX 256
#define GOS_ARG_LEN_MAX 4096
#define GOS_ENV_NAME_MAX 256
/* trustmed reads no larger guestos.json. */
#define GOS_JSON_MAX (64 * 1024)

enum gos_kind { GOS_SHARED, GOS_OVERLAY, GOS_DATA, GOS_TMPFS };
enum gos_fs { GOS_SQUASHFS, GOS_EROFS };

struct gos_mount {
    enum gos_kind kind;
    const char *mount_point;
    /* shared/overlay: built from source into image (a file name in the GuestOS directory) */
    const char *source;
    char image[GOS_IMAGE_NAME_MAX + 1];
    enum gos_fs fs;
    uint64_t size; /* filled by the build */
    char sha256[TM_SHA256_HEX_LEN + 1]; /* filled by the build */
    /* tmpfs: 0 leaves the daemon's default */
    unsigned size_mb;
    /* Keep the tree's owners in the image (an imported OCI image's files belong to its users);
     * a build from a directory makes every owner root. */
    bool keep_owners;
};

struct gos_spec {
    const char *name;
    uint64_t version;
    const char *architecture;
    const char *init;
    const char **args;
    size_t n_args;
    const char **env; /* "KEY=VALUE" */
    size_t n_env;
    const char *description;
    const char *working_dir; /* NULL: the container's "/" */
    bool has_user;
    uint32_t uid, gid; /* init's, when has_user */
    const char **ports; /* "80/tcp": hints, nothing is opened */
    size_t n_ports;
    const char *oci_manifest, *oci_config; /* the imported image's digests, or NULL */
    struct gos_mount mounts[GOS_MOUNTS_MAX];
    size_t n_mounts;
};

/* How guestos.json gets signed: by trustme-pki, with these options passed through. */
struct gos_signing {
    bool unsigned_ok;
    const char *pki_dir, *signer; /* --pki DIR --signer software|guestos */
    const char *key, *cert, *chain; /* --key K --cert C [--chain P] */
    const char *passphrase_file, *pin_file;
    const char *pkcs11_module; /* for a pkcs11: key whose URI names no module */
};

/* validate.c: the rules of docs/GUESTOS.md, each failure naming the offending value. */
bool gos_valid_name(const char *s);
bool gos_valid_image_name(const char *s);
bool gos_canonical_path(const char *s);
bool gos_valid_utf8(const char *s);
bool gos_valid_port(const char *s);
int gos_parse_version(const char *s, uint64_t *ret, tm_err *err);
int gos_spec_validate(const struct gos_spec *spec, tm_err *err);
const char *gos_fs_name(enum gos_fs fs);
const char *gos_kind_name(enum gos_kind kind);

/* manifest.c: guestos.json, pretty and in the key order of the documentation. */
int gos_manifest_write(const struct gos_spec *spec, const char *path, tm_err *err);

/* run.c: run a program without a shell. With capture, its stdout and stderr are kept and put into
 * err when it fails (and dropped when it succeeds); without, it shares our stdin and stderr (for
 * prompts) and its stdout goes to our stderr. */
int gos_run(const char *const argv[], bool capture, tm_err *err);

/* image.c */
int gos_make_image(const char *source, const char *image_path, enum gos_fs fs, const char *seed, bool keep_owners,
                   tm_err *err);
/* Hash fd from its start; ret_size is what was read, checked against fstat. */
int gos_hash_fd(int fd, char hex[TM_SHA256_HEX_LEN + 1], uint64_t *ret_size, tm_err *err);
int gos_hash_file(const char *path, char hex[TM_SHA256_HEX_LEN + 1], uint64_t *ret_size, tm_err *err);

/* build.c: PARENT/NAME-VERSION/, complete or not at all. */
int gos_build(struct gos_spec *spec, const char *out_dir, const struct gos_signing *sign, char *ret_path,
              size_t ret_path_size, tm_err *err);
/* Set by SIGINT/SIGTERM/SIGHUP: the build stops at its next step and cleans up. */
extern volatile int gos_interrupted;

/* oci_import.c: trustme-guestos import SOURCE: the image's tree as root.img, its config mapped
 * into spec (where the options gave nothing), then gos_build. */
struct gos_import_opts {
    const char *source, *platform, *ref;
    uint64_t max_bytes;
    bool init_given, arch_given;
    const char *description;
};
int gos_import(struct gos_spec *spec, const struct gos_import_opts *o, const char *out_dir,
               const struct gos_signing *sign, char *ret_path, size_t ret_path_size, tm_err *err);
#define GOS_PORTS_MAX 64
