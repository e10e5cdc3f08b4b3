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
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "commit_budget.h"
#include "container.h"
#include "crypto.h"
#include "daemon.h"
#include "fileio.h"
#include "keystore.pb-c.h"
#include "keystore_migrated.h"
#include "log.h"
#include "packet.h"
#include "scd_sandbox.h"
#include "secmem.h"
#include "tpmd_client.h"

#define RESTART_MS 500
/* The key blobs' index is a secure store of its own, "sstore/<uuid>.keys" (KS_INDEX_SUFFIX in
 * src/keystore/blob_index.h). */
#define KEY_INDEX_SUFFIX ".keys"

struct keystore_svc {
    struct container *c;
    struct secret *token_part; /* from the data key, at a start with a token */
    struct secret *key; /* the keystore key while the service runs (for a restart) */
    struct secret *storage_seed; /* its secure store's seed: device and UUID, not the token */
    int listen_fd; /* kept: a restarted service serves the same socket */
    int link_fd; /* trustmed's end of the link (fd 3 in the service) */
    int pidfd;
    tm_source *pid_src;
    tm_source *link_src; /* the service's anchor requests for its secure store */
    bool anchor_pending; /* one at a time: the service waits for each answer */
    uint8_t *identity; /* packed KsContainerIdentity, for its attestation certificate */
    uint8_t *deferred; /* a packed request waiting for the tamper-proof check */
    size_t deferred_len;
    bool tp_checked;
    char last_refusal[256]; /* its secure store's last refusal audited, and when */
    uint64_t last_refusal_ms;
    size_t identity_len;
    uint64_t anchor_id;
    bool cert_issued; /* this service's attestation key is certified: it needs no second one */
    uint64_t cert_refused_ms; /* the last refusal audited */
    uint64_t budget_audit_ms; /* its NV write budget's last refusal audited */
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
    tm_source_free(ks->link_src);
    ks->link_src = NULL;
    if (ks->anchor_pending)
        tpmd_forget(ks->c->d, ks);
    ks->anchor_pending = false;
    free(ks->deferred);
    ks->deferred = NULL;
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
    tm_source_free(ks->link_src);
    ks->link_src = NULL;
    if (ks->anchor_pending)
        tpmd_forget(ks->c->d, ks);
    ks->anchor_pending = false;
    free(ks->deferred);
    ks->deferred = NULL;
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
    /* A keystore a migration carried here moves into place at its first start. */
    if ((r = keystore_migrated_adopt(c, sb->uid, sb->gid, err)) < 0)
        return r;
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

/* The container's vTPM command socket, for its TPM-held keys (docs/KEYSTORE.md "TPM-held
 * keys"): the public directory trustme-vtpm serves the container (vtpm_public_dir's layout),
 * bound at /vtpm in the service's root (a socket path must fit AF_UNIX's 108 bytes, and the
 * TCTI appends ".ctrl"). "" without a vTPM. */
static void vtpm_socket(struct container *c, struct scd_sandbox *sb, char *dir, size_t dir_size, char *sock,
                        size_t size)
{
    sock[0] = '\0';
    if (!c->cfg->vtpm || sb->nbinds >= SCD_MAX_BINDS)
        return;
    snprintf(dir, dir_size, "%s/vtpm/%s/pub", c->d->run_dir, c->uuid);
    sb->binds_at[sb->nbinds] = "/vtpm";
    sb->binds[sb->nbinds++] = dir;
    snprintf(sock, size, "/vtpm/tpm.sock");
}

/* The service's secure store is anchored in tpmd's table (docs/SECURE_STORAGE.md). The service
 * has no link to tpmd: it sends tpmd AnchorRequests on its link to trustmed, which forwards them
 * through its tpmd client if every name is this container's own ("sstore/<uuid>", its key
 * blobs' index "sstore/<uuid>.keys", "sstore-tp/<uuid>" and "sstore-tp/<uuid>/..."). A
 * keystore process taken over by the
 * container can therefore change its own store's anchors only, never another container's or
 * the table's other entries (GuestOS versions, configs, tokens, the audit log's head). */
static bool anchor_name_ours(const struct container *c, const char *name)
{
    char own[96];
    snprintf(own, sizeof(own), "sstore/%s", c->uuid);
    if (strcmp(name, own) == 0)
        return true;
    snprintf(own, sizeof(own), "sstore/%s" KEY_INDEX_SUFFIX, c->uuid);
    if (strcmp(name, own) == 0)
        return true;
    int n = snprintf(own, sizeof(own), "sstore-tp/%s", c->uuid);
    return strncmp(name, own, (size_t)n) == 0 && (name[n] == '\0' || (name[n] == '/' && name[n + 1]));
}

/* What a keystore process sends on its link is the container's to choose (a taken-over process
 * can send as fast as trustmed reads): its refusals are logged at most 5 times per 10 s. */
static tm_ratelimit rl_link = TM_RATELIMIT_INIT(10, 5);

static void anchor_answer(struct keystore_svc *ks, uint64_t id, const Trustme__Tpmd__Response *resp, int code,
                          const char *msg)
{
    Trustme__Tpmd__Response out = TRUSTME__TPMD__RESPONSE__INIT;
    Trustme__Tpmd__Error e = TRUSTME__TPMD__ERROR__INIT;
    if (resp && resp->body_case != TRUSTME__TPMD__RESPONSE__BODY_ERROR && !code) {
        out = *resp;
    } else {
        e.has_code = true;
        e.code = code ? code : (resp && resp->error && resp->error->has_code ? resp->error->code : EIO);
        e.message = (char *)(msg ? msg : resp && resp->error ? resp->error->message : "tpmd failed");
        out.body_case = TRUSTME__TPMD__RESPONSE__BODY_ERROR;
        out.error = &e;
    }
    out.has_id = true;
    out.id = id;
    tm_err err = {0};
    if (ks->link_fd >= 0 && tm_packet_send_msg(ks->link_fd, &out.base, 64 * 1024, &err) < 0)
        log_warn_ratelimited(&rl_link, "%s: cannot answer its keystore: %s", container_label(ks->c), err.msg);
}

static void on_anchor_reply(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
{
    struct keystore_svc *ks = userdata;
    ks->anchor_pending = false;
    if (!resp)
        anchor_answer(ks, ks->anchor_id, NULL, err && err->code ? err->code : EIO,
                      err && err->code ? err->msg : "tpmd is not running");
    else
        anchor_answer(ks, ks->anchor_id, resp, 0, NULL);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Audited when tpmd answered: a certificate once per service, a refusal (before the enrollment,
 * the container asking at every attestation) at most once a minute. */
static void on_cert_reply(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
{
    struct keystore_svc *ks = userdata;
    if (resp && resp->body_case == TRUSTME__TPMD__RESPONSE__BODY_CONTAINER_CERT) {
        ks->cert_issued = true;
        daemon_audit(d, "keystore.attestation_key", "ok", ks->c, "trustmed", "certified by the AK");
    } else if (!ks->cert_refused_ms || now_ms() - ks->cert_refused_ms >= 60000) {
        ks->cert_refused_ms = now_ms();
        daemon_audit(d, "keystore.attestation_key", "fail", ks->c, "trustmed", "%s",
                     resp && resp->error && resp->error->message ? resp->error->message
                     : err && err->code                          ? err->msg
                                                                 : "tpmd is not running");
    }
    on_anchor_reply(d, resp, err, userdata);
}

/* The certificate of the service's attestation key (docs/KEYSTORE.md "Key attestation"): the
 * service names only its public key; the subject and the identity are trustmed's own, so a
 * taken-over keystore process can have its key certified as its own container's only, and once:
 * the service makes one attestation key in its life (more would keep the TPM signing for it). */
static int container_cert_forward(struct keystore_svc *ks, const Trustme__Tpmd__Request *req, tm_err *err)
{
    struct container *c = ks->c;
    if (ks->anchor_pending)
        return tm_err_set(err, EBUSY, "one request at a time");
    if (ks->cert_issued)
        return tm_err_set(err, EPERM, "this keystore's attestation key is certified already");
    if (!req->container_cert->has_spki_der || req->container_cert->spki_der.len > 512)
        return tm_err_set(err, EINVAL, "no attestation key");
    char cn[64];
    snprintf(cn, sizeof(cn), "trustme container %s", c->uuid);
    Trustme__Tpmd__ContainerCert cc = TRUSTME__TPMD__CONTAINER_CERT__INIT;
    cc.has_spki_der = true;
    cc.spki_der = req->container_cert->spki_der;
    cc.common_name = cn;
    cc.has_identity = true;
    cc.identity = (ProtobufCBinaryData){ks->identity_len, ks->identity};
    Trustme__Tpmd__Request out = TRUSTME__TPMD__REQUEST__INIT;
    out.body_case = TRUSTME__TPMD__REQUEST__BODY_CONTAINER_CERT;
    out.container_cert = &cc;
    int r = tpmd_call(c->d, &out, on_cert_reply, ks, err);
    if (r < 0)
        return r;
    ks->anchor_pending = true;
    ks->anchor_id = req->id;
    return 0;
}

/* The tamper-proof quota (8 objects per container, docs/SECURE_STORAGE.md) is the library's in
 * the service; trustmed holds a taken-over service to it too, or it could fill tpmd's table
 * (4096 entries for the device) under its own prefix. The invariant: every value entry
 * "sstore-tp/<uuid>/<id>" is listed in the index "sstore-tp/<uuid>" (ids, each NUL-terminated),
 * which lists at most SSTORE_TP_MAX. A request that sets any tamper-proof entry must set the
 * index too, list in it every value it sets, and remove every value the old index (read from
 * tpmd first) listed and the new one does not. */
#define TP_MAX 8 /* SSTORE_TP_MAX */

static bool touches_tp(const struct container *c, const Trustme__Tpmd__AnchorRequest *ar)
{
    char own[96];
    int n = snprintf(own, sizeof(own), "sstore-tp/%s", c->uuid);
    for (size_t i = 0; i < ar->n_set; i++)
        if (strncmp(ar->set[i]->name, own, (size_t)n) == 0)
            return true;
    return false;
}

/* The ids an index value lists; -1 if it is malformed or lists more than TP_MAX. */
static int tp_ids(const uint8_t *v, size_t len, char ids[TP_MAX][16])
{
    int n = 0;
    for (size_t k = 0; k < len;) {
        const uint8_t *end = memchr(v + k, '\0', len - k);
        size_t l = end ? (size_t)(end - (v + k)) : 0;
        if (!end || l == 0 || l > 15 || n == TP_MAX)
            return -1;
        memcpy(ids[n], v + k, l);
        ids[n++][l] = '\0';
        k += l + 1;
    }
    return n;
}

static bool listed(char ids[TP_MAX][16], int n, const char *id)
{
    for (int i = 0; i < n; i++)
        if (strcmp(ids[i], id) == 0)
            return true;
    return false;
}

static int tp_check(const struct container *c, const Trustme__Tpmd__AnchorRequest *ar, const ProtobufCBinaryData *old,
                    tm_err *err)
{
    char index[96], prefix[100];
    snprintf(index, sizeof(index), "sstore-tp/%s", c->uuid);
    int pn = snprintf(prefix, sizeof(prefix), "%s/", index);
    char oids[TP_MAX][16], nids[TP_MAX][16];
    int on = old ? tp_ids(old->data, old->len, oids) : 0, nn = -2;
    if (on < 0)
        on = 0; /* a malformed old index lists nothing the new one must account for */
    for (size_t i = 0; i < ar->n_set; i++) {
        const Trustme__Tpmd__AnchorEntry *e = ar->set[i];
        if (strcmp(e->name, index) == 0)
            nn = e->has_remove && e->remove ? 0 : tp_ids(e->value.data, e->value.len, nids);
    }
    if (nn == -2)
        return tm_err_set(err, EPERM, "a tamper-proof object is set without its index");
    if (nn < 0)
        return tm_err_set(err, EDQUOT, "the tamper-proof index is malformed or lists more than %d objects", TP_MAX);
    for (size_t i = 0; i < ar->n_set; i++) {
        const Trustme__Tpmd__AnchorEntry *e = ar->set[i];
        if (strncmp(e->name, prefix, (size_t)pn) == 0 && !(e->has_remove && e->remove) &&
            !listed(nids, nn, e->name + pn))
            return tm_err_set(err, EPERM, "tamper-proof object %s is not in its index", e->name + pn);
    }
    for (int k = 0; k < on; k++) {
        if (listed(nids, nn, oids[k]))
            continue;
        bool removed = false;
        for (size_t i = 0; i < ar->n_set && !removed; i++)
            removed = strncmp(ar->set[i]->name, prefix, (size_t)pn) == 0 &&
                      strcmp(ar->set[i]->name + pn, oids[k]) == 0 && ar->set[i]->has_remove && ar->set[i]->remove;
        if (!removed)
            return tm_err_set(err, EPERM, "tamper-proof object %s leaves the index but not the table", oids[k]);
    }
    return 0;
}

static int anchor_forward(struct keystore_svc *ks, const Trustme__Tpmd__Request *req, tm_err *err);

static void on_tp_old_index(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
{
    struct keystore_svc *ks = userdata;
    ks->anchor_pending = false;
    Trustme__Tpmd__Request *req = trustme__tpmd__request__unpack(NULL, ks->deferred_len, ks->deferred);
    free(ks->deferred);
    ks->deferred = NULL;
    if (!req)
        return;
    tm_err e2 = {0};
    char index[96];
    snprintf(index, sizeof(index), "sstore-tp/%s", ks->c->uuid);
    int r = !resp || (err && err->code) ? tm_err_set(&e2, err && err->code ? err->code : EIO, "%s",
                                                     err && err->code ? err->msg : "tpmd is not running")
                                        : tp_check(ks->c, req->anchor, tpmd_anchor_value(resp, index), &e2);
    if (r == 0) {
        ks->tp_checked = true;
        r = anchor_forward(ks, req, &e2);
        ks->tp_checked = false;
    }
    if (r < 0) {
        log_warn_ratelimited(&rl_link, "%s: its keystore's anchor request refused: %s", container_label(ks->c), e2.msg);
        anchor_answer(ks, req->id, NULL, e2.code ? e2.code : EIO, e2.msg);
    }
    trustme__tpmd__request__free_unpacked(req, NULL);
}

static int tp_check_then_forward(struct keystore_svc *ks, const Trustme__Tpmd__Request *req, tm_err *err)
{
    size_t len = trustme__tpmd__request__get_packed_size(req);
    if (!(ks->deferred = malloc(len ? len : 1)))
        return tm_err_set(err, ENOMEM, "out of memory");
    ks->deferred_len = len;
    trustme__tpmd__request__pack(req, ks->deferred);
    char index[96];
    snprintf(index, sizeof(index), "sstore-tp/%s", ks->c->uuid);
    const char *names[1] = {index};
    int r = tpmd_anchor_get(ks->c->d, names, 1, on_tp_old_index, ks, err);
    if (r < 0) {
        free(ks->deferred);
        ks->deferred = NULL;
        return r;
    }
    ks->anchor_pending = true;
    return 0;
}

static int anchor_forward(struct keystore_svc *ks, const Trustme__Tpmd__Request *req, tm_err *err)
{
    struct container *c = ks->c;
    if (req->version == 1 && req->body_case == TRUSTME__TPMD__REQUEST__BODY_CONTAINER_CERT)
        return container_cert_forward(ks, req, err);
    if (req->version != 1 || req->body_case != TRUSTME__TPMD__REQUEST__BODY_ANCHOR)
        return tm_err_set(err, EPERM, "the keystore may only ask for its secure store's anchors");
    const Trustme__Tpmd__AnchorRequest *ar = req->anchor;
    if (ar->n_set > 64 || ar->n_get > 64 || ar->n_set + ar->n_get == 0)
        return tm_err_set(err, EINVAL, "between 1 and 64 anchor names");
    if (ks->anchor_pending)
        return tm_err_set(err, EBUSY, "one anchor request at a time");
    struct tpmd_anchor_entry set[64];
    for (size_t i = 0; i < ar->n_set; i++) {
        const Trustme__Tpmd__AnchorEntry *e = ar->set[i];
        if (!e->name || !anchor_name_ours(c, e->name))
            return tm_err_set(err, EPERM, "anchor %s is not this container's secure store's",
                              e->name ? e->name : "(none)");
        set[i] = (struct tpmd_anchor_entry){.name = e->name,
                                            .value = e->value.data,
                                            .len = e->has_value ? e->value.len : 0,
                                            .remove = e->has_remove && e->remove};
    }
    for (size_t i = 0; i < ar->n_get; i++)
        if (!anchor_name_ours(c, ar->get[i]))
            return tm_err_set(err, EPERM, "anchor %s is not this container's secure store's", ar->get[i]);
    uint64_t wait_s = 0;
    if (ar->n_set && !ks->tp_checked && !commit_budget_take(c->uuid, now_ms(), &wait_s)) {
        if (!ks->budget_audit_ms || now_ms() - ks->budget_audit_ms >= 60000) {
            ks->budget_audit_ms = now_ms();
            daemon_audit(c->d, "keystore.commit_budget", "fail", c, "trustmed",
                         "TPM write budget spent: %d anchored commits, then one every %d s", COMMIT_BUDGET_BURST,
                         COMMIT_BUDGET_REFILL_S);
        }
        return tm_err_set(err, EAGAIN,
                          "the container's TPM write budget is spent (%d anchored commits, then one every %d s, to "
                          "spare the TPM's NV memory): the next one in %llu s",
                          COMMIT_BUDGET_BURST, COMMIT_BUDGET_REFILL_S, (unsigned long long)wait_s);
    }
    if (!ks->tp_checked && touches_tp(c, ar))
        return tp_check_then_forward(ks, req, err);
    int r = ar->n_set ? tpmd_anchor_update(c->d, set, ar->n_set, (const char *const *)ar->get, ar->n_get,
                                           on_anchor_reply, ks, err)
                      : tpmd_anchor_get(c->d, (const char *const *)ar->get, ar->n_get, on_anchor_reply, ks, err);
    if (r < 0)
        return r;
    ks->anchor_pending = true;
    ks->anchor_id = req->id;
    return 0;
}

/* A refusal of the container's secure store, reported by its service: audited, at most once a
 * minute for the same reason (the container can make its refused store report at every
 * request; the audit log must not be its to fill). */
static void link_event(struct keystore_svc *ks, struct tm_packet *pkt)
{
    const uint8_t *payload = pkt->data + 4;
    Trustme__Keystore__KsLinkEvent *ev =
        pkt->len >= 4 ? trustme__keystore__ks_link_event__unpack(NULL, pkt->len - 4, payload) : NULL;
    if (ev && ev->store_refused && ev->store_refused->message) {
        const char *msg = ev->store_refused->message;
        uint64_t now = now_ms();
        if (strcmp(msg, ks->last_refusal) != 0 || now - ks->last_refusal_ms >= 60000) {
            bool keys = ev->store_refused->has_key_blobs && ev->store_refused->key_blobs;
            daemon_audit(ks->c->d, keys ? "keystore.blob_refused" : "sstore.refused", "fail", ks->c, "trustme-keystore",
                         "%s", msg);
            snprintf(ks->last_refusal, sizeof(ks->last_refusal), "%s", msg);
            ks->last_refusal_ms = now;
        }
    }
    if (ev)
        trustme__keystore__ks_link_event__free_unpacked(ev, NULL);
}

static void on_link_request(tm_source *src, uint32_t events, void *userdata)
{
    struct keystore_svc *ks = userdata;
    struct tm_packet pkt;
    int r = tm_packet_recv(ks->link_fd, 16 * 1024, &pkt);
    if (r == -EAGAIN || r == -EMSGSIZE || r == -EBADMSG)
        return; /* a bad packet is dropped: the service's call times out */
    if (r <= 0) {
        /* The service is gone (its exit is handled by on_exit_event): stop watching. */
        tm_source_free(ks->link_src);
        ks->link_src = NULL;
        return;
    }
    const Trustme__Tpmd__Request *req =
        (const Trustme__Tpmd__Request *)tm_packet_unpack(&trustme__tpmd__request__descriptor, &pkt);
    tm_err err = {0};
    if (req && !req->has_version) {
        link_event(ks, &pkt);
        tm_packet_free(&pkt);
        return;
    }
    if (!req) {
        log_warn_ratelimited(&rl_link, "%s: its keystore sent a malformed request", container_label(ks->c));
    } else if (anchor_forward(ks, req, &err) < 0) {
        log_warn_ratelimited(&rl_link, "%s: its keystore's anchor request refused: %s", container_label(ks->c),
                             err.msg);
        anchor_answer(ks, req->id, NULL, err.code ? err.code : EIO, err.msg);
    }
    tm_packet_free(&pkt);
}

static int spawn(struct keystore_svc *ks, tm_err *err)
{
    struct container *c = ks->c;
    struct scd_sandbox sb = {0};
    ks->cert_issued = false; /* a new process makes a new attestation key */
    int r = prepare_dirs(c, &sb, err);
    if (r < 0)
        return r;
    char vtpm_dir[PATH_MAX], vtpm_sock[PATH_MAX + 16];
    vtpm_socket(c, &sb, vtpm_dir, sizeof(vtpm_dir), vtpm_sock, sizeof(vtpm_sock));
    _cleanup_close_ int exe = open(sb.binary, O_RDONLY | O_CLOEXEC);
    if (exe < 0)
        return tm_err_sys(err, "cannot open %s", sb.binary);
    _cleanup_close_pair_ int sp[2] = {-1, -1};
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
        char *argv[] = {"trustme-keystore",
                        "--state-dir",
                        "/state",
                        "--log-level",
                        (char *)sb.log_level,
                        vtpm_sock[0] ? "--vtpm" : NULL,
                        vtpm_sock,
                        NULL};
        (void)self;
        sandbox_exec(&sb, fds, 2, exe, argv, 0 /* getppid() is 0 in a new pid namespace */);
    }
    close_and_reset(sp[1]);
    if (pid < 0)
        return tm_err_sys(err, "cannot fork the keystore service");
    ks->link_fd = steal_fd(sp[0]);
    ks->pidfd = pidfd;
    ks->pid_src = tm_loop_io(c->d->loop, pidfd, EPOLLIN, on_exit_event, ks);
    Trustme__Keystore__KsInit init = TRUSTME__KEYSTORE__KS_INIT__INIT;
    init.has_keystore_key = true;
    init.keystore_key = (ProtobufCBinaryData){ks->key->len, ks->key->data};
    init.uuid = c->uuid;
    init.name = c->cfg->name;
    init.has_storage_seed = true;
    init.storage_seed = (ProtobufCBinaryData){ks->storage_seed->len, ks->storage_seed->data};
    if (!ks->pid_src || (r = tm_packet_send_msg(ks->link_fd, &init.base, 4096, err)) < 0 ||
        fcntl(ks->link_fd, F_SETFL, O_NONBLOCK) < 0 ||
        !(ks->link_src = tm_loop_io(c->d->loop, ks->link_fd, EPOLLIN, on_link_request, ks))) {
        kill_service(ks);
        return tm_err_set(err, EIO, "cannot hand the keystore key to the service");
    }
    log_info("%s: keystore service pid %d at /run/trustme/keystore.sock inside", container_label(c), pid);
    return 0;
}

static int set_identity(struct keystore_svc *ks, const struct keystore_guestos *gos, tm_err *err)
{
    struct container *c = ks->c;
    uint8_t cfg_sha[32];
    tm_sha256(c->config_json, c->config_len, cfg_sha);
    Trustme__Keystore__KsContainerIdentity id = TRUSTME__KEYSTORE__KS_CONTAINER_IDENTITY__INIT;
    id.name = c->cfg->name;
    id.uuid = c->uuid;
    id.guestos_name = gos ? (char *)gos->name : "";
    id.has_guestos_version = gos != NULL;
    id.guestos_version = gos ? gos->version : 0;
    id.has_guestos_sha256 = gos != NULL;
    id.guestos_sha256 = (ProtobufCBinaryData){gos ? 32 : 0, gos ? (uint8_t *)gos->sha256 : NULL};
    id.has_config_sha256 = true;
    id.config_sha256 = (ProtobufCBinaryData){32, cfg_sha};
    free(ks->identity);
    ks->identity_len = trustme__keystore__ks_container_identity__get_packed_size(&id);
    if (!(ks->identity = malloc(ks->identity_len ? ks->identity_len : 1)))
        return tm_err_set(err, ENOMEM, "out of memory");
    trustme__keystore__ks_container_identity__pack(&id, ks->identity);
    return 0;
}

int keystore_svc_serve(struct container *c, int listen_fd, bool with_token, const struct keystore_guestos *gos,
                       tm_err *err)
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
    if (set_identity(ks, gos, err) < 0)
        return -ENOMEM;
    secret_free(ks->key);
    ks->key = NULL;
    int r = secret_new(32, &ks->key, err);
    if (r < 0)
        return r;
    secret_free(ks->storage_seed);
    ks->storage_seed = NULL;
    if ((r = secret_new(32, &ks->storage_seed, err)) < 0)
        return r;
    /* A keystore a migration carried here opens with the source's keys, which it keeps sealed to
     * this device and the token (keystore_migrated.h). */
    uint8_t carried[KEYSTORE_CARRIED_LEN];
    char dir[PATH_MAX];
    container_data_dir(c, dir, sizeof(dir));
    r = ks->token_part ? keystore_migrated_load(c->d, dir, c->uuid, ks->token_part->data, carried, err) : -ENOENT;
    if (r == 0) {
        memcpy(ks->key->data, carried, 32);
        memcpy(ks->storage_seed->data, carried + 32, 32);
        explicit_bzero(carried, sizeof(carried));
    } else if (r != -ENOENT) {
        return r;
    } else {
        keystore_derive(root, ks->token_part ? ks->token_part->data : NULL, c->uuid, ks->key->data,
                        ks->storage_seed->data);
    }
    secret_free(ks->token_part); /* the key is derived: its part is no longer needed */
    ks->token_part = NULL;
    return spawn(ks, err);
}

void keystore_derive(const struct secret *root, const uint8_t *token_part, const char *uuid, uint8_t key[32],
                     uint8_t seed[32])
{
    char info[128];
    int n = snprintf(info, sizeof(info), "trustme keystore v1|%s", uuid);
    tm_hkdf_sha256(root->data, root->len, token_part, token_part ? 32 : 0, info, (size_t)n, key, 32);
    /* Not bound to the token: tamper-proof objects outlive a wipe, which replaces the data key. */
    n = snprintf(info, sizeof(info), "trustme sstore seed v1|%s", uuid);
    tm_hkdf_sha256(root->data, root->len, NULL, 0, info, (size_t)n, seed, 32);
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
    secret_free(ks->storage_seed);
    secret_free(ks->token_part);
    free(ks->identity);
    free(ks->deferred);
    free(ks);
    c->keystore = NULL;
}

/* A removed container's secure-store anchors leave tpmd's table (4096 entries for the device):
 * "sstore/<uuid>", the key blobs' index "sstore/<uuid>.keys", the tamper-proof index
 * "sstore-tp/<uuid>" (its ids, each NUL-terminated) and
 * every value it names. */
struct anchor_removal {
    char uuid[64];
};

static void on_anchors_removed(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *ud)
{
    struct anchor_removal *ar = ud;
    if (err && err->code)
        log_warn("container %s: its secure store's anchors stay in tpmd's table: %s", ar->uuid, err->msg);
    free(ar);
}

static void on_tp_index(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *ud)
{
    struct anchor_removal *ar = ud;
    char names[3 + 16][160];
    struct tpmd_anchor_entry set[3 + 16];
    size_t n = 0;
    snprintf(names[n], sizeof(names[0]), "sstore-tp/%s", ar->uuid);
    set[n] = (struct tpmd_anchor_entry){.name = names[n], .remove = true}, n++;
    snprintf(names[n], sizeof(names[0]), "sstore/%s", ar->uuid);
    set[n] = (struct tpmd_anchor_entry){.name = names[n], .remove = true}, n++;
    snprintf(names[n], sizeof(names[0]), "sstore/%s" KEY_INDEX_SUFFIX, ar->uuid);
    set[n] = (struct tpmd_anchor_entry){.name = names[n], .remove = true}, n++;
    const ProtobufCBinaryData *v = resp && !(err && err->code) ? tpmd_anchor_value(resp, names[0]) : NULL;
    for (size_t k = 0; v && k < v->len && n < 3 + 16;) {
        const uint8_t *end = memchr(v->data + k, '\0', v->len - k);
        if (!end)
            break;
        snprintf(names[n], sizeof(names[0]), "sstore-tp/%s/%.*s", ar->uuid, (int)(end - (v->data + k)),
                 (const char *)v->data + k);
        set[n] = (struct tpmd_anchor_entry){.name = names[n], .remove = true}, n++;
        k = (size_t)(end - v->data) + 1;
    }
    tm_err e2 = {0};
    if (tpmd_anchor_update(d, set, n, NULL, 0, on_anchors_removed, ar, &e2) < 0) {
        log_warn("container %s: its secure store's anchors stay in tpmd's table: %s", ar->uuid, e2.msg);
        free(ar);
    }
}

void keystore_svc_wiped(struct container *c)
{
    if (!c->cfg->keystore)
        return;
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/keystore/%s", c->d->data_dir, c->uuid);
    int r = rm_rf(dir);
    if (r < 0 && r != -ENOENT)
        log_warn("%s: cannot wipe its keystore %s: %s", container_label(c), dir, strerror(-r));
    /* Carried keys (and a carried keystore not yet moved in) go too: the new data key's keystore
     * is this device's own. */
    char cdir[PATH_MAX], carried[PATH_MAX + 16];
    container_data_dir(c, cdir, sizeof(cdir));
    keystore_migrated_remove(cdir);
    snprintf(carried, sizeof(carried), "%s/" KEYSTORE_MIGRATED_DIR, cdir);
    (void)rm_rf(carried);
    /* The store and the key index start afresh only without their anchors; the tamper-proof
     * objects stay. */
    struct anchor_removal *ar = calloc(1, sizeof(*ar));
    if (!ar)
        return;
    snprintf(ar->uuid, sizeof(ar->uuid), "%s", c->uuid);
    char name[160], index[160];
    snprintf(name, sizeof(name), "sstore/%s", c->uuid);
    snprintf(index, sizeof(index), "sstore/%s" KEY_INDEX_SUFFIX, c->uuid);
    struct tpmd_anchor_entry e[2] = {{.name = name, .remove = true}, {.name = index, .remove = true}};
    tm_err err = {0};
    if (tpmd_anchor_update(c->d, e, 2, NULL, 0, on_anchors_removed, ar, &err) < 0) {
        log_warn("%s: its secure store's anchor stays in tpmd's table: %s", container_label(c), err.msg);
        free(ar);
    }
}

/* A removed container's keys and secure store go with it (they could open nowhere else anyway:
 * the keys need its UUID); a half-made container's service is stopped with it. */
static void keystore_removed(struct container *c)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/keystore/%s", c->d->data_dir, c->uuid);
    bool had_store = c->cfg && c->cfg->keystore;
    commit_budget_forget(c->uuid);
    int r = rm_rf(dir);
    if (r < 0 && r != -ENOENT)
        log_warn("%s: cannot remove its keystore %s: %s", container_label(c), dir, strerror(-r));
    struct anchor_removal *ar = had_store ? calloc(1, sizeof(*ar)) : NULL;
    if (!ar)
        return;
    snprintf(ar->uuid, sizeof(ar->uuid), "%s", c->uuid);
    char index[160];
    snprintf(index, sizeof(index), "sstore-tp/%s", c->uuid);
    const char *names[1] = {index};
    tm_err err = {0};
    if (tpmd_anchor_get(c->d, names, 1, on_tp_index, ar, &err) < 0) {
        log_warn("%s: its secure store's anchors stay in tpmd's table: %s", container_label(c), err.msg);
        free(ar);
    }
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
