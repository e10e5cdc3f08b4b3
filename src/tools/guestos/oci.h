/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme-guestos import: OCI image layouts, OCI archives and docker-archives turned into a root
 * file system tree (docs/GUESTOS.md, "Importing an OCI image"). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* Bounds against hostile images: JSON documents, layers, the unpacked tree. */
#define OCI_JSON_MAX (4 * 1024 * 1024)
#define OCI_LAYERS_MAX 256
#define OCI_ENTRIES_MAX (4 * 1024 * 1024)
#define OCI_DEFAULT_MAX_SIZE_MB (16 * 1024)

enum oci_compression { OCI_PLAIN, OCI_GZIP, OCI_ZSTD, OCI_ANY };

/* The budget of one unpack, shared by all its layers: bytes of file content (sparse files count
 * with their full size) and entries. */
struct oci_budget {
    uint64_t max_bytes, bytes;
    uint64_t max_entries, entries;
    /* The longest entry name: the tree's own path and it stay below PATH_MAX, so that the tree
     * can be built from and removed by path (0: no limit). */
    size_t max_path;
};

/* oci_layer.c: apply one layer (a tar stream on fd, verified beforehand) to the tree at root_fd,
 * with OCI whiteouts. what names the layer in errors ("layer 2 (sha256:...)"). Refuses entries
 * that would leave the tree or write through a symbolic link, device nodes and anything over
 * budget. */
int oci_apply_layer(int root_fd, int fd, enum oci_compression comp, const char *what, struct oci_budget *budget,
                    tm_err *err);
/* Unpack a plain archive of regular files and directories (an OCI archive or a docker-archive)
 * into the empty directory at dir_fd. */
int oci_unpack_archive(int dir_fd, int fd, const char *what, struct oci_budget *budget, tm_err *err);
/* Open a path beneath root_fd without following any symbolic link. */
int oci_open_beneath(int root_fd, const char *path, int flags, tm_err *err);

/* The image's runtime configuration (its config's "config" object), as the GuestOS uses it. */
struct oci_image {
    char manifest_digest[80]; /* "sha256:..." ("" for a docker-archive without a manifest) */
    char config_digest[80];
    char architecture[32]; /* as uname -m says */
    char **entrypoint, **cmd, **env;
    size_t n_entrypoint, n_cmd, n_env;
    char *working_dir, *user;
    char **ports; /* "80/tcp", sorted */
    size_t n_ports;
    char **volumes; /* sorted */
    size_t n_volumes;
};

struct oci_source {
    const char *path; /* layout directory, OCI archive or docker-archive */
    const char *platform; /* "os/arch[/variant]"; NULL: oci_host_platform() */
    const char *ref; /* org.opencontainers.image.ref.name or a docker RepoTag; NULL: the only one */
    uint64_t max_bytes;
};

/* oci_layout.c: find the image in src, check every blob it uses, and unpack its layers in order
 * into the empty directory rootfs_dir; scratch_dir holds an unpacked archive, and its parent (a
 * private directory) the copies of a layout directory's blobs. */
int oci_import_tree(const struct oci_source *src, const char *scratch_dir, const char *rootfs_dir,
                    struct oci_image *img, tm_err *err);
void oci_image_free(struct oci_image *img);
/* "os/arch" of the machine this was built for, the default --platform. */
const char *oci_host_platform(void);
