/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The vTPM's state file and its TPM anchor (docs/VTPM.md "The state"): the file is read and
 * checked here, trustme-vtpm's commit reports ("A", "P", "C") are followed, each commit is
 * anchored before its rename while the container's TPM write budget lasts, and the last state the
 * TPM wrote is anchored when trustme-vtpm ends. */
#include "vtpm_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "commit_budget.h"
#include "crypto.h"
#include "deadline.h"
#include "fdutil.h"
#include "hex.h"
#include "log.h"

static void on_anchored(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata);

void vtpm_anchor_name(const struct container *c, char *out, size_t size)
{
    snprintf(out, size, VTPM_ANCHOR_PREFIX "%s", c->uuid);
}

/* A state file's bytes as found (-ENOENT: none). Not through a link: the directory is the vTPM
 * uid's, and whatever it names would go to that uid. */
int vtpm_read_state(const struct container *c, const char *name, uint8_t **ret, size_t *ret_len)
{
    char path[PATH_MAX + 32];
    vtpm_state_dir(c, path, sizeof(path));
    size_t n = strlen(path);
    snprintf(path + n, sizeof(path) - n, "/%s", name);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    struct stat st;
    if (fd < 0)
        return errno == ELOOP ? -EBADMSG : -errno;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode) || st.st_size > STATE_MAX)
        return -EBADMSG;
    uint8_t *buf = malloc((size_t)st.st_size + 1);
    if (!buf)
        return -ENOMEM;
    ssize_t got = read_all(fd, buf, (size_t)st.st_size);
    if (got != st.st_size) {
        free(buf);
        return got < 0 ? (int)got : -EIO;
    }
    *ret = buf;
    *ret_len = (size_t)got;
    return 0;
}

/* The state file's digest; false when there is none. */
bool vtpm_state_digest(const struct container *c, uint8_t out[32])
{
    /* vtpm_read_state: a FIFO the vTPM's uid put there must not block trustmed */
    _cleanup_free_ uint8_t *data = NULL;
    size_t len = 0;
    if (vtpm_read_state(c, STATE_FILE, &data, &len) < 0)
        return false;
    tm_sha256(data, len, out);
    return true;
}

/* Why the state found on disk is not the vTPM's (NULL: it is): it must be the last state
 * trustme-vtpm committed (the anchored one at a start), or the one it announced before a rename
 * it may not have made. */
const char *vtpm_state_refused(const struct vtpm *v, bool have, const uint8_t digest[32])
{
    if (have && ((v->have_known && memcmp(digest, v->known, 32) == 0) ||
                 (v->have_pending && memcmp(digest, v->pending, 32) == 0)))
        return NULL;
    if (!have)
        return v->have_known ? "its state file is missing, but the TPM anchors one" : NULL;
    if (!v->have_known && !v->have_pending)
        return "a state file is there that this device's TPM never anchored (copied in?)";
    return "its state file is not the one anchored in the TPM (an older copy, or another container's state)";
}

void vtpm_close_report(struct vtpm *v)
{
    tm_source_free(v->report_src);
    v->report_src = NULL;
    close_and_reset(v->report_fd);
    v->report_len = 0;
}

