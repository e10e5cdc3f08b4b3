/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The vTPM's endorsement keys (docs/VTPM.md "Endorsement keys and deep attestation", "EK
 * certificates"): root's MAC'd record of the EKs a manufacture made, their events for the
 * physical runtime PCR, and the certificates tpmd issues for them. */
#include "vtpm_internal.h"
#include "vtpm_owner.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "crypto.h"
#include "fdutil.h"
#include "fileio.h"
#include "hex.h"
#include "log.h"
#include "measurement.h"

/* <data>/containers/<uuid>/vtpm-ek: root's record of the EKs made at manufacture, outside the
 * vTPM uid's state directory. */
void vtpm_ek_record_path(const struct container *c, char *out, size_t size)
{
    char dir[PATH_MAX];
    container_data_dir(c, dir, sizeof(dir));
    snprintf(out, size, "%s/" EK_RECORD, dir);
}

/* <data>/containers/<uuid>/vtpm-ek-cert-<kind>.der: the EK certificate stored in the vTPM's NV. */
static void ek_cert_path(const struct container *c, const char *kind, char *out, size_t size)
{
    char dir[PATH_MAX];
    container_data_dir(c, dir, sizeof(dir));
    snprintf(out, size, "%s/" EK_CERT_RECORD "%s.der", dir, kind);
}

void vtpm_remove_ek_records(const struct container *c)
{
    char path[PATH_MAX + 32];
    vtpm_ek_record_path(c, path, sizeof(path));
    unlink(path);
    ek_cert_path(c, "rsa", path, sizeof(path));
    unlink(path);
    ek_cert_path(c, "ecc", path, sizeof(path));
    unlink(path);
}

/* The record's last line is "mac HEX": HKDF-SHA256 (a PRF) under the vTPM's state key over the UUID
 * and the EK lines. Root on the device can rewrite the file but has not the key (it needs the
 * container's data key): an edited record, or another container's, does not authenticate, and
 * the device never measures EKs that are not this vTPM's. */
static void ek_record_mac(const struct container *c, const struct secret *key, const char *body, size_t len,
                          uint8_t out[32])
{
    char info[96 + READY_MAX];
    int n = snprintf(info, sizeof(info), "trustme vtpm-ek record v1|%s|", c->uuid);
    size_t l = len < sizeof(info) - (size_t)n ? len : sizeof(info) - (size_t)n; /* bodies are < READY_MAX */
    memcpy(info + n, body, l);
    tm_hkdf_sha256(key->data, key->len, NULL, 0, info, (size_t)n + l, out, 32);
}

/* With key: only a record whose MAC is right (-EBADMSG otherwise); without: as it is (for
 * showing it). */
