/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme-vtpm: one container's virtual TPM (docs/VTPM.md).
 *
 * trustmed starts it as the vTPM's own uid, without capabilities, with no_new_privs, and with
 *   fd 3  the state key (32 bytes; the state file is encrypted under it, vtpm_tpm.c), and "M"
 *         after it for a manufacture (as --manufacture); trustmed writes it only once the state
 *         passed its anchor check, and nothing else is read before it (EOF: given up, exit 3),
 *   fd 4  the container's events, one "PCR SHA256-HEX" line each, to extend before the guest
 *         can connect, and EK certificates to store in NV, "CERT rsa|ecc DER-HEX" (EOF ends it;
 *         with --manufacture trustmed sends it only after the EKs are reported),
 *   fd 5  "W" once it waits for its key (exec'd and linked: a standby is ready to be taken); then
 *         with --manufacture first one "EK rsa|ecc HEX" line per endorsement key made (its
 *         TPMT_PUBLIC) and "E" (before fd 4 is read); then, once the proxy sockets accept, an
 *         "NV rsa|ecc" line per certificate stored and "R" (then closed),
 *   fd 6  the state directory (--state-dir /proc/self/fd/6),
 *   fd 7  a memfd holding the state file as trustmed checked it against its anchor (empty for a
 *         new vTPM; filled before the key is written): the TPM's NVRAM is loaded from it once
 *         (vtpm_state.c),
 *   fd 8  a socket to trustmed for the state's digests ("P HEX" before, "C HEX" after each rename).
 * The TPM is libtpms in this process (vtpm_tpm.c). It serves the guest on RUN/pub/tpm.sock and
 * RUN/pub/tpm.sock.ctrl (the swtpm TCTI's protocol): TPM commands are executed one at a time,
 * the objects and sessions a client loaded are flushed when it goes away, and the control channel
 * answers only what the tpm2-tss swtpm TCTI needs (capabilities, locality 0, the established
 * flag). At SIGTERM it shuts the TPM down and saves its state (exit 0); exit 3 is a failure. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/futex.h>
#include <poll.h>
#include <seccomp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "fdutil.h"
#include "hex.h"
#include "idle_memory.h"
#include "secmem.h"
#include "vtpm_state.h"
#include "vtpm_tpm.h"
#include "vtpm_wire.h"

#define KEY_FD 3
#define EVENTS_FD 4
#define READY_FD 5
#define STATE_MEMFD 7
#define REPORT_FD 8
#define MAX_CLIENTS 16
#define MAX_CTRL 16
#define MAX_OWNERS 32
/* The end of a burst of commands: a tool's commands (the swtpm TCTI connects anew for each) come
 * within a few ms of each other, a script's next tool within some tens. Releasing the pages
 * after every command instead costs 200-500 us of CPU per command to map them again (measured,
 * docs/BENCHMARKS.md "Per-container vTPM"), after 2 s (TM_IDLE_RELEASE_MS) kept 4.4-7 MiB
 * resident between bursts. */
#define BURST_END_MS 100

/* A process using the vTPM. The swtpm TCTI connects anew for every command, so what a client
 * loaded belongs to its process, not to a connection: it is flushed when the process exits (its
 * pidfd turns readable). */
struct owner {
    pid_t pid;
    int pidfd;
    struct vtpm_handles handles;
};

struct client {
    int fd;
    struct owner *owner; /* NULL when no slot was free: its handles are not tracked */
    uint64_t active_ms; /* when it connected or was last answered (CLOCK_MONOTONIC) */
    size_t have;
    uint8_t buf[VTPM_MAX_COMMAND];
};

struct ctrl_client {
    int fd;
    uint64_t active_ms;
};

/* Relative to the vTPM's run directory, the working directory: its absolute path may be longer
 * than a socket address holds. */
static const char *const priv_dir = "priv", *const pub_dir = "pub";
static const char *run_dir, *state_dir;
static bool manufacture;
/* What fd 5 gets next: the EK lines of a manufacture and "E"; later the NV lines and "R". */
static char ready_msg[2048];
static size_t ready_len;
static bool serving; /* past the start: clients may have seen what the TPM wrote */
static struct client clients[MAX_CLIENTS];
static struct ctrl_client ctrls[MAX_CTRL];
static struct owner owners[MAX_OWNERS];

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void end_tpm(bool orderly);
static void say(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    fprintf(stderr, "trustme-vtpm[%d]: %s\n", (int)getpid(), buf);
}

static int sock_path(struct sockaddr_un *sa, const char *dir, const char *name)
{
    *sa = (struct sockaddr_un){.sun_family = AF_UNIX};
    int n = snprintf(sa->sun_path, sizeof(sa->sun_path), "%s/%s", dir, name);
    return n < 0 || (size_t)n >= sizeof(sa->sun_path) ? -ENAMETOOLONG : 0;
}

static int listen_on(const char *dir, const char *name)
{
    struct sockaddr_un sa;
    if (sock_path(&sa, dir, name) < 0)
        return -ENAMETOOLONG;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    unlink(sa.sun_path);
    /* 0666: the container's users reach it through the read-only bind mount at /run/tpm; the
     * directory is this uid's, so nobody else can replace the socket. */
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(sa.sun_path, 0666) < 0 || listen(fd, 16) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* One command to the TPM and its response (into rsp, at most VTPM_MAX_COMMAND bytes). */
static int transact(const uint8_t *cmd, size_t len, uint8_t *rsp, size_t *rsp_len)
{
    int r = vtpm_tpm_process(cmd, len, rsp, rsp_len);
    if (r < 0)
        return r;
    /* What the command wrote is on disk, and its digest with trustmed, before anyone sees the
     * response. */
    if ((r = vtpm_state_check()) < 0) {
        say("cannot save the vTPM state: %s", strerror(-r));
        return r;
    }
    return 0;
}

/* The state key from fd 3, straight into locked memory (no copy on the stack or heap). trustmed
 * starts this process while it still checks the state against its anchor (docs/VTPM.md
 * "Lifetime"): the key comes only once that check passed, so nothing here reads the state (fd 7)
 * before it. A manufacture is said after the key, one byte "M" (or --manufacture); EOF ends it. */
static int read_key(struct secret **ret)
{
    struct secret *key = NULL;
    tm_err err = {0};
    if (secret_new(VTPM_KEY_LEN + 1, &key, &err) < 0) {
        close(KEY_FD);
        say("%s", err.msg);
        return -ENOMEM;
    }
    size_t have = 0;
    for (;;) {
        ssize_t n = read(KEY_FD, key->data + have, VTPM_KEY_LEN + 1 - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = -errno;
            close(KEY_FD);
            secret_free(key);
            return e;
        }
        if (n == 0 || (have += (size_t)n) == VTPM_KEY_LEN + 1)
            break;
    }
    close(KEY_FD);
    if (have == VTPM_KEY_LEN + 1 && key->data[VTPM_KEY_LEN] == 'M')
        manufacture = true;
    else if (have != VTPM_KEY_LEN) {
        secret_free(key); /* no key: trustmed gave the start up (or is gone) */
        return -EBADMSG;
    }
    key->data[VTPM_KEY_LEN] = 0;
    key->len = VTPM_KEY_LEN;
    *ret = key;
    return 0;
}

/* The TPM's power-on on the state as trustmed checked it. */
static int start_tpm(struct secret *key, const uint8_t *state, size_t len)
{
    const char *why = NULL;
    int r = vtpm_tpm_start(key, state, len, &why);
    if (r < 0 && why)
        say("%s", why);
    return r; /* what the Startup (or a manufacture) stored is committed later (vtpm_state.c) */
}

/* What trustmed sends on fd 4 (EOF ends it): the container's events, "PCR SHA256-HEX" lines, and
 * the EK certificates to store, "CERT rsa|ecc DER-HEX" lines. */
#define INPUT_MAX (64 * 1024)
static char input[INPUT_MAX + 1];

static int read_input(void)
{
    size_t have = 0;
    for (;;) {
        ssize_t n = read(EVENTS_FD, input + have, INPUT_MAX - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        have += (size_t)n;
        if (have == INPUT_MAX)
            return -E2BIG;
    }
    input[have] = '\0';
    close(EVENTS_FD);
    return 0;
}

/* One EK certificate into its TCG NV index, by the platform (its hierarchy is still on): the
 * guest can read it but neither rewrite nor delete it. */
static int store_cert(const char *kind, const char *hex)
{
    static uint8_t der[VTPM_EK_CERT_MAX], cmd[VTPM_MAX_COMMAND], rsp[VTPM_MAX_COMMAND];
    size_t len = strlen(hex) / 2, rlen;
    tm_err herr = {0};
    if (len == 0 || len > VTPM_EK_CERT_MAX || tm_hex_decode_str(hex, der, len, 0, &herr) < 0)
        return -EBADMSG;
    uint32_t index = strcmp(kind, "rsa") == 0 ? VTPM_EK_CERT_RSA_INDEX : VTPM_EK_CERT_ECC_INDEX;
    size_t n = vtpm_cmd_nv_define(cmd, index, (uint16_t)len);
    int r = transact(cmd, n, rsp, &rlen);
    if (r < 0)
        return r;
    if (vtpm_be32(rsp + 6) == VTPM_RC_NV_DEFINED) {
        /* A certificate is there that this device did not record: the vTPM was carried here from
         * another device (docs/MIGRATION.md), whose vTPM issuer signed it. Only an index the
         * platform made can be undefined by it (one the guest defined stays, and this store
         * fails below), and only trustme-vtpm ever had the platform hierarchy. */
        n = vtpm_cmd_nv_undefine(cmd, index);
        if ((r = transact(cmd, n, rsp, &rlen)) < 0)
            return r;
        if (vtpm_be32(rsp + 6) == 0) {
            say("replacing the %s EK certificate another device's issuer had stored", kind);
            n = vtpm_cmd_nv_define(cmd, index, (uint16_t)len);
            if ((r = transact(cmd, n, rsp, &rlen)) < 0)
                return r;
        }
    }
    if (vtpm_be32(rsp + 6) != 0) {
        say("NV_DefineSpace of 0x%08x (the %s EK certificate) failed: TPM rc 0x%x", index, kind, vtpm_be32(rsp + 6));
        return -EIO;
    }
    for (size_t off = 0; off < len; off += VTPM_NV_CHUNK) {
        size_t chunk = len - off < VTPM_NV_CHUNK ? len - off : VTPM_NV_CHUNK;
        n = vtpm_cmd_nv_write(cmd, index, der + off, (uint16_t)chunk, (uint16_t)off);
        if ((r = transact(cmd, n, rsp, &rlen)) < 0)
            return r;
        if (vtpm_be32(rsp + 6) != 0) {
            say("NV_Write of 0x%08x failed: TPM rc 0x%x", index, vtpm_be32(rsp + 6));
            return -EIO;
        }
    }
    n = vtpm_cmd_nv_write_lock(cmd, index);
    if ((r = transact(cmd, n, rsp, &rlen)) < 0)
        return r;
    if (vtpm_be32(rsp + 6) != 0) {
        say("NV_WriteLock of 0x%08x failed: TPM rc 0x%x", index, vtpm_be32(rsp + 6));
        return -EIO;
    }
    return 0;
}

/* The input's certificates (each stored one is reported to trustmed: "NV rsa|ecc"), then its
 * events, extended before any client connects; then the platform hierarchy is switched off until
 * the next TPM start, so the guest cannot use it (its auth is empty). */
static int extend_events(void)
{
    uint8_t cmd[VTPM_MAX_COMMAND], rsp[VTPM_MAX_COMMAND];
    size_t len, rlen;
    int r = 0;
    char *save = NULL;
    for (char *line = strtok_r(input, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "CERT ", 5) == 0) {
            char kind[4];
            if (sscanf(line + 5, "%3s", kind) != 1 || (strcmp(kind, "rsa") != 0 && strcmp(kind, "ecc") != 0) ||
                line[8] != ' ')
                return -EBADMSG;
            /* A certificate that cannot be stored leaves the vTPM without it, not unusable. */
            if (store_cert(kind, line + 9) == 0 && ready_len + 8 < sizeof(ready_msg))
                ready_len += (size_t)snprintf(ready_msg + ready_len, sizeof(ready_msg) - ready_len, "NV %s\n", kind);
            continue;
        }
        unsigned pcr;
        char hex[65];
        uint8_t digest[32];
        tm_err herr = {0};
        if (sscanf(line, "%u %64s", &pcr, hex) != 2 || pcr > 23 || tm_hex_decode_str(hex, digest, 32, 0, &herr) < 0)
            return -EBADMSG;
        len = vtpm_cmd_pcr_extend(cmd, pcr, digest);
        if ((r = transact(cmd, len, rsp, &rlen)) < 0)
            return r;
        if (vtpm_be32(rsp + 6) != 0) {
            say("PCR_Extend of PCR %u failed: TPM rc 0x%x", pcr, vtpm_be32(rsp + 6));
            return -EIO;
        }
    }
    len = vtpm_cmd_platform_off(cmd);
    if ((r = transact(cmd, len, rsp, &rlen)) < 0)
        return r;
    if (vtpm_be32(rsp + 6) != 0) {
        say("HierarchyControl (platform off) failed: TPM rc 0x%x", vtpm_be32(rsp + 6));
        return -EIO;
    }
    return 0;
}

/* A new vTPM (its first start, before any guest command): the EKs from the TCG default templates,
 * persistent at the TCG handles, their public areas reported to trustmed, which measures them into
 * the physical TPM (docs/VTPM.md "Endorsement"). Only a fresh TPM is asked: later, the endorsement
 * and owner hierarchies are the guest's, and what it puts at those handles proves nothing. */
static int make_eks(void)
{
    static const struct {
        enum vtpm_ek_kind kind;
        const char *name;
        uint32_t persistent;
    } eks[] = {{VTPM_EK_RSA, "rsa", VTPM_EK_RSA_HANDLE}, {VTPM_EK_ECC, "ecc", VTPM_EK_ECC_HANDLE}};
    static uint8_t cmd[VTPM_MAX_COMMAND], rsp[VTPM_MAX_COMMAND];
    for (size_t i = 0; i < sizeof(eks) / sizeof(eks[0]); i++) {
        size_t len = vtpm_cmd_create_ek(cmd, eks[i].kind), rlen;
        int r = transact(cmd, len, rsp, &rlen);
        if (r < 0)
            return r;
        uint32_t handle;
        const uint8_t *pub;
        size_t pub_len;
        if (vtpm_rsp_created(rsp, rlen, &handle, &pub, &pub_len) < 0) {
            say("CreatePrimary of the %s EK failed: TPM rc 0x%x", eks[i].name, vtpm_be32(rsp + 6));
            return -EIO;
        }
        if (ready_len + 8 + 2 * pub_len + 1 >= sizeof(ready_msg))
            return -E2BIG;
        ready_len += (size_t)snprintf(ready_msg + ready_len, sizeof(ready_msg) - ready_len, "EK %s ", eks[i].name);
        tm_hex(pub, pub_len, ready_msg + ready_len);
        ready_len += 2 * pub_len;
        ready_msg[ready_len++] = '\n';
        len = vtpm_cmd_evict(cmd, handle, eks[i].persistent);
        r = transact(cmd, len, rsp, &rlen);
        uint32_t rc = r == 0 ? vtpm_be32(rsp + 6) : 0;
        len = vtpm_cmd_flush(cmd, handle);
        if (r == 0)
            r = transact(cmd, len, rsp, &rlen);
        if (r < 0)
            return r;
        if (rc != 0) {
            say("EvictControl of the %s EK failed: TPM rc 0x%x", eks[i].name, rc);
            return -EIO;
        }
    }
    return 0;
}

static void drop_client(struct client *c)
{
    close(c->fd);
    c->fd = -1;
    c->have = 0;
    c->owner = NULL;
}

/* The process exited: what it left loaded would fill the TPM's few slots for everyone else. */
static void owner_gone(struct owner *o)
{
    uint8_t cmd[VTPM_HEADER + 4];
    static uint8_t rsp[VTPM_MAX_COMMAND];
    size_t rlen;
    for (size_t i = 0; i < o->handles.n; i++) {
        size_t len = vtpm_cmd_flush(cmd, o->handles.h[i]);
        if (transact(cmd, len, rsp, &rlen) < 0)
            break;
    }
    for (size_t i = 0; i < MAX_CLIENTS; i++)
        if (clients[i].owner == o)
            clients[i].owner = NULL;
    close(o->pidfd);
    *o = (struct owner){.pidfd = -1};
}

static struct owner *owner_of(int fd)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || cred.pid <= 0)
        return NULL;
    struct owner *free_slot = NULL;
    for (size_t i = 0; i < MAX_OWNERS; i++) {
        if (owners[i].pidfd >= 0 && owners[i].pid == cred.pid)
            return &owners[i];
        if (owners[i].pidfd < 0 && !free_slot)
            free_slot = &owners[i];
    }
    if (!free_slot)
        return NULL;
    int pidfd = (int)syscall(SYS_pidfd_open, cred.pid, 0);
    if (pidfd < 0)
        return NULL;
    *free_slot = (struct owner){.pid = cred.pid, .pidfd = pidfd};
    return free_slot;
}

/* A complete command from c (its first len bytes): forward it, note the handles it created or
 * flushed, answer. */
static int serve_command(struct client *c, size_t len)
{
    static uint8_t rsp[VTPM_MAX_COMMAND];
    size_t rlen;
    int r = transact(c->buf, len, rsp, &rlen);
    if (r < 0)
        return r;
    uint32_t created = 0, flushed = 0;
    vtpm_track(c->buf, len, rsp, rlen, &created, &flushed);
    if (created) {
        /* The TPM handed this handle out anew: whoever had it before lost it already. */
        for (size_t i = 0; i < MAX_OWNERS; i++)
            if (owners[i].pidfd >= 0)
                vtpm_handles_remove(&owners[i].handles, created);
        if (c->owner)
            vtpm_handles_add(&c->owner->handles, created);
    }
    if (flushed)
        for (size_t i = 0; i < MAX_OWNERS; i++)
            if (owners[i].pidfd >= 0)
                vtpm_handles_remove(&owners[i].handles, flushed);
    c->have -= len;
    memmove(c->buf, c->buf + len, c->have);
    c->active_ms = now_ms();
    /* Never blocks: a response (at most 4 KiB) fits the socket's buffer unless the client
     * left earlier responses unread, and then it goes. */
    return send(c->fd, rsp, rlen, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)rlen ? 0 : 1;
}

/* Client readable: take what it sent (commands usually come in one piece: one read) and serve
 * each complete command; -1 when the client is gone or misbehaved. */
static int on_client(struct client *c)
{
    ssize_t n = recv(c->fd, c->buf + c->have, sizeof(c->buf) - c->have, MSG_DONTWAIT);
    if (n <= 0)
        return n < 0 && (errno == EAGAIN || errno == EINTR) ? 0 : -1;
    c->have += (size_t)n;
    while (c->have >= VTPM_HEADER) {
        size_t want = vtpm_be32(c->buf + 2);
        if (want < VTPM_HEADER || want > VTPM_MAX_COMMAND)
            return -1;
        if (c->have < want)
            return 0;
        int r = serve_command(c, want);
        if (r < 0) {
            say("the TPM failed a command: %s", strerror(-r));
            end_tpm(false);
            exit(3);
        }
        if (r)
            return -1;
    }
    return 0;
}

static void drop_ctrl(struct ctrl_client *c)
{
    close(c->fd);
    c->fd = -1;
}

/* An answer on the control channel, never blocking (as serve_command's): it fits the socket's
 * buffer unless the client left earlier answers unread, and then it goes. Before, a blocking
 * write (5 s SO_SNDTIMEO) to a client that sends commands and reads nothing held the whole vTPM
 * 5 s per such client: every process of the container waited. */
static int ctrl_send(struct ctrl_client *c, const uint8_t *rsp, size_t len)
{
    return send(c->fd, rsp, len, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)len ? 0 : -1;
}

/* One control command per read (the TCTI writes each in one piece). */
static int on_ctrl(struct ctrl_client *c)
{
    uint8_t buf[64], rsp[16];
    ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n <= 0)
        return n < 0 && (errno == EAGAIN || errno == EINTR) ? 0 : -1;
    const char *why = vtpm_ctrl_refused(buf, (size_t)n);
    if (why) {
        static uint64_t said_ms;
        static unsigned quiet;
        /* At most one line a second: a guest that floods refusals must not flood the log. */
        uint64_t now = now_ms();
        if (now - said_ms >= 1000) {
            if (quiet)
                say("refused %u more control commands from the guest", quiet);
            say("refused a control command from the guest: %s", why);
            said_ms = now;
            quiet = 0;
        } else {
            quiet++;
        }
        uint8_t res[4];
        vtpm_put_be32(res, VTPM_CTRL_REFUSED);
        return ctrl_send(c, res, 4);
    }
    size_t m = vtpm_ctrl_answer(buf, rsp, vtpm_tpm_established());
    c->active_ms = now_ms();
    return ctrl_send(c, rsp, m);
}

