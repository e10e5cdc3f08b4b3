/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Verbs about what containers run and who signed it: guestos install/list/remove, ca register,
 * update, and the detached signature a config may carry (create and update). */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "cli.h"
#include "json_cleanup.h"
#include "jsonutil.h"
#include "fileio.h"

#define CONFIG_MAX (1024 * 1024)
#define SIG_MAX (16 * 1024)
#define CHAIN_MAX (256 * 1024)

void signed_config_free(struct signed_config *sc)
{
    free(sc->json);
    free(sc->sig);
    free(sc->chain);
}

/* CONFIG and, if it was signed, CONFIG.sig and CONFIG.chain.pem beside it. */
int signed_config_read(const char *path, struct signed_config *sc)
{
    tm_err err;
    char sig[PATH_MAX], chain[PATH_MAX];
    *sc = (struct signed_config){0};
    if (read_file(path, CONFIG_MAX, &sc->json, &sc->json_len, &err) < 0)
        return cli_fail("%s", err.msg);
    snprintf(sig, sizeof(sig), "%s.sig", path);
    snprintf(chain, sizeof(chain), "%s.chain.pem", path);
    bool has_sig = access(sig, F_OK) == 0, has_chain = access(chain, F_OK) == 0;
    if (has_sig != has_chain)
        return cli_fail("%s exists, but %s does not: a signed config needs both", has_sig ? sig : chain,
                        has_sig ? chain : sig);
    if (has_sig && (read_file(sig, SIG_MAX, &sc->sig, &sc->sig_len, &err) < 0 ||
                    read_file(chain, CHAIN_MAX, &sc->chain, &sc->chain_len, &err) < 0))
        return cli_fail("%s", err.msg);
    return 0;
}

static void set_bytes(protobuf_c_boolean *has, ProtobufCBinaryData *b, char *data, size_t len)
{
    *has = data != NULL;
    b->data = (uint8_t *)data;
    b->len = len;
}

void signed_config_to_create(struct signed_config *sc, Trustme__CreateRequest *cr)
{
    set_bytes(&cr->has_config_json, &cr->config_json, sc->json, sc->json_len);
    set_bytes(&cr->has_signature, &cr->signature, sc->sig, sc->sig_len);
    set_bytes(&cr->has_chain_pem, &cr->chain_pem, sc->chain, sc->chain_len);
}

int cmd_update(struct cli *cli, const struct cli_args *a)
{
    char *const *pos = a->argv;
    struct signed_config sc;
    int r = signed_config_read(pos[1], &sc);
    if (r) {
        signed_config_free(&sc);
        return r;
    }
    Trustme__UpdateRequest ur = TRUSTME__UPDATE_REQUEST__INIT;
    ur.id = pos[0];
    set_bytes(&ur.has_config_json, &ur.config_json, sc.json, sc.json_len);
    set_bytes(&ur.has_signature, &ur.signature, sc.sig, sc.sig_len);
    set_bytes(&ur.has_chain_pem, &ur.chain_pem, sc.chain, sc.chain_len);
    Trustme__Request req = TRUSTME__REQUEST__INIT;
    req.body_case = TRUSTME__REQUEST__BODY_UPDATE;
    req.update = &ur;
    Trustme__Response *resp;
    r = cli_call(cli, &req, &resp);
    signed_config_free(&sc);
    if (r)
        return r;
    printf("updated %s (config %s); it takes effect at the next start\n", resp->container->name,
           resp->container->config_trust ? resp->container->config_trust : "unsigned");
    trustme__response__free_unpacked(resp, NULL);
    return 0;
}

/* ---- guestos ---------------------------------------------------------------------------------- */

static json_t *guestos_json(const Trustme__GuestosInfo *g)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", tm_json_text(g->name ? g->name : ""));
    json_object_set_new(o, "version", json_integer((int64_t)g->version));
    json_object_set_new(o, "trust", tm_json_text(g->trust ? g->trust : ""));
    json_object_set_new(o, "signer", tm_json_text(g->signer ? g->signer : ""));
    json_object_set_new(o, "size", json_integer((int64_t)g->size));
    json_object_set_new(o, "architecture", tm_json_text(g->architecture ? g->architecture : ""));
    json_object_set_new(o, "installed_at", json_integer((int64_t)g->installed_at));
    json_t *users = json_array();
    for (size_t i = 0; i < g->n_used_by; i++) {
        _cleanup_free_ char *copy = strdup(g->used_by[i]);
        for (char *save = NULL, *t = copy ? strtok_r(copy, ",", &save) : NULL; t; t = strtok_r(NULL, ",", &save))
            json_array_append_new(users, tm_json_text(t));
    }
    json_object_set_new(o, "used_by", users);
    return o;
}

static void size_word(uint64_t bytes, char *out, size_t size)
{
    if (bytes >= 10ull << 20)
        snprintf(out, size, "%llu MiB", (unsigned long long)(bytes >> 20));
    else
        snprintf(out, size, "%llu KiB", (unsigned long long)((bytes + 1023) >> 10));
}