/* "K HEX" (anchored) or "L HEX" (not) to trustme-vtpm, which waits for it before its rename. */
static void answer_anchor(struct vtpm *v, char kind, const uint8_t digest[32])
{
    char line[67];
    line[0] = kind;
    line[1] = ' ';
    tm_hex(digest, 32, line + 2);
    line[66] = '\n';
    /* 67 bytes on a socket it drains while it waits: a full buffer means it is not waiting, and it
     * then goes on unanchored when its wait ends. */
    if (v->report_fd >= 0 && send(v->report_fd, line, sizeof(line), MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
        log_warn("%s: cannot answer the vTPM's anchor request: %s", container_label(v->c), strerror(errno));
}

/* An anchor update of v's answered (err: it failed, audited). */
static void anchor_answered(struct daemon *d, struct vtpm *v, const tm_err *err)
{
    v->anchoring--;
    if (!v->anchoring && v->want_standby)
        vtpm_standby_want(v); /* the last run's state is anchored: the next run's trustme-vtpm */
    if (err) {
        log_error("%s: the vTPM state cannot be anchored: %s", container_label(v->c), err->msg);
        daemon_audit(d, "vtpm.anchor", "fail", v->c, NULL, "%s", err->msg);
    }
}

static void on_step_anchored(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
{
    struct vtpm *v = userdata;
    anchor_answered(d, v, err);
    if (!err) {
        memcpy(v->anchored, v->asked, 32);
        v->have_anchored = true;
        log_debug("%s: the vTPM's commit is anchored", container_label(v->c));
    }
    answer_anchor(v, err ? 'L' : 'K', v->asked);
    daemon_maybe_exit(d);
}

/* A commit's digest into the TPM before trustme-vtpm renames it into place (docs/VTPM.md "The
 * anchor"): one NV write, taken from the container's TPM write budget, which the keystore's
 * commits share. A spent budget makes it a commit the TPM does not vouch for until the vTPM's end
 * (a power loss before then fails closed); the guest, who chose to write that often, is told in
 * the audit log. */
void vtpm_anchor_step(struct vtpm *v, const uint8_t digest[32], bool answer)
{
    char name[96];
    uint64_t wait_s = 0;
    vtpm_anchor_name(v->c, name, sizeof(name));
    if (!commit_budget_take(v->c->uuid, (uint64_t)tm_now_ms(), &wait_s)) {
        int64_t now = tm_now_ms();
        if (!v->budget_audit_ms || now - v->budget_audit_ms >= 60000) {
            v->budget_audit_ms = now;
            daemon_audit(v->c->d, "vtpm.anchor", "fail", v->c, NULL,
                         "TPM write budget spent (%d anchored commits, then one every %d s): the vTPM's state "
                         "is anchored at its end only",
                         COMMIT_BUDGET_BURST, COMMIT_BUDGET_REFILL_S);
        }
        if (answer)
            answer_anchor(v, 'L', digest);
        return;
    }
    uint8_t value[32]; /* (sent at once: tpmd_anchor_update packs the request) */
    memcpy(value, digest, 32);
    if (answer)
        memcpy(v->asked, digest, 32);
    struct tpmd_anchor_entry e = {.name = name, .value = value, .len = 32};
    tm_err err = {0};
    if (tpmd_anchor_update(v->c->d, &e, 1, NULL, 0, answer ? on_step_anchored : on_anchored, v, &err) < 0) {
        log_error("%s: the vTPM state cannot be anchored: %s", container_label(v->c), err.msg);
        if (answer)
            answer_anchor(v, 'L', digest);
        return;
    }
    v->anchoring++;
    if (!answer) { /* (on_anchored learns nothing of the digest) */
        memcpy(v->anchored, digest, 32);
        v->have_anchored = true;
    }
}

/* "A HEX": the TPM wrote this state, synced, to be anchored before its rename; "P HEX": the same,
 * not to be anchored now; "C HEX": it is the file now. */
static void report_line(struct vtpm *v, const char *line, size_t n)
{
    uint8_t d[32];
    tm_err err = {0};
    if (n != 66 || line[1] != ' ' || (line[0] != 'P' && line[0] != 'C' && line[0] != 'A') ||
        tm_hex_decode(line + 2, 64, d, sizeof(d), 0, &err) < 0) {
        log_warn("%s: trustme-vtpm reported a malformed state digest", container_label(v->c));
        return;
    }
    if (line[0] == 'P' || line[0] == 'A') {
        memcpy(v->pending, d, 32);
        v->have_pending = true;
        if (line[0] == 'A')
            vtpm_anchor_step(v, d, true);
        return;
    }
    memcpy(v->known, d, 32);
    v->have_known = true;
    v->have_pending = false;
    if (v->anchor_first_c) {
        /* Re-adopted: what it committed while no trustmed ran is anchored now, so that a power
         * loss from here on does not find the file newer than its anchor. */
        v->anchor_first_c = false;
        if (!v->have_anchored || memcmp(v->anchored, d, 32) != 0)
            vtpm_anchor_step(v, d, false);
    }
}

/* Everything trustme-vtpm reported so far; after it died its last lines are still readable. */
static void drain_reports(struct vtpm *v)
{
    while (v->report_fd >= 0) {
        ssize_t n = read(v->report_fd, v->report_buf + v->report_len, sizeof(v->report_buf) - v->report_len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            vtpm_close_report(v);
            return;
        }
        v->report_len += (size_t)n;
        char *nl;
        while ((nl = memchr(v->report_buf, '\n', v->report_len))) {
            size_t l = (size_t)(nl - v->report_buf);
            report_line(v, v->report_buf, l);
            memmove(v->report_buf, nl + 1, v->report_len - l - 1);
            v->report_len -= l + 1;
        }
        if (v->report_len == sizeof(v->report_buf))
            v->report_len = 0; /* no line that long is ours */
    }
}

void vtpm_on_report(tm_source *src, uint32_t events, void *userdata)
{
    drain_reports(userdata);
}

/* A power loss (or a kill) between a commit's anchor and its rename leaves the anchored state in
 * the synced temporary file: when it is the anchored one, it becomes the state file. (The
 * command's response never left: the TPM's own behaviour at a power loss mid-command.) */
int vtpm_take_anchored_tmp(struct vtpm *v, const char *sdir, uint8_t **state, size_t *state_len)
{
    _cleanup_free_ uint8_t *tmp = NULL;
    size_t len = 0;
    uint8_t digest[32];
    if (vtpm_read_state(v->c, STATE_TMP_FILE, &tmp, &len) < 0)
        return -ENOENT;
    tm_sha256(tmp, len, digest);
    if (memcmp(digest, v->anchored, 32) != 0)
        return -ESTALE;
    _cleanup_close_ int dfd = open(sdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (dfd < 0 || renameat(dfd, STATE_TMP_FILE, dfd, STATE_FILE) < 0 || fsync(dfd) < 0)
        return -errno;
    log_info("%s: the vTPM's last commit was anchored before its rename: taken from %s", container_label(v->c),
             STATE_TMP_FILE);
    free(*state);
    *state = steal_ptr(tmp);
    *state_len = len;
    return 0;
}

static void on_anchored(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
{
    anchor_answered(d, userdata, err);
    daemon_maybe_exit(d);
}

/* trustme-vtpm ended: anchor the last state it reported (the TPM's last write), never the file as
 * found — a copy root put there while it ran, or just before killing it, is not anchored. */
void vtpm_anchor_state(struct vtpm *v)
{
    char name[96];
    uint8_t digest[32];
    vtpm_anchor_name(v->c, name, sizeof(name));
    drain_reports(v);
    vtpm_close_report(v);
    bool have = vtpm_state_digest(v->c, digest);
    /* It died between a commit's anchor and its rename: the synced temporary file is the state
     * the TPM holds, and the next spawn takes it. */
    bool in_tmp = v->have_pending && v->have_anchored && memcmp(v->anchored, v->pending, 32) == 0 &&
                  (!have || memcmp(digest, v->pending, 32) != 0);
    if (v->have_pending && ((have && memcmp(digest, v->pending, 32) == 0) || in_tmp)) {
        memcpy(v->known, v->pending, 32); /* it died after the rename, before saying so */
        v->have_known = true;
    }
    v->have_pending = false;
    if (in_tmp)
        return;
    if (!v->have_known) {
        /* No state was ever committed (it died before its TPM wrote one), or a re-adopted vTPM
         * ended before it told us its state: nothing learnt, nothing anchored. */
        if (have)
            log_warn("%s: the vTPM ended before it reported its state: not anchored", container_label(v->c));
        return;
    }
    if (!have || memcmp(digest, v->known, 32) != 0) {
        log_error("%s: the vTPM's state file is not the state it wrote last (replaced while it ran?): the "
                  "state it wrote is anchored, the file is refused",
                  container_label(v->c));
        daemon_audit(v->c->d, "vtpm.rollback", "fail", v->c, NULL,
                     "the state file was replaced under the running vTPM; its last state is anchored");
    }
    /* Its last commit was anchored before its rename: no NV write again. */
    if (v->have_anchored && memcmp(v->anchored, v->known, 32) == 0)
        return;
    memcpy(digest, v->known, 32);
    struct tpmd_anchor_entry e = {.name = name, .value = digest, .len = 32};
    tm_err err = {0};
    if (tpmd_anchor_update(v->c->d, &e, 1, NULL, 0, on_anchored, v, &err) < 0) {
        log_error("%s: the vTPM state cannot be anchored: %s", container_label(v->c), err.msg);
        daemon_audit(v->c->d, "vtpm.anchor", "fail", v->c, NULL, "%s", err.msg);
        return;
    }
    v->anchoring++;
    memcpy(v->anchored, digest, 32);
    v->have_anchored = true;
}