static void accept_into(int lfd, bool ctrl)
{
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return;
    /* When every slot is taken, the client answered (or connected) longest ago goes, idle or
     * holding half a command: whoever holds all slots does not lock the container's other
     * processes out (the TCTI connects anew for each command anyway). */
    if (ctrl) {
        struct ctrl_client *slot = NULL;
        for (size_t i = 0; i < MAX_CTRL && !(slot && slot->fd < 0); i++)
            if (!slot || ctrls[i].fd < 0 || ctrls[i].active_ms < slot->active_ms)
                slot = &ctrls[i];
        if (slot->fd >= 0)
            drop_ctrl(slot);
        *slot = (struct ctrl_client){.fd = fd, .active_ms = now_ms()};
        return;
    }
    struct client *slot = NULL;
    for (size_t i = 0; i < MAX_CLIENTS && !(slot && slot->fd < 0); i++)
        if (!slot || clients[i].fd < 0 || clients[i].active_ms < slot->active_ms)
            slot = &clients[i];
    if (slot->fd >= 0)
        drop_client(slot);
    slot->fd = fd;
    slot->have = 0;
    slot->active_ms = now_ms();
    slot->owner = owner_of(fd);
    /* The TCTI writes its command right after connecting: usually here already, which saves
     * a round through poll. */
    if (on_client(slot) < 0)
        drop_client(slot);
}

