/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The vTPM's state file (docs/VTPM.md "The state"). The TPM's NVRAM is read from trustmed's
 * checked copy (a memfd) once at the start, never from the file on disk; each change libtpms
 * stores reaches us encrypted (vtpm_tpm.c, vtpm_state_put). After a client's command that changed
 * the state, the new bytes go to a temporary file (synced), "A <sha256>" to trustmed, which
 * anchors that digest in the TPM and answers "K <sha256>" (or "L <sha256>": not anchored, its
 * budget is spent), a rename over the state file (the directory synced), "C <sha256>" to trustmed,
 * and only then is the response forwarded. So the file on disk, or the synced temporary file
 * beside it, is always the anchored state, also after a power loss. trustmed anchors only
 * digests learnt so, never the file as it finds it: a copy root puts on disk meanwhile is not what
 * the TPM vouches for. What the start itself stores (Startup, a manufacture) stays in memory until
 * the first command that stores or the end: no client has seen it, and the file stays the state
 * the TPM anchors. */
#include "vtpm_state.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "crypto.h"
#include "fdutil.h"
#include "hex.h"
#include "test_hooks.h"

/* libtpms's NVRAM is some KiB (a fresh TPM's store is 2240 bytes; each NV index adds its size). */
#define STATE_MAX (4u << 20)
#define TMP_FILE VTPM_STATE_TMP_FILE
/* How long a commit waits for trustmed's anchor (a TPM NV write behind tpmd's queue). A trustmed
 * that does not answer in time makes it an unanchored commit, as if none ran. */
#define ANCHOR_WAIT_MS 10000

static const char *dir_path;
static int dir_fd = -1, report_fd = -1;
static uint8_t *committed, *scratch;
static size_t committed_len, cap, scratch_len;
static bool pending; /* scratch holds a state the TPM stored, not yet committed */
static bool serving; /* clients may see responses: what the TPM stores is committed at once */
static bool stored_now; /* the TPM stored during the command just run */
static char ack_buf[2 * 68];
static size_t ack_len;
/* The state trustmed gave at the start (checked against its anchor): vtpm_state_abandon. */
static uint8_t *initial;
static size_t initial_len;
static uint8_t committed_digest[32];