static int read_eks(const struct container *c, const struct secret *key, struct vtpm_ek *ret, size_t *ret_n)
{
    char path[PATH_MAX + 16];
    vtpm_ek_record_path(c, path, sizeof(path));
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    tm_err err = {0};
    *ret_n = 0;
    int r = read_file(path, 4096, &data, &len, &err);
    if (r < 0)
        return r == -ENOENT ? 0 : r;
    char *mac = strstr(data, "\nmac ");
    if (key) {
        uint8_t want[32], got[32];
        unsigned diff = 0;
        /* "\nmac " (5), 64 hex digits, "\n": the file's end */
        if (!mac || strlen(mac) != 5 + 64 + 1 || mac[5 + 64] != '\n' ||
            tm_hex_decode(mac + 5, 64, got, sizeof(got), 0, &err) < 0)
            return -EBADMSG;
        ek_record_mac(c, key, data, (size_t)(mac - data) + 1, want);
        for (size_t i = 0; i < sizeof(want); i++)
            diff |= want[i] ^ got[i];
        if (diff)
            return -EBADMSG;
    }
    if (mac)
        mac[1] = '\0';
    char *save = NULL;
    for (char *line = strtok_r(data, "\n", &save); line && *ret_n < VTPM_EKS; line = strtok_r(NULL, "\n", &save)) {
        struct vtpm_ek *ek = &ret[*ret_n];
        char kind[8], hex[2 * EK_PUBLIC_MAX + 1];
        if (sscanf(line, "%7s %800s", kind, hex) != 2 || (strcmp(kind, "rsa") != 0 && strcmp(kind, "ecc") != 0))
            return -EBADMSG;
        size_t n = strlen(hex) / 2;
        if (n == 0 || n > EK_PUBLIC_MAX || tm_hex_decode_str(hex, ek->public, n, 0, &err) < 0)
            return -EBADMSG;
        snprintf(ek->kind, sizeof(ek->kind), "%s", kind);
        ek->public_len = n;
        char cpath[PATH_MAX + 32];
        _cleanup_free_ char *cert = NULL;
        size_t cert_len = 0;
        ek_cert_path(c, kind, cpath, sizeof(cpath));
        ek->cert_len = 0;
        if (read_file(cpath, VTPM_EK_CERT_MAX, &cert, &cert_len, &err) == 0 && cert_len > 0) {
            memcpy(ek->cert, cert, cert_len);
            ek->cert_len = cert_len;
        }
        /* Its TPM name: nameAlg SHA-256 || SHA-256(TPMT_PUBLIC). */
        ek->name[0] = 0x00;
        ek->name[1] = 0x0b;
        tm_sha256(ek->public, n, ek->name + 2);
        (*ret_n)++;
    }
    return 0;
}

int vtpm_eks(const struct container *c, struct vtpm_ek *ret, size_t *ret_n)
{
    return read_eks(c, NULL, ret, ret_n);
}

static void on_ek_measured(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
{
    struct vtpm *v = userdata;
    v->eks_measuring = false;
    if (err) {
        tm_err e = {0};
        tm_err_set(&e, err->code, "the vTPM's endorsement keys cannot be measured: %s", err->msg);
        vtpm_finish_start(v, &e);
        return;
    }
    if (v->ready_seen) {
        log_info("%s: vTPM ready (pid %d)", container_label(v->c), v->pid);
        vtpm_finish_start(v, NULL);
    }
}

/* A manufacture's "EK rsa|ecc HEX" lines: root's record of the EKs, kept until a reset. */
int vtpm_record_eks(struct vtpm *v, const char *msg, size_t len, tm_err *err)
{
    char out[READY_MAX];
    size_t used = 0;
    const char *p = msg, *end = msg + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            break;
        size_t n = (size_t)(nl - p);
        if (n < 8 || memcmp(p, "EK ", 3) != 0 || used + n + 1 > sizeof(out))
            return tm_err_set(err, EBADMSG, "trustme-vtpm reported a malformed endorsement key");
        memcpy(out + used, p + 3, n - 3);
        used += n - 3;
        out[used++] = '\n';
        p = nl + 1;
    }
    uint8_t mac[32];
    if (!v->key || used + 4 + 64 + 1 > sizeof(out))
        return tm_err_set(err, EBADMSG, "trustme-vtpm reported a malformed endorsement key");
    ek_record_mac(v->c, v->key, out, used, mac);
    memcpy(out + used, "mac ", 4);
    tm_hex(mac, sizeof(mac), out + used + 4);
    used += 4 + 64;
    out[used++] = '\n';
    char path[PATH_MAX + 16];
    vtpm_ek_record_path(v->c, path, sizeof(path));
    int r = write_file_replace(path, out, used, 0600, err);
    if (r < 0)
        return r;
    struct vtpm_ek eks[VTPM_EKS];
    size_t n = 0;
    if (read_eks(v->c, v->key, eks, &n) < 0 || n != VTPM_EKS) {
        unlink(path);
        return tm_err_set(err, EBADMSG, "trustme-vtpm reported malformed endorsement keys");
    }
    return 0;
}

