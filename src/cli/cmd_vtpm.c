/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme vtpm info | reset (docs/VTPM.md). */
#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "cli.h"
#include "fileio.h"
#include "json_cleanup.h"
#include "owner_stmt.h"

/* An EK certificate's subject and issuer (one line each, RFC 2253), and its PEM; false when it
 * does not parse. */
static bool ek_cert_text(const ProtobufCBinaryData *der, char *subject, char *issuer, size_t size, char **ret_pem)
{
    const unsigned char *p = der->data;
    X509 *x = d2i_X509(NULL, &p, (long)der->len);
    if (!x)
        return false;
    BIO *b = BIO_new(BIO_s_mem());
    bool ok = b && X509_NAME_print_ex(b, X509_get_subject_name(x), 0, XN_FLAG_RFC2253) >= 0;
    int n = ok ? BIO_read(b, subject, (int)size - 1) : -1;
    subject[n > 0 ? n : 0] = '\0';
    BIO_reset(b);
    ok = ok && X509_NAME_print_ex(b, X509_get_issuer_name(x), 0, XN_FLAG_RFC2253) >= 0;
    n = ok ? BIO_read(b, issuer, (int)size - 1) : -1;
    issuer[n > 0 ? n : 0] = '\0';
    BIO_reset(b);
    *ret_pem = NULL;
    if (ok && PEM_write_bio_X509(b, x) == 1) {
        char *data;
        long len = BIO_get_mem_data(b, &data);
        if ((*ret_pem = malloc((size_t)len + 1))) {
            memcpy(*ret_pem, data, (size_t)len);
            (*ret_pem)[len] = '\0';
        }
    }
    BIO_free(b);
    X509_free(x);
    return ok;
}

static void vtpm_request(Trustme__Request *req, Trustme__ContainerRef *ref, bool reset, const char *id)
{
    trustme__container_ref__init(ref);
    ref->id = (char *)id;
    trustme__request__init(req);
    if (reset) {
        req->body_case = TRUSTME__REQUEST__BODY_VTPM_RESET;
        req->vtpm_reset = ref;
    } else {
        req->body_case = TRUSTME__REQUEST__BODY_VTPM_INFO;
        req->vtpm_info = ref;
    }
}

int cmd_vtpm_info(struct cli *cli, const struct cli_args *a)
{
    Trustme__ContainerRef ref;
    Trustme__Request req;
    vtpm_request(&req, &ref, false, a->argv[0]);
    Trustme__Response *resp;
    int r = cli_call(cli, &req, &resp);
    if (r)
        return r;
    const Trustme__VtpmInfo *v = resp->vtpm_info;
    if (!v) {
        trustme__response__free_unpacked(resp, NULL);
        fprintf(stderr, "trustme: unexpected answer\n");
        return 1;
    }
    bool match = v->state_sha256 && v->anchored_sha256 && !strcmp(v->state_sha256, v->anchored_sha256);
    if (cli->json) {
        json_t *o = json_pack("{s:b,s:b,s:i,s:b,s:s?,s:s?,s:b,s:I}", "enabled", v->enabled, "running", v->running,
                              "restarts", (int)v->restarts, "state_exists", v->state_exists, "state_sha256",
                              v->state_sha256, "anchored_sha256", v->anchored_sha256, "anchor_matches", match,
                              "anchor_version", (json_int_t)v->anchor_version);
        if (o && v->has_pid)
            json_object_set_new(o, "pid", json_integer(v->pid));
        if (o && v->has_standby_pid)
            json_object_set_new(
                o, "standby", json_pack("{s:I,s:b}", "pid", (json_int_t)v->standby_pid, "waiting", v->standby_waiting));
        json_t *eks = json_array();
        for (size_t i = 0; eks && i < v->n_eks; i++) {
            json_t *e = json_pack("{s:s?,s:s?,s:I}", "kind", v->eks[i]->kind, "name", v->eks[i]->name, "handle",
                                  (json_int_t)v->eks[i]->handle);
            char subject[512], issuer[512], *pem = NULL;
            if (e && v->eks[i]->has_cert_der &&
                ek_cert_text(&v->eks[i]->cert_der, subject, issuer, sizeof(subject), &pem)) {
                json_object_set_new(e, "cert_subject", json_string(subject));
                json_object_set_new(e, "cert_issuer", json_string(issuer));
                if (pem)
                    json_object_set_new(e, "cert_pem", json_string(pem));
            }
            free(pem);
            json_array_append_new(eks, e);
        }
        if (o && eks)
            json_object_set_new(o, "eks", eks);
        if (o && v->owner_kind)
            json_object_set_new(o, "owner",
                                json_pack("{s:s,s:s?}", "kind", v->owner_kind, "key_sha256", v->owner_key_sha256));
        json_dumpf(o, stdout, JSON_PRETTY_FLAGS);
        putchar('\n');
        json_decref(o);
    } else {
        printf("vtpm:      %s\n", v->enabled ? "yes" : "no (its config has no \"vtpm\": true)");
        if (v->running)
            printf("running:   pid %u, %u restarts\n", v->pid, v->restarts);
        else
            printf("running:   no\n");
        if (v->has_standby_pid)
            printf("standby:   pid %u, %s\n", v->standby_pid,
                   v->standby_waiting ? "waiting for the next start's key" : "starting");
        printf("state:     %s\n", v->state_exists ? v->state_sha256 : "none (made at the next start)");
        printf("anchored:  %s%s\n", v->anchored_sha256 ? v->anchored_sha256 : "nothing",
               !v->running && (v->state_sha256 || v->anchored_sha256)
                   ? (match ? " (matches)" : " (DOES NOT MATCH: the next start is refused)")
                   : "");
        if (v->n_eks == 0)
            printf("EKs:       none yet (made at the first start)\n");
        for (size_t i = 0; i < v->n_eks; i++) {
            printf("EK %s:    0x%08x name %s\n", v->eks[i]->kind ? v->eks[i]->kind : "?", v->eks[i]->handle,
                   v->eks[i]->name ? v->eks[i]->name : "?");
            char subject[512], issuer[512], *pem = NULL;
            if (v->eks[i]->has_cert_der && ek_cert_text(&v->eks[i]->cert_der, subject, issuer, sizeof(subject), &pem))
                printf("  cert:    %s\n  issuer:  %s\n  at NV:   0x%08x\n", subject, issuer,
                       strcmp(v->eks[i]->kind ? v->eks[i]->kind : "", "rsa") == 0 ? 0x01c00002u : 0x01c0000au);
            else
                printf("  cert:    none (issued once the device has a vTPM issuer: docs/VTPM.md)\n");
            free(pem);
        }
        if (v->owner_kind)
            printf("owner:     %s, key SHA-256 %s\n", v->owner_kind, v->owner_key_sha256 ? v->owner_key_sha256 : "?");
        else
            printf("owner:     none recorded\n");
    }
    trustme__response__free_unpacked(resp, NULL);
    return 0;
}

