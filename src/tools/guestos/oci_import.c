/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme-guestos import: an OCI image becomes a root file system tree (oci_layout.c), its config
 * becomes guestos.json's init, args, env, working_dir, user, ports and data mounts, and the tree
 * goes through the same build as `trustme-guestos build` (build.c): reproducible images, signed
 * by trustme-pki, PARENT/NAME-N complete or not at all. The tree is unpacked in
 * PARENT/.NAME-N.oci.XXXXXX, removed whatever happens. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cleanup.h"
#include "fileio.h"
#include "guestos.h"
#include "oci.h"

/* Open path as if root_fd were "/": symbolic links are followed but cannot leave the tree (the
 * image's /bin -> usr/bin must resolve, an image's link to /etc/shadow of the host must not). */
static int open_in_root(int root_fd, const char *path, int flags)
{
    struct open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC),
                           .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV};
    while (*path == '/')
        path++;
    int fd = (int)syscall(SYS_openat2, root_fd, *path ? path : ".", &how, sizeof(how));
    return fd < 0 ? -errno : fd;
}

/* A relative Entrypoint/Cmd ("sh") is looked up along the image's PATH, as a runtime would: the
 * container's init must be an absolute path. */
static int resolve_init(int root_fd, const char *cmd, const struct oci_image *img, char **ret, tm_err *err)
{
    if (cmd[0] == '/')
        return (*ret = strdup(cmd)) ? 0 : tm_err_set(err, ENOMEM, "out of memory");
    if (strchr(cmd, '/'))
        return tm_err_set(err, EINVAL, "image config: the command \"%s\" is a relative path", cmd);
    const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    for (size_t i = 0; i < img->n_env; i++)
        if (!strncmp(img->env[i], "PATH=", 5))
            path = img->env[i] + 5;
    for (const char *p = path; *p;) {
        size_t len = strcspn(p, ":");
        char cand[PATH_MAX];
        if (len && p[0] == '/' && snprintf(cand, sizeof(cand), "%.*s/%s", (int)len, p, cmd) < (int)sizeof(cand)) {
            int fd = open_in_root(root_fd, cand, O_PATH);
            struct stat st;
            if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111)) {
                close(fd);
                return (*ret = strdup(cand)) ? 0 : tm_err_set(err, ENOMEM, "out of memory");
            }
            if (fd >= 0)
                close(fd);
        }
        p += len;
        if (*p)
            p++;
    }
    return tm_err_set(err, ENOENT, "image config: the command \"%s\" is not in the image's PATH (%s)", cmd, path);
}

/* Look name up in the image's /etc/passwd or /etc/group: a line "name:x:id:gid:..." whose
 * field key (0: by name, 2: by id) is name; its id (field 2) and, in passwd, group (field 3).
 * -EINVAL when the file is not a regular one (opening a FIFO of the image without O_NONBLOCK
 * would wait for a writer for ever). */
static int lookup_id(int root_fd, const char *file, int key, const char *name, uint32_t *ret_id, uint32_t *ret_gid)
{
    _cleanup_close_ int fd = open_in_root(root_fd, file, O_RDONLY | O_NONBLOCK);
    if (fd < 0)
        return fd;
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        return -EINVAL;
    _cleanup_fclose_ FILE *f = fdopen(fd, "r");
    if (!f)
        return -ENOMEM;
    fd = -1; /* f owns it */
    char line[4096];
    while (fgets(line, sizeof(line), f)) {
        char *fields[4] = {0}, *tok = line;
        size_t n = 0;
        line[strcspn(line, "\n")] = '\0';
        /* not strtok: it would merge empty fields ("x::1:1:") */
        while (n < 4 && tok) {
            fields[n++] = tok;
            char *c = strchr(tok, ':');
            if (c)
                *c++ = '\0';
            tok = c;
        }
        if (n < 3 || strcmp(fields[key], name))
            continue;
        *ret_id = (uint32_t)strtoul(fields[2], NULL, 10);
        if (ret_gid)
            *ret_gid = n >= 4 ? (uint32_t)strtoul(fields[3], NULL, 10) : 0;
        return 0;
    }
    return -ENOENT;
}

static bool numeric(const char *s, uint32_t *ret)
{
    size_t n = strspn(s, "0123456789");
    if (!n || s[n] || n > 10 || strtoull(s, NULL, 10) > 0xfffffffeULL)
        return false;
    *ret = (uint32_t)strtoul(s, NULL, 10);
    return true;
}

/* User: "name", "uid", "name:group", "uid:gid" (Docker's forms), resolved at import time
 * against the image itself, so the device never reads the guest's passwd file. A uid without a
 * group gets the group of its passwd entry, or 0 without one (as Docker does). */