/* The vtpm-owner event of c's recorded owner statement, if there is one. */
bool vtpm_owner_event(const struct container *c, struct tm_event_item *item, char name[TM_EVENT_NAME_MAX + 1])
{
    uint8_t digest[32];
    int r = vtpm_owner_digest(c, digest);
    if (r < 0)
        log_error("%s: its vTPM owner record cannot be read (%s): not measured", container_label(c), strerror(-r));
    if (r <= 0)
        return false;
    snprintf(name, TM_EVENT_NAME_MAX + 1, "%s/owner", c->uuid);
    *item = (struct tm_event_item){c->d->device.runtime_pcr, TM_EVENT_VTPM_OWNER, name, {0}};
    memcpy(item->sha256, digest, 32);
    return true;
}

size_t vtpm_ek_events(const struct container *c, struct tm_event_item *items, char (*names)[TM_EVENT_NAME_MAX + 1],
                      size_t max)
{
    struct vtpm_ek eks[VTPM_EKS];
    size_t n = 0;
    if (!c->cfg->vtpm || !c->vtpm || !c->vtpm->key)
        return 0;
    int r = read_eks(c, c->vtpm->key, eks, &n);
    if (r < 0) {
        log_error("%s: the record of its vTPM's endorsement keys %s: they are not measured", container_label(c),
                  r == -EBADMSG ? "does not authenticate (edited, or another container's)" : "cannot be read");
        return 0;
    }
    size_t k = 0;
    for (; k < n && k < max; k++) {
        snprintf(names[k], TM_EVENT_NAME_MAX + 1, "%s/ek-%s", c->uuid, eks[k].kind);
        items[k] = (struct tm_event_item){c->d->device.runtime_pcr, TM_EVENT_VTPM_EK, names[k], {0}};
        memcpy(items[k].sha256, eks[k].name + 2, 32);
    }
    /* Who owns it: the quote, not only `trustme vtpm info`, tells a verifier. */
    if (k < max && vtpm_owner_event(c, &items[k], names[k]))
        k++;
    return k;
}

/* Deep attestation: the vTPM's EKs go into the physical runtime PCR before the guest runs, so the
 * device's quote names the vTPMs it hosts (tpmd skips events already in its log). */
int vtpm_measure_eks(struct vtpm *v, tm_err *err)
{
    char path[PATH_MAX + 16];
    vtpm_ek_record_path(v->c, path, sizeof(path));
    if (access(path, F_OK) < 0)
        return 0;
    char names[VTPM_EKS + 1][TM_EVENT_NAME_MAX + 1];
    struct tm_event_item items[VTPM_EKS + 1];
    size_t n = vtpm_ek_events(v->c, items, names, VTPM_EKS + 1);
    if (n == 0)
        return tm_err_set(err, EBADMSG,
                          "the record of the vTPM's endorsement keys is unreadable or not this vTPM's (edited, or "
                          "another container's?); `trustme vtpm reset` makes a new vTPM");
    int r = tpmd_measure(v->c->d, items, n, on_ek_measured, v, err);
    if (r < 0)
        return r;
    v->eks_measuring = true;
    return 1;
}

void vtpm_certs_clear(struct vtpm *v)
{
    for (size_t i = 0; i < v->ncert; i++)
        free(v->cert[i].der);
    memset(v->cert, 0, sizeof(v->cert));
    v->ncert = 0;
}

/* Every certificate tpmd issued goes to trustme-vtpm with the events; EOF lets it go on. */
static void send_certs(struct vtpm *v)
{
    for (size_t i = 0; i < v->ncert && v->ev_fd >= 0; i++) {
        if (!v->cert[i].der)
            continue;
        size_t n = 5 + 4 + 2 * v->cert[i].len + 1;
        _cleanup_free_ char *line = malloc(n + 1);
        if (!line)
            break;
        snprintf(line, n + 1, "CERT %s ", v->cert[i].kind);
        tm_hex(v->cert[i].der, v->cert[i].len, line + 9);
        line[n - 1] = '\n';
        if (write_all(v->ev_fd, line, n) < 0) {
            log_warn("%s: cannot pass the EK certificates to the vTPM: %s", container_label(v->c), strerror(errno));
            break;
        }
    }
    close_and_reset(v->ev_fd);
}

