/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The per-container keystore service: see keystore_svc.h and docs/KEYSTORE.md.
 *
 * The keystore key of a container is
 *
 *   HKDF-SHA256(ikm  = root,            root = HKDF-SHA256(device storage secret, "trustme keystore root v1")
 *               salt = token part,      token part = HKDF-SHA256(data key, "trustme keystore token v1"),
 *                                       or none for a container without a token
 *               info = "trustme keystore v1|" uuid)
 *
 * so it exists only on this device with the TPM in the measured boot state (the device secret is
 * sealed to it) and, for a container with a token, only after the token's PIN opened the data key.
 * trustmed holds it only from the start to handing it over; the service holds it for the
 * container's life. Each service is its own process in its own pid namespace: one container's
 * keystore process, even taken over, sees no other's process, state dir or key. */
#include "keystore_svc.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "container.h"
#include "crypto.h"
#include "daemon.h"
#include "fileio.h"
#include "keystore.pb-c.h"
#include "log.h"
#include "packet.h"
#include "scd_sandbox.h"
#include "secmem.h"
#include "tpmd_client.h"

#define RESTART_MS 500

struct keystore_svc {
    struct container *c;
    struct secret *token_part; /* from the data key, at a start with a token */
    struct secret *key; /* the keystore key while the service runs (for a restart) */
    int listen_fd; /* kept: a restarted service serves the same socket */
    int link_fd; /* trustmed's end of the link (fd 3 in the service) */
    int pidfd;
    tm_source *pid_src;
    tm_source *restart_timer;
};

static char ks_user[64] = "trustme-keystore";
static char ks_binary[PATH_MAX];

void keystore_svc_options(struct daemon *d, const char *user, const char *binary)
{
    if (user && user[0])
        snprintf(ks_user, sizeof(ks_user), "%s", user);
    if (binary)
        snprintf(ks_binary, sizeof(ks_binary), "%s", binary);
}

static struct keystore_svc *svc_of(struct container *c)
{
    if (!c->keystore) {
        c->keystore = calloc(1, sizeof(*c->keystore));
        if (c->keystore) {
            c->keystore->c = c;
            c->keystore->listen_fd = c->keystore->link_fd = c->keystore->pidfd = -1;
        }
    }
    return c->keystore;
}

int keystore_svc_token_key(struct container *c, const struct secret *data_key, tm_err *err)
{
    if (!c->cfg->keystore)
        return 0;
    struct keystore_svc *ks = svc_of(c);
    if (!ks)
        return tm_err_set(err, ENOMEM, "out of memory");
    secret_free(ks->token_part);
    ks->token_part = NULL;
    int r = secret_new(32, &ks->token_part, err);
    if (r < 0)
        return r;
    tm_hkdf_sha256(data_key->data, data_key->len, NULL, 0, "trustme keystore token v1", 25, ks->token_part->data, 32);
    return 0;
}

static void kill_service(struct keystore_svc *ks)
{
    tm_source_free(ks->pid_src);
    ks->pid_src = NULL;
    close_and_reset(ks->link_fd);
    if (ks->pidfd >= 0) {
        syscall(SYS_pidfd_send_signal, ks->pidfd, SIGKILL, NULL, 0);
        siginfo_t si;
        waitid(P_PIDFD, (id_t)ks->pidfd, &si, WEXITED);
        close_and_reset(ks->pidfd);
    }
}

static int spawn(struct keystore_svc *ks, tm_err *err);

static void on_restart(tm_source *src, void *userdata)
{
    struct keystore_svc *ks = userdata;
    ks->restart_timer = NULL;
    tm_err err;
    if (spawn(ks, &err) < 0)
        log_error("%s: cannot restart its keystore: %s", container_label(ks->c), err.msg);
}

static void on_exit_event(tm_source *src, uint32_t events, void *userdata)
{
    struct keystore_svc *ks = userdata;
    siginfo_t si = {0};
    if (waitid(P_PIDFD, (id_t)ks->pidfd, &si, WEXITED | WNOHANG) < 0 || si.si_pid == 0)
        return;
    tm_source_free(ks->pid_src);
    ks->pid_src = NULL;
    close_and_reset(ks->pidfd);
    close_and_reset(ks->link_fd);
    struct container *c = ks->c;
    log_warn("%s: its keystore exited (%s %d); restarting it in %d ms", container_label(c),
             si.si_code == CLD_EXITED ? "status" : "signal", si.si_status, RESTART_MS);
    daemon_audit(c->d, "keystore.exit", "fail", c, "trustmed", "%s %d",
                 si.si_code == CLD_EXITED ? "exited" : "killed by signal", si.si_status);
    ks->restart_timer = tm_loop_timer(c->d->loop, RESTART_MS, on_restart, ks);
}

static int prepare_dirs(struct container *c, struct scd_sandbox *sb, tm_err *err)
{
    int r = daemon_find_helper(ks_binary, "trustme-keystore", "/../keystore", sb->binary, sizeof(sb->binary), err);
    if (r < 0)
        return tm_err_prefix(err, "the keystore service");
    sb->ngroups = SCD_MAX_GROUPS;
    if ((r = daemon_helper_user(ks_user, "the keystore service", &sb->uid, &sb->gid, sb->groups, &sb->ngroups, err)) <
        0)
        return r;
    sb->ngroups = 0; /* it needs no group of that user */
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/keystore", c->d->data_dir);
    if ((mkdir(dir, 0711) < 0 && errno != EEXIST))
        return tm_err_sys(err, "cannot create %s", dir);
    snprintf(sb->state_dir, sizeof(sb->state_dir), "%s/keystore/%s", c->d->data_dir, c->uuid);
    if ((mkdir(sb->state_dir, 0700) < 0 && errno != EEXIST) || chown(sb->state_dir, sb->uid, sb->gid) < 0 ||
        chmod(sb->state_dir, 0700) < 0)
        return tm_err_sys(err, "cannot prepare %s", sb->state_dir);
    snprintf(sb->root, sizeof(sb->root), "%s/keystore-root", c->d->run_dir);
    if (mkdir(sb->root, 0700) < 0 && errno != EEXIST)
        return tm_err_sys(err, "cannot create %s", sb->root);
    sb->log_level = c->d->log_level;
    return 0;
}