static int resolve_user(int root_fd, const char *user, struct gos_spec *spec, tm_err *err)
{
    char u[256];
    if (strlen(user) >= sizeof(u))
        return tm_err_set(err, EINVAL, "image config: User \"%.64s...\" is too long", user);
    snprintf(u, sizeof(u), "%s", user);
    char *g = strchr(u, ':');
    if (g)
        *g++ = '\0';
    uint32_t gid = 0, ignored;
    int r;
    if (numeric(u, &spec->uid)) {
        if (lookup_id(root_fd, "/etc/passwd", 2, u, &ignored, &gid) < 0)
            gid = 0;
    } else if ((r = lookup_id(root_fd, "/etc/passwd", 0, u, &spec->uid, &gid)) < 0) {
        return tm_err_set(err, ENOENT, "image config: User \"%s\": %s the image's /etc/passwd", user,
                          r == -EINVAL ? "not a regular file:" : "no such user in");
    }
    if (g && !numeric(g, &gid) && (r = lookup_id(root_fd, "/etc/group", 0, g, &gid, NULL)) < 0)
        return tm_err_set(err, ENOENT, "image config: User \"%s\": %s the image's /etc/group", user,
                          r == -EINVAL ? "not a regular file:" : "no such group in");
    spec->gid = gid;
    spec->has_user = true;
    return 0;
}

/* The working directory exists in the image: made (0755, root) where the image lacks it, as a
 * runtime would at start, only here once and inside the signed image. */
static int make_working_dir(int root_fd, const char *dir, tm_err *err)
{
    int fd = open_in_root(root_fd, dir, O_PATH | O_DIRECTORY);
    if (fd >= 0)
        return close(fd), 0;
    if (fd != -ENOENT) {
        errno = -fd;
        return tm_err_sys(err, "image config: working directory %s", dir);
    }
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s", dir);
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p)
            continue;
        char c = *p;
        *p = '\0';
        if ((fd = open_in_root(root_fd, path, O_PATH | O_DIRECTORY)) == -ENOENT) {
            char *slash = strrchr(path, '/');
            *slash = '\0';
            _cleanup_close_ int pfd = open_in_root(root_fd, *path ? path : "/", O_PATH | O_DIRECTORY);
            *slash = '/';
            if (pfd < 0 || mkdirat(pfd, slash + 1, 0755) < 0)
                return tm_err_sys(err, "image config: cannot make the working directory %s", path);
        } else if (fd < 0) {
            errno = -fd;
            return tm_err_sys(err, "image config: working directory %s", path);
        } else {
            close(fd);
        }
        *p = c;
        if (!c)
            return 0;
    }
}

/* "/data/" -> "/data"; anything still not canonical is refused by validation, naming it. */
static void trim_slashes(char *s)
{
    for (size_t n = strlen(s); n > 1 && s[n - 1] == '/'; n--)
        s[n - 1] = '\0';
}

static int map_config(int root_fd, struct oci_image *img, const struct gos_import_opts *o, struct gos_spec *spec,
                      char **init, const char ***args_out, char ***env_out, char ***ports_out, tm_err *err)
{
    int r;
    if (!o->init_given) {
        const char **args = calloc(img->n_entrypoint + img->n_cmd + 1, sizeof(char *));
        if (!args)
            return tm_err_set(err, ENOMEM, "out of memory");
        *args_out = args;
        spec->args = args;
        spec->n_args = 0;
        char **argv0 = img->n_entrypoint ? img->entrypoint : img->cmd;
        size_t n0 = img->n_entrypoint ? img->n_entrypoint : img->n_cmd;
        if (!n0)
            return tm_err_set(err, EINVAL, "the image has neither Entrypoint nor Cmd: give --init");
        if ((r = resolve_init(root_fd, argv0[0], img, init, err)) < 0)
            return r;
        spec->init = *init;
        /* Entrypoint's arguments, then Cmd (all of it after an Entrypoint, its rest without). */
        for (size_t i = 1; i < n0; i++)
            spec->args[spec->n_args++] = argv0[i];
        if (img->n_entrypoint)
            for (size_t i = 0; i < img->n_cmd; i++)
                spec->args[spec->n_args++] = img->cmd[i];
    }
    /* The image's environment below --env's. */
    char **env = calloc(img->n_env + spec->n_env + 1, sizeof(char *));
    if (!env)
        return tm_err_set(err, ENOMEM, "out of memory");
    *env_out = env;
    size_t n = 0;
    for (size_t i = 0; i < img->n_env; i++) {
        const char *e = img->env[i], *eq = strchr(e, '=');
        bool overridden = false;
        for (size_t j = 0; eq && j < spec->n_env; j++)
            overridden |= !strncmp(spec->env[j], e, (size_t)(eq - e) + 1);
        for (size_t j = 0; eq && j < n; j++) /* the last of a repeated name wins, as in Docker */
            if (!strncmp(env[j], e, (size_t)(eq - e) + 1)) {
                memmove(&env[j], &env[j + 1], (n - j - 1) * sizeof(char *));
                n--;
                break;
            }
        if (!overridden)
            env[n++] = (char *)e;
    }
    for (size_t j = 0; j < spec->n_env; j++)
        env[n++] = (char *)spec->env[j];
    spec->env = (const char **)env;
    spec->n_env = n;

    if (img->working_dir && strcmp(img->working_dir, "/") != 0) {
        trim_slashes(img->working_dir);
        if (img->working_dir[0] != '/')
            return tm_err_set(err, EINVAL, "image config: WorkingDir \"%s\" is not absolute", img->working_dir);
        if ((r = make_working_dir(root_fd, img->working_dir, err)) < 0)
            return r;
        spec->working_dir = img->working_dir;
    }
    if (img->user && (r = resolve_user(root_fd, img->user, spec, err)) < 0)
        return r;
    /* "80" means 80/tcp. */
    char **ports = calloc(img->n_ports + 1, sizeof(char *));
    if (!ports)
        return tm_err_set(err, ENOMEM, "out of memory");
    *ports_out = ports;
    for (size_t i = 0; i < img->n_ports; i++) {
        if (strchr(img->ports[i], '/'))
            ports[i] = strdup(img->ports[i]);
        else if (asprintf(&ports[i], "%s/tcp", img->ports[i]) < 0)
            ports[i] = NULL;
        if (!ports[i])
            return tm_err_set(err, ENOMEM, "out of memory");
    }
    spec->ports = (const char **)ports;
    spec->n_ports = img->n_ports;
    for (size_t i = 0; i < img->n_volumes; i++) {
        if (spec->n_mounts == GOS_MOUNTS_MAX)
            return tm_err_set(err, EINVAL, "the image's Volumes and the mounts given are more than %d mounts",
                              GOS_MOUNTS_MAX);
        trim_slashes(img->volumes[i]);
        struct gos_mount *m = &spec->mounts[spec->n_mounts++];
        m->kind = GOS_DATA;
        m->mount_point = img->volumes[i];
    }
    if (!o->description) {
        static char desc[GOS_DESCRIPTION_MAX + 1];
        snprintf(desc, sizeof(desc), "OCI image %s",
                 img->manifest_digest[0] ? img->manifest_digest : img->config_digest);
        spec->description = desc;
    }
    spec->oci_manifest = img->manifest_digest[0] ? img->manifest_digest : NULL;
    spec->oci_config = img->config_digest;
    if (!o->arch_given)
        spec->architecture = img->architecture;
    return 0;
}