/* A statement file of the owner's, for a VtpmOwnerRequest. */
static int statement_request(Trustme__Request *req, Trustme__VtpmOwnerRequest *rq, const char *id, const char *path,
                             char **ret_data)
{
    tm_err err = {0};
    size_t len = 0;
    if (read_file(path, OWNER_STMT_MAX, ret_data, &len, &err) < 0) {
        fprintf(stderr, "trustme: %s\n", err.msg);
        return 1;
    }
    trustme__vtpm_owner_request__init(rq);
    rq->id = (char *)id;
    rq->has_statement = true;
    rq->statement = (ProtobufCBinaryData){len, (uint8_t *)*ret_data};
    trustme__request__init(req);
    return 0;
}

int cmd_vtpm_owner(struct cli *cli, const struct cli_args *a)
{
    Trustme__VtpmOwnerRequest rq;
    Trustme__Request req;
    _cleanup_free_ char *data = NULL;
    if (statement_request(&req, &rq, a->argv[0], a->argv[1], &data))
        return 1;
    req.body_case = TRUSTME__REQUEST__BODY_VTPM_OWNER;
    req.vtpm_owner = &rq;
    Trustme__Response *resp;
    int r = cli_call(cli, &req, &resp);
    if (r)
        return r;
    trustme__response__free_unpacked(resp, NULL);
    printf("recorded for the vTPM of %s\n", a->argv[0]);
    return 0;
}

int cmd_vtpm_reset(struct cli *cli, const struct cli_args *a)
{
    Trustme__ContainerRef ref;
    Trustme__VtpmOwnerRequest rq;
    Trustme__Request req;
    _cleanup_free_ char *data = NULL;
    const char *release = cli_value(a, "release");
    if (release) {
        if (statement_request(&req, &rq, a->argv[0], release, &data))
            return 1;
        req.body_case = TRUSTME__REQUEST__BODY_VTPM_RESET_RELEASED;
        req.vtpm_reset_released = &rq;
    } else {
        vtpm_request(&req, &ref, true, a->argv[0]);
    }
    Trustme__Response *resp;
    int r = cli_call(cli, &req, &resp);
    if (r)
        return r;
    trustme__response__free_unpacked(resp, NULL);
    printf("the vTPM of %s is reset: its keys are gone; the next start makes a new one\n", a->argv[0]);
    return 0;
}