static void on_ek_cert(struct daemon *d, const Trustme__Tpmd__Response *resp, const tm_err *err, void *userdata)
{
    struct vtpm *v = userdata;
    size_t i = v->ncert - v->certs_pending;
    v->certs_pending--;
    if (err) {
        /* No issuer certificate yet is normal before the device is provisioned; the next start
         * asks again. */
        if (err->code == ENOENT)
            log_info("%s: no EK certificate: %s", container_label(v->c), err->msg);
        else
            log_warn("%s: no %s EK certificate: %s", container_label(v->c), v->cert[i].kind, err->msg);
    } else if (resp->vtpm_ek_cert && resp->vtpm_ek_cert->has_cert_der && resp->vtpm_ek_cert->cert_der.len > 0 &&
               resp->vtpm_ek_cert->cert_der.len <= VTPM_EK_CERT_MAX) {
        const ProtobufCBinaryData *der = &resp->vtpm_ek_cert->cert_der;
        if ((v->cert[i].der = malloc(der->len))) {
            memcpy(v->cert[i].der, der->data, der->len);
            v->cert[i].len = der->len;
        }
    }
    if (v->certs_pending == 0)
        send_certs(v);
}

/* Ask tpmd for a certificate of each recorded EK that has none yet (all at manufacture); the
 * answers come in order. Without any to ask for, fd 4 is closed at once. */
void vtpm_request_certs(struct vtpm *v)
{
    struct vtpm_ek eks[VTPM_EKS];
    size_t n = 0;
    vtpm_certs_clear(v);
    v->certs_pending = 0;
    if (vtpm_eks(v->c, eks, &n) < 0)
        n = 0;
    for (size_t i = 0; i < n; i++) {
        if (eks[i].cert_len > 0)
            continue;
        Trustme__Tpmd__VtpmEkCert ec = TRUSTME__TPMD__VTPM_EK_CERT__INIT;
        ec.has_ek_public = true;
        ec.ek_public = (ProtobufCBinaryData){.len = eks[i].public_len, .data = eks[i].public};
        ec.uuid = (char *)v->c->uuid;
        ec.guestos = v->guestos;
        Trustme__Tpmd__Request rq = TRUSTME__TPMD__REQUEST__INIT;
        rq.body_case = TRUSTME__TPMD__REQUEST__BODY_VTPM_EK_CERT;
        rq.vtpm_ek_cert = &ec;
        tm_err err = {0};
        snprintf(v->cert[v->ncert].kind, sizeof(v->cert[v->ncert].kind), "%s", eks[i].kind);
        v->ncert++;
        v->certs_pending++;
        if (tpmd_call(v->c->d, &rq, on_ek_cert, v, &err) < 0) {
            log_warn("%s: no EK certificate: %s", container_label(v->c), err.msg);
            v->ncert--;
            v->certs_pending--;
            break;
        }
    }
    if (v->certs_pending == 0)
        send_certs(v);
}

/* trustme-vtpm's "NV kind" lines: the certificates it stored, recorded for `trustme vtpm info`. */
void vtpm_record_certs(struct vtpm *v, const char *msg, size_t len)
{
    for (size_t i = 0; i < v->ncert; i++) {
        char want[8], path[PATH_MAX + 32];
        snprintf(want, sizeof(want), "NV %s\n", v->cert[i].kind);
        if (!v->cert[i].der || !memmem(msg, len, want, strlen(want)))
            continue;
        tm_err err = {0};
        ek_cert_path(v->c, v->cert[i].kind, path, sizeof(path));
        if (write_file_replace(path, v->cert[i].der, v->cert[i].len, 0600, &err) < 0)
            log_warn("%s: %s", container_label(v->c), err.msg);
        else
            log_info("%s: the vTPM's %s EK certificate is stored", container_label(v->c), v->cert[i].kind);
    }
    vtpm_certs_clear(v);
}