int cmd_guestos_install(struct cli *cli, const struct cli_args *a)
{
    char *const *pos = a->argv;
    char dir[PATH_MAX];
    if (!realpath(pos[0], dir))
        return cli_fail("%s: %s", pos[0], strerror(errno));
    Trustme__GuestosInstallRequest ir = TRUSTME__GUESTOS_INSTALL_REQUEST__INIT;
    ir.path = dir;
    Trustme__Request req = TRUSTME__REQUEST__INIT;
    req.body_case = TRUSTME__REQUEST__BODY_GUESTOS_INSTALL;
    req.guestos_install = &ir;
    Trustme__Response *resp;
    int r = cli_call(cli, &req, &resp);
    if (r)
        return r;
    const Trustme__GuestosInfo *g = resp->guestos;
    if (cli->json) {
        json_t *o = guestos_json(g);
        json_dumpf(o, stdout, JSON_PRETTY_FLAGS);
        putchar('\n');
        json_decref(o);
    } else {
        char size[32];
        size_word(g->size, size, sizeof(size));
        printf("installed %s-%llu (%s%s%s, %s)\n", g->name, (unsigned long long)g->version, g->trust,
               g->signer && g->signer[0] ? " by " : "", g->signer ? g->signer : "", size);
    }
    trustme__response__free_unpacked(resp, NULL);
    return 0;
}

int cmd_guestos_list(struct cli *cli, const struct cli_args *a)
{
    Trustme__GuestosListRequest lr = TRUSTME__GUESTOS_LIST_REQUEST__INIT;
    Trustme__Request req = TRUSTME__REQUEST__INIT;
    req.body_case = TRUSTME__REQUEST__BODY_GUESTOS_LIST;
    req.guestos_list = &lr;
    Trustme__Response *resp;
    int r = cli_call(cli, &req, &resp);
    if (r)
        return r;
    const Trustme__GuestosList *l = resp->guestos_list;
    if (cli->json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < l->n_guestos; i++)
            json_array_append_new(arr, guestos_json(l->guestos[i]));
        json_dumpf(arr, stdout, JSON_PRETTY_FLAGS);
        putchar('\n');
        json_decref(arr);
    } else if (l->n_guestos == 0) {
        printf("no GuestOS installed (trustme guestos install DIR)\n");
    } else {
        printf("%-20s %-8s %-15s %-9s %s\n", "NAME", "VERSION", "TRUST", "SIZE", "USED BY");
        for (size_t i = 0; i < l->n_guestos; i++) {
            const Trustme__GuestosInfo *g = l->guestos[i];
            char size[32];
            size_word(g->size, size, sizeof(size));
            printf("%-20s %-8llu %-15s %-9s %s\n", g->name, (unsigned long long)g->version, g->trust, size,
                   g->n_used_by ? g->used_by[0] : "-");
        }
    }
    trustme__response__free_unpacked(resp, NULL);
    return 0;
}

int cmd_guestos_remove(struct cli *cli, const struct cli_args *a)
{
    const char *name = a->argv[0], *v = cli_value(a, "version");
    uint64_t version = 0;
    if (v) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(v, &end, 10);
        if (errno || *end || end == v || v[0] == '-' || n == 0)
            return cli_usage_error(a->verb, "--version needs a positive number, not %s", v);
        version = n;
    }
    Trustme__GuestosRemoveRequest rr = TRUSTME__GUESTOS_REMOVE_REQUEST__INIT;
    rr.name = (char *)name;
    rr.has_version = version != 0;
    rr.version = version;
    Trustme__Request req = TRUSTME__REQUEST__INIT;
    req.body_case = TRUSTME__REQUEST__BODY_GUESTOS_REMOVE;
    req.guestos_remove = &rr;
    Trustme__Response *resp;
    int r = cli_call(cli, &req, &resp);
    if (r)
        return r;
    printf("removed %s\n", name);
    trustme__response__free_unpacked(resp, NULL);
    return 0;
}

/* ---- ca --------------------------------------------------------------------------------------- */

int cmd_ca_unregister(struct cli *cli, const struct cli_args *a)
{
    char *const *pos = a->argv;
    Trustme__CaUnregisterRequest cu = TRUSTME__CA_UNREGISTER_REQUEST__INIT;
    cu.sha256 = pos[0];
    Trustme__Request req = TRUSTME__REQUEST__INIT;
    req.body_case = TRUSTME__REQUEST__BODY_CA_UNREGISTER;
    req.ca_unregister = &cu;
    Trustme__Response *resp;
    int r = cli_call(cli, &req, &resp);
    if (r)
        return r;
    printf("unregistered %s: GuestOSes signed under it no longer start\n", pos[0]);
    trustme__response__free_unpacked(resp, NULL);
    return 0;
}

int cmd_ca_register(struct cli *cli, const struct cli_args *a)
{
    char *const *pos = a->argv;
    _cleanup_free_ char *pem = NULL;
    size_t len;
    tm_err err;
    if (read_file(pos[0], CHAIN_MAX, &pem, &len, &err) < 0)
        return cli_fail("%s", err.msg);
    Trustme__CaRegisterRequest cr = TRUSTME__CA_REGISTER_REQUEST__INIT;
    set_bytes(&cr.has_cert_pem, &cr.cert_pem, pem, len);
    Trustme__Request req = TRUSTME__REQUEST__INIT;
    req.body_case = TRUSTME__REQUEST__BODY_CA_REGISTER;
    req.ca_register = &cr;
    Trustme__Response *resp;
    int r = cli_call(cli, &req, &resp);
    if (r)
        return r;
    printf("registered %s (sha256 %s)\n", resp->ca->subject, resp->ca->sha256);
    trustme__response__free_unpacked(resp, NULL);
    return 0;
}