static int read_at(int fd, uint8_t *buf, size_t len)
{
    size_t have = 0;
    while (have < len) {
        ssize_t n = pread(fd, buf + have, len - have, (off_t)have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        have += (size_t)n;
    }
    return 0;
}

static int grow(size_t len)
{
    if (len <= cap)
        return 0;
    size_t n = cap ? cap : 16384;
    while (n < len)
        n *= 2;
    uint8_t *a = realloc(committed, n);
    if (!a)
        return -ENOMEM;
    committed = a;
    uint8_t *b = realloc(scratch, n);
    if (!b)
        return -ENOMEM;
    scratch = b;
    cap = n;
    return 0;
}

/* One line to trustmed; a trustmed that went away gets no more (a new one connects and asks). */
static void report(char kind, const uint8_t digest[32])
{
    char line[2 + 64 + 1];
    if (report_fd < 0)
        return;
    line[0] = kind;
    line[1] = ' ';
    tm_hex(digest, 32, line + 2);
    line[66] = '\n';
    if (write_all(report_fd, line, sizeof(line)) < 0) {
        close(report_fd);
        report_fd = -1;
    }
}

static void drop_report(void)
{
    close(report_fd);
    report_fd = -1;
    ack_len = 0;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* trustmed's answer to "A <hex>": "K <hex>" (anchored) or "L <hex>" (not). Lines for another
 * digest are late answers to a commit that stopped waiting; they are skipped. */
static void wait_anchor(const uint8_t digest[32])
{
    char want[65];
    tm_hex(digest, 32, want);
    uint64_t end = now_ms() + ANCHOR_WAIT_MS;
    while (report_fd >= 0) {
        char *nl;
        while ((nl = memchr(ack_buf, '\n', ack_len))) {
            size_t l = (size_t)(nl - ack_buf);
            bool ours = l == 66 && (ack_buf[0] == 'K' || ack_buf[0] == 'L') && ack_buf[1] == ' ' &&
                        memcmp(ack_buf + 2, want, 64) == 0;
            memmove(ack_buf, nl + 1, ack_len - l - 1);
            ack_len -= l + 1;
            if (ours)
                return;
        }
        if (ack_len == sizeof(ack_buf))
            ack_len = 0; /* no line that long is trustmed's */
        uint64_t now = now_ms();
        if (now >= end)
            return;
        struct pollfd p = {.fd = report_fd, .events = POLLIN};
        int n = poll(&p, 1, (int)(end - now));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        ssize_t got = read(report_fd, ack_buf + ack_len, sizeof(ack_buf) - ack_len);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (got <= 0) {
            drop_report(); /* trustmed went away: a new one connects and learns the state */
            return;
        }
        ack_len += (size_t)got;
    }
}

/* buf is scratch (it becomes the committed copy) or committed itself (written again). sync: the
 * temporary file and the rename are made durable, and trustmed anchors the digest before the
 * rename, so that after a power loss the file or the temporary file is the anchored state. */
static int commit(uint8_t *buf, size_t len, bool sync)
{
    uint8_t digest[32];
    tm_sha256(buf, len, digest);
    int fd = openat(dir_fd, TMP_FILE, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -errno;
    int r = write_all(fd, buf, len);
    if (r == 0 && sync && fsync(fd) < 0)
        r = -errno;
    close(fd);
    if (r < 0)
        return r;
    /* Before the rename: if we die between the two, the file is the old state or this one, and
     * trustmed accepts either (the command's response never left). */
    if (sync && report_fd >= 0) {
        report('A', digest);
        test_crash_point(dir_path, "vtpm-state-anchor-asked");
        wait_anchor(digest);
    } else {
        report('P', digest);
    }
    test_crash_point(dir_path, "vtpm-state-before-rename");
    if (renameat(dir_fd, TMP_FILE, dir_fd, VTPM_STATE_FILE) < 0)
        return -errno;
    if (sync && fsync(dir_fd) < 0)
        return -errno;
    test_crash_point(dir_path, "vtpm-state-after-rename");
    report('C', digest);
    if (buf == scratch) {
        scratch = committed;
        committed = buf;
    }
    committed_len = len;
    memcpy(committed_digest, digest, 32);
    return 0;
}

int vtpm_state_open(const char *state_dir, int memfd, int rfd, const uint8_t **ret, size_t *ret_len)
{
    dir_path = state_dir;
    dir_fd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0)
        return -errno;
    if (rfd >= 0 && fcntl(rfd, F_SETFD, FD_CLOEXEC) < 0)
        return -errno;
    report_fd = rfd;
    /* Standalone (bench/vtpm.py): the file as found. trustmed always gives its checked copy. */
    int fd = memfd >= 0 ? memfd : openat(dir_fd, VTPM_STATE_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st = {0};
    if (fd >= 0 && fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    int r = (size_t)st.st_size > STATE_MAX ? -EFBIG : grow((size_t)st.st_size + 1);
    if (r == 0 && st.st_size > 0)
        r = read_at(fd, committed, (size_t)st.st_size);
    if (fd >= 0)
        close(fd);
    if (r < 0)
        return r;
    committed_len = (size_t)st.st_size;
    tm_sha256(committed, committed_len, committed_digest);
    if (committed_len > 0) {
        if (!(initial = malloc(committed_len)))
            return -ENOMEM;
        memcpy(initial, committed, committed_len);
        initial_len = committed_len;
    }
    unlinkat(dir_fd, TMP_FILE, 0); /* a crash's leftover */
    *ret = initial;
    *ret_len = initial_len;
    return 0;
}

int vtpm_state_put(const uint8_t *state, size_t len)
{
    if (len > STATE_MAX)
        return -EFBIG;
    int r = grow(len);
    if (r < 0)
        return r;
    memcpy(scratch, state, len);
    scratch_len = len;
    pending = stored_now = true;
    return 0;
}

static bool scratch_new(void)
{
    return pending && !(scratch_len == committed_len && memcmp(scratch, committed, scratch_len) == 0);
}

int vtpm_state_serving(void)
{
    serving = true;
    stored_now = false; /* the start's own stores wait for a client's, or the end */
    /* Except a new vTPM's: its seeds exist only in what the manufacture stored. A client's key
     * blob or primary key depends on them without storing anything itself, so a vTPM that died
     * before its first storing command would come back with new seeds and refuse every blob it
     * had handed out. They are committed (and anchored) before the first client is served. */
    if (committed_len == 0 && scratch_new()) {
        pending = false;
        return commit(scratch, scratch_len, true);
    }
    return 0;
}

int vtpm_state_check(void)
{
    /* Before serving: the start's stores stay here (no client saw them; the file stays the
     * anchored state). While serving, a command that stored nothing commits nothing, even with
     * the start's stores still here: they ride on the next command that stores, or the end. */
    if (!serving || !stored_now)
        return 0;
    stored_now = false;
    bool fresh = scratch_new();
    pending = false;
    if (!fresh)
        return 0;
    return commit(scratch, scratch_len, true);
}

int vtpm_state_finish(bool take_pending)
{
    bool fresh = take_pending && scratch_new();
    pending = stored_now = false;
    /* Nothing committed yet (the TPM never stored one): there is no state to keep. */
    if (!fresh && committed_len == 0)
        return 0;
    return fresh ? commit(scratch, scratch_len, true) : commit(committed, committed_len, true);
}

int vtpm_state_abandon(bool take_pending)
{
    if (initial_len == 0)
        return vtpm_state_finish(take_pending);
    pending = stored_now = false;
    /* grow() made room for it when the state was opened. */
    memcpy(committed, initial, initial_len);
    committed_len = initial_len;
    return commit(committed, committed_len, true);
}

int vtpm_state_listen(const char *dir)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(dir) + 1 + strlen(VTPM_STATE_SOCKET);
    if (n >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, dir, strlen(dir));
    sa.sun_path[strlen(dir)] = '/';
    memcpy(sa.sun_path + strlen(dir) + 1, VTPM_STATE_SOCKET, strlen(VTPM_STATE_SOCKET));
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    unlink(sa.sun_path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(sa.sun_path, 0600) < 0 || listen(fd, 2) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

void vtpm_state_accept(int lfd)
{
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return;
    struct ucred cred;
    socklen_t len = sizeof(cred);
    /* Only root (trustmed): nothing else of the vTPM's uid may take the reports away from
     * trustmed. */
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || cred.uid != 0) {
        close(fd);
        return;
    }
    if (report_fd >= 0)
        close(report_fd);
    report_fd = fd;
    ack_len = 0;
    report('C', committed_digest);
}
