/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "lifecycle_fakes.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgroups.h"
#include "console.h"
#include "lc_state.h"
#include "container.h"
#include "reply.h"
#include "ctlsock.h"
#include "keystore_svc.h"
#include "caps.h"
#include "fscrypt.h"
#include "guestos.h"
#include "measure.h"
#include "lock_anchor.h"
#include "migrate.h"
#include "net.h"
#include "reaper.h"
#include "core_container.h"
#include "runtime.h"
#include "session.h"
#include "spawn.h"
#include "syncmsg.h"
#include "tokens.h"
#include "vtpm.h"

struct fake_world *fake;

void fake_reset(void)
{
    if (!fake) {
        fake = mmap(NULL, sizeof(*fake), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (fake == MAP_FAILED)
            abort();
    }
    memset(fake, 0, sizeof(*fake));
    fake->fail_phase = fake->block_phase = FAKE_NONE;
    fake->fail_module = fake->block_module = -1;
    fake->freeze_result = 1;
}

const char *fake_phase_name(enum fake_phase p)
{
    static const char *const names[] = {"prepare", "setup", "child", "cleanup", "none"};
    return p <= FAKE_NONE ? names[p] : "?";
}

/* ---- the modules: one hook of each kind per module, each recorded; one may fail ---- */

static int hook(enum fake_phase phase, int module, tm_err *err)
{
    int i = __atomic_fetch_add(&fake->ncalls, 1, __ATOMIC_SEQ_CST);
    if (i < FAKE_LOG_MAX) {
        fake->calls[i].phase = phase;
        fake->calls[i].module = module;
    }
    if (phase == fake->fail_phase && module == fake->fail_module)
        return tm_err_set(err, EIO, "%s hook failed", fake_phase_name(phase));
    if (phase == fake->block_phase && module == fake->block_module) {
        __atomic_store_n(&fake->blocked, 1, __ATOMIC_SEQ_CST);
        for (;;)
            pause();
    }
    return 0;
}

#define FAKE_MODULE(var, idx)                                               \
    static int fake_##var##_prepare(struct start_ctx *ctx, tm_err *err)     \
    {                                                                       \
        return hook(FAKE_PREPARE, idx, err);                                \
    }                                                                       \
    static int fake_##var##_setup(struct start_ctx *ctx, tm_err *err)       \
    {                                                                       \
        return hook(FAKE_SETUP, idx, err);                                  \
    }                                                                       \
    static int fake_##var##_child(struct start_ctx *ctx, tm_err *err)       \
    {                                                                       \
        return hook(FAKE_CHILD, idx, err);                                  \
    }                                                                       \
    static void fake_##var##_cleanup(struct container *c)                   \
    {                                                                       \
        tm_err err;                                                         \
        hook(FAKE_CLEANUP, idx, &err);                                      \
    }                                                                       \
    const struct tm_module module_##var = {.name = #var,                    \
                                           .prepare = fake_##var##_prepare, \
                                           .setup = fake_##var##_setup,     \
                                           .child = fake_##var##_child,     \
                                           .cleanup = fake_##var##_cleanup};

FAKE_MODULE(kernfs, 0)
FAKE_MODULE(userns, 1)
FAKE_MODULE(volume, 2)
FAKE_MODULE(ctlsock, 3)
FAKE_MODULE(devices, 4)
FAKE_MODULE(net, 5)
FAKE_MODULE(cgroups, 6)
FAKE_MODULE(namespaces, 7)
FAKE_MODULE(caps, 8)
FAKE_MODULE(seccomp, 9)

/* The vTPM's module has no hook for a container without "vtpm" (none here). */
const struct tm_module module_vtpm = {.name = "vtpm"};

int vtpm_start(struct container *c, const struct secret *data_key, vtpm_done_fn done, tm_err *err)
{
    return tm_err_set(err, ENOTSUP, "no vTPM in these tests");
}

int vtpm_check(const struct container *c, tm_err *err)
{
    return tm_err_set(err, ENOTSUP, "no vTPM in these tests");
}

void vtpm_set_events(struct container *c, const struct tm_event_item *items, size_t n)
{
}

/* No migration in these tests: no container is locked. */
bool migrate_locked(const struct container *c)
{
    return false;
}

const struct tm_module *const fake_modules[FAKE_MODULES] = {
    &module_kernfs, &module_userns,  &module_volume,     &module_ctlsock, &module_devices,
    &module_net,    &module_cgroups, &module_namespaces, &module_caps,    &module_seccomp,
};

/* ---- the setup process and init (spawn.c's setup_main and init_main, minus the kernel) ---- */

_Noreturn void setup_main(struct start_ctx *ctx, pid_t daemon_pid)
{
    tm_err err = {0};
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    fake->setup_pid = getpid();
    if (modules_run(PHASE_SETUP, ctx, NULL, &err) < 0) {
        tm_sync_send_error(ctx->sync_fd, &err);
        _exit(1);
    }
    /* CLONE_PARENT: init is the test's child, as it is trustmed's. */
    struct clone_args args = {.flags = CLONE_PARENT};
    pid_t pid = (pid_t)syscall(SYS_clone3, &args, sizeof(args));
    if (pid < 0) {
        tm_err_sys(&err, "cannot create the container's init");
        tm_sync_send_error(ctx->sync_fd, &err);
        _exit(1);
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (modules_run(PHASE_CHILD, ctx, NULL, &err) < 0) {
            tm_sync_send_error(ctx->sync_fd, &err);
            _exit(127);
        }
        /* "exec": the sync socket is O_CLOEXEC, its end tells trustmed init runs. */
        close(ctx->sync_fd);
        for (;;)
            pause();
    }
    fake->init_pid = pid;
    tm_sync_send_pid(ctx->sync_fd, pid);
    _exit(0);
}

/* ---- the services: tpmd measures, scd unwraps the key; both answer on the next loop turn ---- */

struct measure_op {
    tm_source *timer;
    measure_done_fn done;
};

static void measured(tm_source *src, void *userdata)
{
    struct container *c = userdata;
    measure_done_fn done = c->lc->measure->done;
    c->lc->measure->timer = NULL;
    tm_err err;
    tm_err_set(&err, EACCES, "fake tpmd: measurement refused");
    done(c, fake->measure_fails ? &err : NULL);
}

int measure_start(struct container *c, const struct guestos *g, measure_done_fn done, tm_err *err)
{
    struct measure_op *op = calloc(1, sizeof(*op));
    if (!op)
        return tm_err_set(err, ENOMEM, "out of memory");
    op->done = done;
    op->timer = tm_loop_timer(c->d->loop, 0, measured, c);
    c->lc->measure = op;
    return 0;
}

void measure_forget(struct container *c)
{
    if (!c->lc->measure)
        return;
    tm_source_free(c->lc->measure->timer);
    free(c->lc->measure);
    c->lc->measure = NULL;
}

struct token_op {
    tm_source *timer;
    token_key_fn done;
};

/* The fake tokens' per-container state: only the pending key request. */
struct container_token {
    struct token_op *key_op;
};

/* The fake console: open or not (init's output goes to /dev/null). */
struct console {
    bool open;
};

static struct container_token the_token;
static struct console the_console;

void fake_attach(struct container *c)
{
    memset(&the_token, 0, sizeof(the_token));
    memset(&the_console, 0, sizeof(the_console));
    c->token = &the_token;
    c->console = NULL;
}

bool fake_key_pending(const struct container *c)
{
    return c->token && c->token->key_op;
}

bool fake_console_open(const struct container *c)
{
    return c->console && c->console->open;
}

static void key_ready(tm_source *src, void *userdata)
{
    struct container *c = userdata;
    struct token_op *op = c->token->key_op;
    c->token->key_op = NULL;
    token_key_fn done = op->done;
    free(op);
    tm_err err;
    struct secret *key = NULL;
    if (fake->key_fails)
        tm_err_set(&err, EKEYREJECTED, "fake scd: wrong PIN");
    else if (secret_new(32, &key, &err) == 0)
        memset(key->data, 0x5a, 32);
    done(c, key, &err);
}

int tokens_get_key(struct container *c, const ProtobufCBinaryData *pin, token_key_fn done, tm_err *err)
{
    struct token_op *op = calloc(1, sizeof(*op));
    if (!op)
        return tm_err_set(err, ENOMEM, "out of memory");
    op->done = done;
    op->timer = tm_loop_timer(c->d->loop, 0, key_ready, c);
    c->token->key_op = op;
    return 0;
}

void tokens_cancel_key(struct container *c)
{
    if (!c->token->key_op)
        return;
    tm_source_free(c->token->key_op->timer);
    free(c->token->key_op);
    c->token->key_op = NULL;
}

/* ---- the rest of trustmed ---- */

static void quit_at(struct container *c, enum cstate old, enum cevent ev)
{
    if (c->state == fake->quit_state)
        tm_loop_quit(c->d->loop, 0);
}

const struct container_observer fake_observer = {.name = "test", .transition = quit_at};

/* lifecycle.c's own observer names these; the test does not register it. */
void core_on_transition(struct container *c, enum cstate old, enum cevent ev)
{
}
void measure_config_anchor_drop(struct container *c)
{
}

void __wrap_daemon_audit(struct daemon *d, const char *event, const char *result, const struct container *c,
                         const char *actor, const char *fmt, ...)
{
    if (fake->audits >= 8)
        return;
    int i = fake->audits++;
    snprintf(fake->audit_event[i], sizeof(fake->audit_event[i]), "%s", event);
    snprintf(fake->audit_result[i], sizeof(fake->audit_result[i]), "%s", result);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(fake->audit_detail[i], sizeof(fake->audit_detail[i]), fmt, ap);
    va_end(ap);
}

/* Processes whose pid trustmed never learnt are found through the container's cgroups, which
 * init is in from its birth (CLONE_INTO_CGROUP). Here: every child of the test but the setup
 * process, whose end lifecycle.c waits for itself. */
void cgroups_kill(struct daemon *d, const char *uuid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/task/%d/children", (int)getpid());
    FILE *f = fopen(path, "re");
    if (!f)
        abort();
    int pid;
    while (fscanf(f, "%d", &pid) == 1)
        if (pid != fake->setup_pid) {
            kill(pid, SIGKILL);
            reaper_take_pid(d, pid);
        }
    fclose(f);
}

void describe_wait_status(int status, char *out, size_t size, int *ret_code, int *ret_signal)
{
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (WIFEXITED(status))
        snprintf(out, size, "exited %d", code);
    else
        snprintf(out, size, "killed by SIG%s", sigabbrev_np(WTERMSIG(status)));
    if (ret_code)
        *ret_code = code;
    if (ret_signal)
        *ret_signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

int console_open(struct container *c, int *ret_write, tm_err *err)
{
    *ret_write = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (*ret_write < 0)
        return tm_err_sys(err, "/dev/null");
    the_console.open = true;
    c->console = &the_console;
    return 0;
}

void console_close(struct container *c)
{
    if (c->console)
        c->console->open = false;
    c->console = NULL;
}

int cgroups_set_frozen(struct container *c, bool frozen, tm_err *err)
{
    fake->frozen = frozen;
    return 0;
}
int cgroups_is_frozen(struct container *c)
{
    return fake->freeze_result;
}
uint64_t caps_privileged(const struct container_config *cfg)
{
    return 0;
}
void caps_names(uint64_t mask, char *out, size_t size)
{
    snprintf(out, size, "%s", "");
}
void ctlsock_received(struct container *c, int fd)
{
    close(fd);
}
/* The keystore module has no hooks here: no fake container asks for a keystore. */
const struct tm_module module_keystore = {.name = "keystore"};
int keystore_svc_token_key(struct container *c, const struct secret *data_key, tm_err *err)
{
    return 0;
}
int keystore_svc_serve(struct container *c, int listen_fd, bool with_token, const struct keystore_guestos *gos,
                       tm_err *err)
{
    close(listen_fd);
    return 0;
}
int fscrypt_unlock(int rootfd, const struct secret *key, tm_err *err)
{
    return tm_err_set(err, EOPNOTSUPP, "no fscrypt here");
}
struct guestos *guestos_for(struct container *c)
{
    return NULL;
}
int guestos_apply(struct container_config *cfg, const struct guestos_config *g, tm_err *err)
{
    return 0;
}
void image_cache_refresh(struct daemon *d)
{
    (void)d;
}

void image_cache_record(struct daemon *d, const struct guestos *g, const void *payload, size_t len, int fd)
{
    (void)d, (void)g, (void)payload, (void)len;
    close(fd);
}

void image_cache_record_mount(struct daemon *d, const struct guestos *g, const void *payload, size_t len, int mnt_fd)
{
    (void)d, (void)g, (void)payload, (void)len;
    close(mnt_fd);
}

void image_cache_kept_mounts(const struct guestos *g, int *out, size_t max, size_t *ret_n)
{
    (void)g, (void)out, (void)max;
    *ret_n = 0;
}

const char *trust_level_name(enum trust_level t)
{
    return "?";
}
int net_pin(struct container *c, int fd, tm_err *err)
{
    close(fd);
    return 0;
}
/* Like reaper.c, the pid is reaped later, not here: until then it stays a zombie (and trustmed
 * may still open a pidfd for it, e.g. when its pid report arrives after the kill). */
static pid_t taken[64];
static int ntaken;

void reaper_take_pid(struct daemon *d, pid_t pid)
{
    if (ntaken < 64)
        taken[ntaken++] = pid;
}

void fake_reap_taken(void)
{
    for (int i = 0; i < ntaken; i++)
        waitpid(taken[i], NULL, 0); /* ECHILD if lifecycle.c has reaped it itself */
    ntaken = 0;
}
int runtime_save(struct container *c, tm_err *err)
{
    return 0;
}
void runtime_remove(struct container *c)
{
}
struct session *session_attached(struct container *c)
{
    return NULL;
}
void session_fail(struct session *s, int code, const char *msg)
{
}
void session_finish(struct session *s, int wait_status)
{
}
void session_free(struct session *s)
{
}
struct session *session_new(struct container *c, uint64_t conn_id, uint64_t req_id, bool attach, bool tty,
                            const char *what)
{
    return NULL;
}
int session_pipes(struct session *s, int child_fds[3], tm_err *err)
{
    return tm_err_set(err, EOPNOTSUPP, "no sessions here");
}
void session_use_credit(struct session *s)
{
}