/* Only what serving needs from here on (writing the state file: openat, renameat, fsync,
 * vtpm_state.c; libtpms's OpenSSL reseeding its DRBG: getrandom; a large state growing its
 * buffers: mremap); anything else kills the process. The TPM runs in this process: this filter
 * is the sandbox of the guest's TPM commands. */
static int confine(void)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
    if (!ctx)
        return -ENOMEM;
    static const int allowed[] = {
        SCMP_SYS(read),
        SCMP_SYS(write),
        SCMP_SYS(close),
        SCMP_SYS(poll),
        SCMP_SYS(ppoll),
        SCMP_SYS(accept4),
        SCMP_SYS(accept),
        SCMP_SYS(setsockopt),
        SCMP_SYS(getrandom),
        SCMP_SYS(exit_group),
        SCMP_SYS(exit),
        SCMP_SYS(rt_sigreturn),
        SCMP_SYS(rt_sigprocmask),
        SCMP_SYS(clock_nanosleep),
        SCMP_SYS(nanosleep),
        SCMP_SYS(getpid),
        SCMP_SYS(writev),
        SCMP_SYS(brk),
        SCMP_SYS(mmap),
        SCMP_SYS(munmap),
        SCMP_SYS(fstat),
        SCMP_SYS(newfstatat),
        SCMP_SYS(clock_gettime),
        SCMP_SYS(lseek),
        SCMP_SYS(unlink),
        SCMP_SYS(getsockopt),
        SCMP_SYS(pidfd_open),
        SCMP_SYS(recvfrom),
        SCMP_SYS(sendto),
        SCMP_SYS(openat),
        SCMP_SYS(renameat),
        SCMP_SYS(renameat2),
        SCMP_SYS(fsync),
        SCMP_SYS(mremap),
        /* A larger state in the clear moves to a larger locked mapping (secmem.h). */
        SCMP_SYS(mlock),
        SCMP_SYS(munlock),
    };
    int r = 0;
    for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]) && r == 0; i++)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, allowed[i], 0);
    /* tm_idle_release: dropping pages of its own mappings; nothing else of madvise but the two
     * below. */
    if (r == 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(madvise), 1, SCMP_A2(SCMP_CMP_EQ, MADV_DONTNEED, 0));
    /* OpenSSL's run-once guards (glibc's pthread_once) wake waiters when they are done, whether
     * any wait or not: libtpms reaches some of them only at the guest's first commands. A wake of
     * this single-threaded process's own futex, nothing else of futex. */
    if (r == 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(futex), 1, SCMP_A1(SCMP_CMP_EQ, FUTEX_WAKE_PRIVATE, 0));
    /* secret_new: a secret's mapping left out of core dumps and wiped in a child. */
    if (r == 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(madvise), 1, SCMP_A2(SCMP_CMP_EQ, MADV_DONTDUMP, 0));
    if (r == 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(madvise), 1, SCMP_A2(SCMP_CMP_EQ, MADV_WIPEONFORK, 0));
    if (r == 0)
        r = seccomp_load(ctx);
    seccomp_release(ctx);
    return r;
}

