/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Starting trustme-scd confined (runs in the child trustmed forks for it).
 *
 *   - its own mount namespace, rooted in a read-only tmpfs that holds only what running needs:
 *     /usr and the lib directories (read-only), the few /etc files libraries read, /dev with
 *     null, zero, random and urandom, a small /tmp, its state dir at /state, and the extra paths
 *     the administrator names (--scd-bind: a SoftHSM2 token dir, the pcscd socket dir);
 *   - its own network, IPC and UTS namespaces: scd has no business on any network;
 *   - its own unprivileged uid and gid (and that user's supplementary groups, so that access to
 *     a token directory can be granted the usual way, e.g. group softhsm), an empty capability
 *     bounding set, no_new_privs;
 *   - fd 3 is its end of the socketpair; nothing else of trustmed's.
 * The binary is opened by trustmed (which measures it on that fd) and started with fexecve, so
 * it need not be visible inside. */
#include "scd_sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cleanup.h"
#include "fdutil.h"
#include "fileio.h"
#include "child.h"
#include "syncmsg.h"

extern char **environ;

/* /etc entries libraries read (the dynamic linker, OpenSSL, SoftHSM2, OpenSC). */
static const char *const etc_entries[] = {"/etc/ld.so.cache", "/etc/ssl", "/etc/softhsm", "/etc/opensc",
                                          "/etc/opensc.conf"};
/* On a merged-/usr system these are symlinks into /usr, elsewhere directories. */
static const char *const top_dirs[] = {"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"};
static const char *const dev_nodes[] = {"/dev/null", "/dev/zero", "/dev/random", "/dev/urandom"};
/* The environment scd may see: where PKCS#11 modules find their configuration, and whether its
 * stderr (trustmed's) is the journal's (src/lib/log.c). */
static const char *const env_kept[] = {"SOFTHSM2_CONF", "OPENSC_CONF", "JOURNAL_STREAM"};