int gos_import(struct gos_spec *spec, const struct gos_import_opts *o, const char *out_dir,
               const struct gos_signing *sign, char *ret_path, size_t ret_path_size, tm_err *err)
{
    /* What can be checked without the image, before it is unpacked. */
    struct stat st;
    char final[PATH_MAX], work[PATH_MAX];
    if (stat(out_dir, &st) < 0 || !S_ISDIR(st.st_mode))
        return tm_err_set(err, ENOTDIR, "output directory %s is not a directory", out_dir);
    if (snprintf(final, sizeof(final), "%s/%s-%llu", out_dir, spec->name, (unsigned long long)spec->version) >=
            (int)sizeof(final) ||
        snprintf(work, sizeof(work), "%s/.%s-%llu.oci.XXXXXX", out_dir, spec->name,
                 (unsigned long long)spec->version) >= (int)sizeof(work))
        return tm_err_set(err, ENAMETOOLONG, "output directory name too long");
    if (lstat(final, &st) == 0)
        return tm_err_set(err, EEXIST, "%s exists; a GuestOS version is never rebuilt in place", final);
    if (!mkdtemp(work))
        return tm_err_sys(err, "cannot create a directory in %s", out_dir);
    char rootfs[PATH_MAX + 16], scratch[PATH_MAX + 16];
    snprintf(rootfs, sizeof(rootfs), "%s/rootfs", work);
    snprintf(scratch, sizeof(scratch), "%s/archive", work);

    struct oci_image img = {0};
    _cleanup_free_ char *init = NULL;
    char **env = NULL, **ports = NULL;
    const char **args = NULL;
    int r = 0;
    /* The tree's root is the container's "/": 0755 root, unless the first layer says otherwise. */
    if (mkdir(rootfs, 0755) < 0 || chmod(rootfs, 0755) < 0)
        r = tm_err_sys(err, "cannot make %s", rootfs);
    struct oci_source src = {.path = o->source, .platform = o->platform, .ref = o->ref, .max_bytes = o->max_bytes};
    if (r == 0 && (r = oci_import_tree(&src, scratch, rootfs, &img, err)) < 0)
        tm_err_prefix(err, "%s", o->source);
    _cleanup_close_ int root_fd = r == 0 ? open(rootfs, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (r == 0 && root_fd < 0)
        r = tm_err_sys(err, "%s", rootfs);
    if (r == 0)
        r = map_config(root_fd, &img, o, spec, &init, &args, &env, &ports, err);
    if (r == 0) {
        rm_rf(scratch); /* the unpacked archive is no longer needed; the disk may be */
        spec->mounts[0].source = rootfs;
        spec->mounts[0].keep_owners = true;
        r = gos_build(spec, out_dir, sign, ret_path, ret_path_size, err);
    }
    int rr = rm_rf(work);
    if (rr < 0)
        fprintf(stderr, "trustme-guestos: cannot remove %s: %s\n", work, strerror(-rr));
    free(env);
    free(args);
    strv_free(ports);
    oci_image_free(&img);
    return r;
}