static int spawn(struct keystore_svc *ks, tm_err *err)
{
    struct container *c = ks->c;
    struct scd_sandbox sb = {0};
    int r = prepare_dirs(c, &sb, err);
    if (r < 0)
        return r;
    _cleanup_close_ int exe = open(sb.binary, O_RDONLY | O_CLOEXEC);
    if (exe < 0)
        return tm_err_sys(err, "cannot open %s", sb.binary);
    int sp[2];
    if ((r = tm_packet_socketpair(sp)) < 0) {
        errno = -r;
        return tm_err_sys(err, "socketpair");
    }
    pid_t self = getpid();
    int pidfd = -1;
    /* Its own pid namespace: it sees no other process, so no other container's keystore. */
    struct clone_args ca = {
        .flags = CLONE_PIDFD | CLONE_NEWPID, .pidfd = (uint64_t)(uintptr_t)&pidfd, .exit_signal = SIGCHLD};
    pid_t pid = (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
    if (pid == 0) {
        close(sp[0]);
        int fds[2] = {sp[1], ks->listen_fd};
        char *argv[] = {"trustme-keystore", "--state-dir", "/state", "--log-level", (char *)sb.log_level, NULL};
        (void)self;
        sandbox_exec(&sb, fds, 2, exe, argv, 0 /* getppid() is 0 in a new pid namespace */);
    }
    close(sp[1]);
    if (pid < 0) {
        close(sp[0]);
        return tm_err_sys(err, "cannot fork the keystore service");
    }
    ks->link_fd = sp[0];
    ks->pidfd = pidfd;
    ks->pid_src = tm_loop_io(c->d->loop, pidfd, EPOLLIN, on_exit_event, ks);
    Trustme__Keystore__KsInit init = TRUSTME__KEYSTORE__KS_INIT__INIT;
    init.has_keystore_key = true;
    init.keystore_key = (ProtobufCBinaryData){ks->key->len, ks->key->data};
    init.uuid = c->uuid;
    init.name = c->cfg->name;
    if (!ks->pid_src || (r = tm_packet_send_msg(ks->link_fd, &init.base, 4096, err)) < 0) {
        kill_service(ks);
        return tm_err_set(err, EIO, "cannot hand the keystore key to the service");
    }
    log_info("%s: keystore service pid %d at /run/trustme/keystore.sock inside", container_label(c), pid);
    return 0;
}

int keystore_svc_serve(struct container *c, int listen_fd, bool with_token, tm_err *err)
{
    struct keystore_svc *ks = svc_of(c);
    if (!ks) {
        close(listen_fd);
        return tm_err_set(err, ENOMEM, "out of memory");
    }
    kill_service(ks);
    close_and_reset(ks->listen_fd);
    ks->listen_fd = listen_fd;
    const struct secret *root = tpmd_keystore_root(c->d);
    if (!root)
        return tm_err_set(err, EAGAIN,
                          "the device storage secret is not unsealed (yet): no keystore key "
                          "(docs/KEYSTORE.md)");
    if (with_token && !ks->token_part)
        return tm_err_set(err, EPROTO, "no data key to bind the keystore key to");
    secret_free(ks->key);
    ks->key = NULL;
    int r = secret_new(32, &ks->key, err);
    if (r < 0)
        return r;
    char info[128];
    int n = snprintf(info, sizeof(info), "trustme keystore v1|%s", c->uuid);
    tm_hkdf_sha256(root->data, root->len, ks->token_part ? ks->token_part->data : NULL, ks->token_part ? 32 : 0, info,
                   (size_t)n, ks->key->data, 32);
    secret_free(ks->token_part); /* the key is derived: its part is no longer needed */
    ks->token_part = NULL;
    return spawn(ks, err);
}

bool keystore_svc_running(const struct container *c)
{
    return c->keystore && c->keystore->pidfd >= 0;
}

void keystore_svc_stop(struct container *c)
{
    struct keystore_svc *ks = c->keystore;
    if (!ks)
        return;
    tm_source_free(ks->restart_timer);
    kill_service(ks);
    close_and_reset(ks->listen_fd);
    secret_free(ks->key);
    secret_free(ks->token_part);
    free(ks);
    c->keystore = NULL;
}

/* A removed container's keys go with it (they could open nowhere else anyway: the keystore key
 * needs its UUID); a half-made container's service is stopped with it. */
static void keystore_removed(struct container *c)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/keystore/%s", c->d->data_dir, c->uuid);
    int r = rm_rf(dir);
    if (r < 0 && r != -ENOENT)
        log_warn("%s: cannot remove its keystore %s: %s", container_label(c), dir, strerror(-r));
}

static void keystore_freed(struct container *c)
{
    keystore_svc_stop(c);
}

const struct container_observer keystore_container_observer = {
    .name = "keystore",
    .removed = keystore_removed,
    .freed = keystore_freed,
};