static int bind_into_at(const char *root, const char *path, const char *at, bool writable, tm_err *err)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : tm_err_sys(err, "cannot stat %s", path);
    char target[PATH_MAX];
    snprintf(target, sizeof(target), "%s%s", root, at ? at : path);
    char parent[PATH_MAX];
    snprintf(parent, sizeof(parent), "%s", target);
    *strrchr(parent, '/') = '\0';
    int r = mkdir_p(parent, 0755);
    if (r < 0) {
        errno = -r;
        return tm_err_sys(err, "cannot create %s", parent);
    }
    if (S_ISLNK(st.st_mode)) {
        char dest[PATH_MAX];
        ssize_t n = readlink(path, dest, sizeof(dest) - 1);
        if (n < 0)
            return tm_err_sys(err, "cannot read link %s", path);
        dest[n] = '\0';
        if (symlink(dest, target) < 0 && errno != EEXIST)
            return tm_err_sys(err, "cannot create link %s", target);
        return 0;
    }
    int fd = S_ISDIR(st.st_mode) ? mkdir(target, 0755) : open(target, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0 && errno != EEXIST)
        return tm_err_sys(err, "cannot create %s", target);
    if (fd > 0 && !S_ISDIR(st.st_mode))
        close(fd);
    if (mount(path, target, NULL, MS_BIND | MS_REC, NULL) < 0)
        return tm_err_sys(err, "cannot bind %s", path);
    if (!writable && mount(NULL, target, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
        return tm_err_sys(err, "cannot make %s read-only", path);
    return 0;
}

static int bind_into(const char *root, const char *path, bool writable, tm_err *err)
{
    return bind_into_at(root, path, NULL, writable, err);
}

static int build_root(const struct scd_sandbox *sb, tm_err *err)
{
    const char *root = sb->root;
    umask(022); /* scd's uid must be able to walk the directories made here */
    if (mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m") < 0)
        return tm_err_sys(err, "cannot mount scd's root at %s", root);
    int r = bind_into(root, "/usr", false, err);
    for (size_t i = 0; r == 0 && i < ARRAY_SIZE(top_dirs); i++)
        r = bind_into(root, top_dirs[i], false, err);
    for (size_t i = 0; r == 0 && i < ARRAY_SIZE(etc_entries); i++)
        r = bind_into(root, etc_entries[i], false, err);
    for (size_t i = 0; r == 0 && i < ARRAY_SIZE(dev_nodes); i++)
        r = bind_into(root, dev_nodes[i], true, err);
    if (r < 0)
        return r;
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/tmp", root);
    if (mkdir(path, 01777) < 0 ||
        mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=16m") < 0)
        return tm_err_sys(err, "cannot mount scd's /tmp");
    snprintf(path, sizeof(path), "%s/state", root);
    if (mkdir(path, 0700) < 0 || mount(sb->state_dir, path, NULL, MS_BIND, NULL) < 0 ||
        mount(NULL, path, NULL, MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        return tm_err_sys(err, "cannot bind scd's state dir %s", sb->state_dir);
    /* Last, so that they may lie below /tmp (a test's SoftHSM2 token dir does). */
    for (size_t i = 0; r == 0 && i < sb->nbinds; i++)
        r = bind_into_at(root, sb->binds[i], sb->binds_at[i], true, err);
    if (r < 0)
        return r;
    /* Everything is in place: the root itself becomes read-only. */
    if (mount(NULL, root, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, "mode=0755,size=1m") < 0)
        return tm_err_sys(err, "cannot make scd's root read-only");
    return 0;
}

_Noreturn void sandbox_exec(const struct scd_sandbox *sb, int *fds, size_t nfds, int exe, char *const argv[],
                            pid_t daemon_pid)
{
    tm_err err = {0};
    const char *name = argv[0];
    child_reset(daemon_pid);
    int keep[8];
    size_t n = 0;
    for (; n < nfds && n < ARRAY_SIZE(keep) - 1; n++)
        keep[n] = fds[n];
    keep[n++] = exe;
    /* The passed fds are 3, 4, ... and must survive the exec (fd_keep_only leaves them
     * close-on-exec); exe stays close-on-exec. */
    bool ok = exe >= 0 && fd_keep_only(keep, n) == 0;
    for (size_t i = 0; ok && i + 1 < n; i++)
        ok = fcntl(keep[i], F_SETFD, 0) == 0;
    if (!ok) {
        fprintf(stderr, "trustmed: cannot start %s: %s\n", sb->binary, strerror(errno));
        _exit(127);
    }
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null >= 0)
        dup2(null, STDIN_FILENO); /* stdout/stderr stay: the service logs to trustmed's stderr */
    int r = 0;
    if (unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS) < 0 ||
        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        r = tm_err_sys(&err, "cannot create %s's namespaces", name);
    if (r == 0)
        r = build_root(sb, &err);
    if (r == 0 && (chdir(sb->root) < 0 || syscall(SYS_pivot_root, ".", ".") < 0 || umount2(".", MNT_DETACH) < 0 ||
                   chdir("/") < 0))
        r = tm_err_sys(&err, "cannot enter %s's root", name);
    if (r == 0)
        r = child_drop_privileges(sb->uid, sb->gid, sb->groups, sb->ngroups, &err);
    if (r < 0) {
        fprintf(stderr, "trustmed: cannot confine %s: %s\n", name, err.msg);
        _exit(127);
    }
    char *envp[ARRAY_SIZE(env_kept) + 1] = {0};
    size_t ne = 0;
    for (size_t i = 0; i < ARRAY_SIZE(env_kept); i++) {
        const char *v = getenv(env_kept[i]);
        if (v && asprintf(&envp[ne], "%s=%s", env_kept[i], v) > 0)
            ne++;
    }
    fexecve(keep[n - 1], argv, envp);
    fprintf(stderr, "trustmed: cannot execute %s: %s\n", name, strerror(errno));
    _exit(127);
}

_Noreturn void scd_sandbox_exec(const struct scd_sandbox *sb, int sock, int exe, pid_t daemon_pid)
{
    char kdf[32];
    snprintf(kdf, sizeof(kdf), "%llu", (unsigned long long)sb->kdf_n);
    char *argv[] = {"trustme-scd", "--state-dir", "/state", "--kdf-n", kdf, "--log-level", (char *)sb->log_level, NULL};
    int fds[1] = {sock};
    sandbox_exec(sb, fds, 1, exe, argv, daemon_pid);
}