/* The TPM's end. orderly (SIGTERM, or a start given up): TPM2_Shutdown(CLEAR), and what it
 * stored is kept; otherwise (a command failed) only what was committed. The state file is then
 * written once more, synced; a start that never served keeps the state trustmed gave it. */
static void end_tpm(bool orderly)
{
    vtpm_tpm_stop(orderly);
    int r = serving ? vtpm_state_finish(orderly) : vtpm_state_abandon(orderly);
    if (r < 0)
        say("cannot save the vTPM state: %s", strerror(-r));
}

static void stop_tpm(void)
{
    end_tpm(true);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"run-dir", required_argument, NULL, 'r'},
                                         {"state-dir", required_argument, NULL, 's'},
                                         {"manufacture", no_argument, NULL, 'm'},
                                         {NULL, 0, NULL, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'r': run_dir = optarg; break;
        case 's': state_dir = optarg; break;
        case 'm': manufacture = true; break;
        default: return 2;
        }
    }
    if (!run_dir || !state_dir || optind != argc) {
        fprintf(stderr, "usage: trustme-vtpm --run-dir D --state-dir D [--manufacture]\n");
        return 2;
    }
    /* It holds the state key and the TPM's state in the clear: no core dump of it, and no ptrace
     * or /proc/PID/mem by its own uid (exec made it dumpable again). */
    secmem_no_core_dumps();
    if (chdir(run_dir) < 0) {
        say("cannot enter %s: %s", run_dir, strerror(errno));
        return 3;
    }
    for (size_t i = 0; i < MAX_CLIENTS; i++)
        clients[i].fd = -1;
    for (size_t i = 0; i < MAX_CTRL; i++)
        ctrls[i].fd = -1;
    for (size_t i = 0; i < MAX_OWNERS; i++)
        owners[i].pidfd = -1;
    signal(SIGPIPE, SIG_IGN);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
    /* fd 7 and 8 come from trustmed; a standalone run (bench/vtpm.py) has neither. */
    const uint8_t *state;
    size_t state_len;
    struct secret *key = NULL;
    /* Exec'd and linked: "W" says it waits for its key now (docs/VTPM.md "The standby": trustmed
     * launches the next container's standby once this one waits; `trustme vtpm info` shows it). */
    if (write(READY_FD, "W", 1) != 1 && errno != EBADF)
        say("cannot say it waits: %s", strerror(errno));
    int r = read_key(&key);
    if (r < 0) {
        /* Before any state was read: nothing to save. */
        if (r != -EBADMSG)
            say("cannot read the state key: %s", strerror(-r));
        return 3;
    }
    r = vtpm_state_open(state_dir, fcntl(STATE_MEMFD, F_GETFD) >= 0 ? STATE_MEMFD : -1,
                        fcntl(REPORT_FD, F_GETFD) >= 0 ? REPORT_FD : -1, &state, &state_len);
    if (r < 0) {
        secret_free(key);
        say("cannot take the vTPM state: %s", strerror(-r));
        return 3;
    }
    r = start_tpm(key, state, state_len);
    if (r < 0) {
        say("the TPM did not start: %s", strerror(-r));
        stop_tpm();
        return 3;
    }
    if (manufacture && (r = make_eks()) < 0) {
        say("cannot make the vTPM's endorsement keys: %s", strerror(-r));
        stop_tpm();
        return 3;
    }
    if (manufacture) {
        /* trustmed has them certified and sends the certificates with the events. */
        ready_msg[ready_len++] = 'E';
        if (write(READY_FD, ready_msg, ready_len) != (ssize_t)ready_len) {
            stop_tpm();
            return 3;
        }
        ready_len = 0;
    }
    if ((r = read_input()) < 0 || (r = extend_events()) < 0) {
        say("cannot measure into the vTPM: %s", strerror(-r));
        stop_tpm();
        return 3;
    }
    int lfd = listen_on(pub_dir, "tpm.sock"), lctrl = listen_on(pub_dir, "tpm.sock.ctrl");
    int lstate = vtpm_state_listen(priv_dir);
    if (lfd < 0 || lctrl < 0 || sfd < 0 || lstate < 0) {
        say("cannot listen in %s: %s", pub_dir, strerror(-(lfd < 0 ? lfd : lctrl)));
        stop_tpm();
        return 3;
    }
    ready_msg[ready_len++] = 'R';
    /* One write below PIPE_BUF: trustmed reads it in one piece. */
    if (write(READY_FD, ready_msg, ready_len) != (ssize_t)ready_len) {
        stop_tpm();
        return 3;
    }
    close(READY_FD);
    vtpm_tpm_prepare();
    if ((r = confine()) != 0) {
        say("cannot load the seccomp filter: %s", strerror(-r));
        stop_tpm();
        return 3;
    }
    serving = true;
    if ((r = vtpm_state_serving()) < 0) {
        say("cannot save the new vTPM's state: %s", strerror(-r));
        stop_tpm();
        return 3;
    }
    /* What the start touched (dynamic linking, libtpms's and OpenSSL's set-up, libseccomp) is
     * not what commands need: it goes now, before any client connects. */
    tm_idle_release();
    bool idle = true;
    for (;;) {
        struct pollfd p[3 + MAX_CLIENTS + MAX_CTRL + MAX_OWNERS + 1];
        size_t n = 0;
        p[n++] = (struct pollfd){.fd = sfd, .events = POLLIN};
        p[n++] = (struct pollfd){.fd = lfd, .events = POLLIN};
        p[n++] = (struct pollfd){.fd = lctrl, .events = POLLIN};
        for (size_t i = 0; i < MAX_CLIENTS; i++)
            p[n++] = (struct pollfd){.fd = clients[i].fd, .events = POLLIN};
        for (size_t i = 0; i < MAX_CTRL; i++)
            p[n++] = (struct pollfd){.fd = ctrls[i].fd, .events = POLLIN};
        for (size_t i = 0; i < MAX_OWNERS; i++)
            p[n++] = (struct pollfd){.fd = owners[i].pidfd, .events = POLLIN};
        p[n++] = (struct pollfd){.fd = lstate, .events = POLLIN};
        /* A burst of commands over (BURST_END_MS without a request): the library pages it
         * touched go back (they are the page cache's; the next command maps them again). */
        int ready = poll(p, n, idle ? -1 : BURST_END_MS);
        if (ready < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        idle = ready == 0;
        if (idle) {
            tm_idle_release();
            continue;
        }
        /* trustmed's state socket first: a restarted trustmed connects and then stops an orphan
         * at once, and the stop's final commit must reach it (else that state is not anchored). */
        if (p[n - 1].revents)
            vtpm_state_accept(lstate);
        if (p[0].revents) {
            struct signalfd_siginfo si;
            if (read(sfd, &si, sizeof(si)) == sizeof(si)) {
                stop_tpm();
                return 0;
            }
        }
        if (p[1].revents)
            accept_into(lfd, false);
        if (p[2].revents)
            accept_into(lctrl, true);
        /* A slot given to a new client above keeps its old fd's events: not the new one's
         * (its read would block). */
        for (size_t i = 0; i < MAX_CLIENTS; i++)
            if (p[3 + i].revents && clients[i].fd >= 0 && clients[i].fd == p[3 + i].fd && on_client(&clients[i]) < 0)
                drop_client(&clients[i]);
        for (size_t i = 0; i < MAX_CTRL; i++)
            if (p[3 + MAX_CLIENTS + i].revents && ctrls[i].fd >= 0 && ctrls[i].fd == p[3 + MAX_CLIENTS + i].fd &&
                on_ctrl(&ctrls[i]) < 0)
                drop_ctrl(&ctrls[i]);
        for (size_t i = 0; i < MAX_OWNERS; i++)
            if (p[3 + MAX_CLIENTS + MAX_CTRL + i].revents && owners[i].pidfd >= 0)
                owner_gone(&owners[i]);
    }
    stop_tpm();
    return 3;
}
