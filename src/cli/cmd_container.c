/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Verbs about container objects: create, list, state, config, remove. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "cli.h"
#include "json_cleanup.h"
#include "jsonutil.h"
#include "term_safe.h"

static json_t *info_json(const Trustme__ContainerInfo *i)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", tm_json_text(i->name ? i->name : ""));
    json_object_set_new(o, "uuid", tm_json_text(i->uuid ? i->uuid : ""));
    json_object_set_new(o, "state", tm_json_text(state_word(i->state)));
    json_object_set_new(o, "pid", json_integer(i->pid));
    json_object_set_new(o, "rootfs", tm_json_text(i->rootfs ? i->rootfs : ""));
    json_object_set_new(o, "guestos", tm_json_text(i->guestos ? i->guestos : ""));
    json_object_set_new(o, "guestos_version", json_integer((int64_t)i->guestos_version));
    json_object_set_new(o, "trust", tm_json_text(i->trust ? i->trust : ""));
    json_object_set_new(o, "config_trust", tm_json_text(i->config_trust ? i->config_trust : ""));
    if (i->address)
        json_object_set_new(o, "address", tm_json_text(i->address));
    json_object_set_new(o, "user_namespace", json_boolean(i->user_namespace));
    json_object_set_new(o, "privileged", json_boolean(i->privileged));
    json_object_set_new(o, "privileged_caps", tm_json_text(i->privileged_caps ? i->privileged_caps : ""));
    json_object_set_new(o, "uid_base", json_integer(i->uid_base));
    json_object_set_new(o, "memory_limit_mb", json_integer((int64_t)i->memory_limit_mb));
    json_object_set_new(o, "pids_limit", json_integer(i->pids_limit));
    json_object_set_new(o, "cpus", tm_json_text(i->cpus ? i->cpus : ""));
    json_object_set_new(o, "data_size_mb", json_integer((int64_t)i->data_size_mb));
    json_object_set_new(o, "autostart", json_boolean(i->autostart));
    json_object_set_new(o, "keystore", json_boolean(i->keystore));
    json_object_set_new(o, "keystore_running", json_boolean(i->keystore_running));
    json_object_set_new(o, "migrating", json_boolean(i->migrating));
    json_object_set_new(o, "started_at", json_integer((int64_t)i->started_at));
    json_object_set_new(o, "adopted", json_boolean(i->adopted));
    json_object_set_new(o, "last_exit", tm_json_text(i->last_exit ? i->last_exit : ""));
    json_object_set_new(o, "last_error", tm_json_text(i->last_error ? i->last_error : ""));
    const Trustme__Encryption *e = i->encryption;
    if (e) {
        json_t *j = json_object();
        json_object_set_new(j, "backend", tm_json_text(e->backend ? e->backend : "none"));
        json_object_set_new(j, "token", tm_json_text(e->token ? e->token : "none"));
        if (e->has_tpm_emulated)
            json_object_set_new(j, "tpm_emulated", json_boolean(e->tpm_emulated));
        if (e->has_status_known) {
            json_object_set_new(j, "status_known", json_boolean(e->status_known));
            json_object_set_new(j, "key_created", json_boolean(e->key_created));
        }
        if (e->status_known) {
            json_object_set_new(j, "paired", json_boolean(e->paired));
            json_object_set_new(j, "locked", json_boolean(e->locked));
            json_object_set_new(j, "blocked", json_boolean(e->blocked));
            json_object_set_new(j, "pin_tries_left", json_integer(e->pin_tries_left));
            json_object_set_new(j, "puk_tries_left", json_integer(e->puk_tries_left));
        }
        json_object_set_new(o, "encryption", j);
    }
    return o;
}

/* "fscrypt/soft", with the token's condition when it is not simply ready. */
static void encryption_word(const Trustme__ContainerInfo *i, char *out, size_t size)
{
    const Trustme__Encryption *e = i->encryption;
    if (!info_encrypted(i)) {
        snprintf(out, size, "none");
        return;
    }
    const char *cond = !e->status_known ? " ?"
                       : e->blocked     ? " blocked"
                       : e->locked      ? " locked"
                       : !e->paired     ? " no-pin"
                                        : "";
    snprintf(out, size, "%s/%s%s%s", e->backend, e->token, cond, e->tpm_emulated ? " emulated-tpm" : "");
}

/* "busybox-3"; "busybox (not installed)"; "(rootfs)" for a development root file system. */
static void guestos_word(const Trustme__ContainerInfo *i, char *out, size_t size)
{
    if (!i->guestos || !i->guestos[0])
        snprintf(out, size, "(rootfs)");
    else if (!i->guestos_version)
        snprintf(out, size, "%s (not installed)", i->guestos);
    else
        snprintf(out, size, "%s-%llu", i->guestos, (unsigned long long)i->guestos_version);
}

static void print_json(json_t *o)
{
    json_dumpf(o, stdout, JSON_PRETTY_FLAGS);
    putchar('\n');
    json_decref(o);
}

static const char *or_dash(const char *s)
{
    return s && s[0] ? s : "-";
}

static void print_info(const Trustme__ContainerInfo *i)
{
    char started[64] = "-";
    if (i->started_at) {
        time_t t = (time_t)i->started_at;
        strftime(started, sizeof(started), "%Y-%m-%d %H:%M:%S %Z", localtime(&t));
    }
    printf("name:            %s\n", i->name);
    printf("uuid:            %s\n", i->uuid);
    printf("state:           %s%s%s\n", state_word(i->state), i->adopted ? " (re-adopted)" : "",
           i->migrating ? ", migrating (locked: exported to another device)" : "");
    if (i->pid)
        printf("init pid:        %d\n", i->pid);
    char gos[96];
    guestos_word(i, gos, sizeof(gos));
    if (i->guestos && i->guestos[0])
        printf("guestos:         %s, %s\n", gos, or_dash(i->trust));
    else
        printf("rootfs:          %s (development, unsigned)\n", or_dash(i->rootfs));
    printf("config:          %s\n", or_dash(i->config_trust));
    if (i->user_namespace && !i->has_uid_base) /* asked on a restricted socket */
        printf("user namespace:  on\n");
    else if (i->user_namespace)
        printf("user namespace:  host ids %u-%u\n", i->uid_base, i->uid_base + 65535);
    else
        printf("user namespace:  off (container root is host root)\n");
    if (i->privileged)
        printf("privileged:      YES: keeps %s as host root (device.json policy.allow_privileged)\n",
               i->privileged_caps);
    printf("memory limit:    %s", i->memory_limit_mb ? "" : "none\n");
    if (i->memory_limit_mb)
        printf("%llu MiB\n", (unsigned long long)i->memory_limit_mb);
    printf("pids limit:      %s", i->pids_limit ? "" : "none\n");
    if (i->pids_limit)
        printf("%u\n", i->pids_limit);
    printf("cpus:            %s\n", i->cpus && i->cpus[0] ? i->cpus : "all");
    printf("data volume:     %s", i->data_size_mb ? "" : "none (writes are lost at stop)\n");
    if (i->data_size_mb)
        printf("%llu MiB\n", (unsigned long long)i->data_size_mb);
    const Trustme__Encryption *e = i->encryption;
    if (!info_encrypted(i)) {
        printf("encryption:      none (\"token\": \"none\": the data volume is stored in clear)\n");
    } else {
        printf("encryption:      %s, %s token\n", e->backend, e->token);
        if (e->tpm_emulated)
            printf("device binding:  EMULATED (the TPM is an emulator: a copy of its state with the "
                   "data dir is this device; see 'trustme device info')\n");
        if (!e->status_known)
            printf("token:           (the token service has not reported yet)\n");
        else if (e->blocked)
            printf("token:           BLOCKED after too many wrong PUKs: only 'trustme wipe' helps\n");
        else if (e->locked)
            printf("token:           LOCKED after too many wrong PINs: 'trustme token unlock %s' "
                   "(%u PUK tries left)\n",
                   i->name, e->puk_tries_left);
        else if (!e->paired)
            printf("token:           no PIN yet: set one with 'trustme change-pin %s'\n", i->name);
        else
            printf("token:           PIN set, %u tries left%s\n", e->pin_tries_left,
                   e->key_created ? "" : " (the data key is made at the first start)");
    }
    printf("autostart:       %s\n", i->autostart ? "yes" : "no");
    if (i->keystore)
        printf("keystore:        /run/trustme/keystore.sock inside, service %s\n",
               i->keystore_running ? "running" : "not running");
    printf("last started:    %s\n", started);
    printf("last exit:       %s\n", or_dash(i->last_exit));
    printf("last error:      %s\n", or_dash(i->last_error));
}

int cmd_create(struct cli *cli, const struct cli_args *a)
{
    const char *pin_file = cli_value(a, "pin-file"), *path = a->argv[0];
    struct signed_config sc;
    int r = signed_config_read(path, &sc);
    if (r) {
        signed_config_free(&sc);
        return r;
    }
    Trustme__CreateRequest cr = TRUSTME__CREATE_REQUEST__INIT;
    signed_config_to_create(&sc, &cr);
    Trustme__Request req = TRUSTME__REQUEST__INIT;
    req.body_case = TRUSTME__REQUEST__BODY_CREATE;
    req.create = &cr;
    Trustme__Response *resp;
    r = cli_call(cli, &req, &resp);
    signed_config_free(&sc);
    if (r)
        return r;
    const Trustme__ContainerInfo *info = resp->container;
    if (cli->json)
        print_json(info_json(info));
    else
        printf("created %s (%s)%s\n", info->name, info->uuid,
               info->config_trust && strcmp(info->config_trust, "signed") == 0 ? ", config signed" : "");
    /* Pair now if someone can give the PIN; a script without --pin-file pairs later. */
    if (info_encrypted(info) && (pin_file || isatty(STDIN_FILENO))) {
        r = pair_token(cli, info, pin_file);
        if (r) {
            /* Given a PIN to set, create is all or nothing: a refused PIN (policy, a CRLF pin
             * file) leaves no unpaired container behind. */
            Trustme__ContainerRef ref;
            Trustme__Request rm;
            Trustme__Response *rresp = NULL;
            container_request(&rm, &ref, TRUSTME__REQUEST__BODY_REMOVE, info->uuid);
            if (cli_call(cli, &rm, &rresp) == 0) {
                trustme__response__free_unpacked(rresp, NULL);
                fprintf(stderr, "trustme: %s was not created: its PIN was not set\n", info->name);
            } else {
                fprintf(stderr,
                        "trustme: %s was created, but has no PIN yet: set one with "
                        "'trustme change-pin %s'\n",
                        info->name, info->name);
            }
        }
    } else if (info_encrypted(info) && !cli->json) {
        printf("its data will be encrypted: set its PIN with 'trustme change-pin %s' before "
               "starting it\n",
               info->name);
    }
    trustme__response__free_unpacked(resp, NULL);
    return r;
}

int cmd_list(struct cli *cli, const struct cli_args *a)
{
    Trustme__ListRequest lr = TRUSTME__LIST_REQUEST__INIT;
    Trustme__Request req = TRUSTME__REQUEST__INIT;
    req.body_case = TRUSTME__REQUEST__BODY_LIST;
    req.list = &lr;
    Trustme__Response *resp;
    int r = cli_call(cli, &req, &resp);
    if (r)
        return r;
    const Trustme__ContainerList *l = resp->list;
    if (cli->json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < l->n_containers; i++)
            json_array_append_new(arr, info_json(l->containers[i]));
        print_json(arr);
    } else if (l->n_containers == 0) {
        printf("no containers (create one with: trustme create CONFIG.json)\n");
    } else {
        printf("%-20s %-9s %-8s %-36s %-24s %-15s %-22s %s\n", "NAME", "STATE", "PID", "UUID", "GUESTOS", "TRUST",
               "ENCRYPTION", "LAST EXIT");
        for (size_t i = 0; i < l->n_containers; i++) {
            const Trustme__ContainerInfo *c = l->containers[i];
            char pid[16] = "-", enc[64], gos[96];
            if (c->pid)
                snprintf(pid, sizeof(pid), "%d", c->pid);
            encryption_word(c, enc, sizeof(enc));
            guestos_word(c, gos, sizeof(gos));
            printf("%-20s %-9s %-8s %-36s %-24s %-15s %-22s %s\n", c->name,
                   c->migrating ? "migrating" : state_word(c->state), pid, c->uuid, gos, or_dash(c->trust), enc,
                   c->last_error && c->last_error[0] ? "start failed (see trustme state)" : or_dash(c->last_exit));
        }
        /* Not one more column: a line that cannot be missed. */
        int npriv = 0;
        for (size_t i = 0; i < l->n_containers; i++)
            if (l->containers[i]->privileged)
                printf("%s%s",
                       npriv++ ? ", " : "PRIVILEGED (host root with dangerous capabilities): ", l->containers[i]->name);
        if (npriv)
            printf("\n");
    }
    trustme__response__free_unpacked(resp, NULL);
    return 0;
}

int cmd_state(struct cli *cli, const struct cli_args *a)
{
    char *const *pos = a->argv;
    Trustme__ContainerRef ref;
    Trustme__Request req;
    container_request(&req, &ref, TRUSTME__REQUEST__BODY_STATE, pos[0]);
    Trustme__Response *resp;
    int r = cli_call(cli, &req, &resp);
    if (r)
        return r;
    if (cli->json)
        print_json(info_json(resp->container));
    else
        print_info(resp->container);
    trustme__response__free_unpacked(resp, NULL);
    return 0;
}

int cmd_config(struct cli *cli, const struct cli_args *a)
{
    char *const *pos = a->argv;
    Trustme__ContainerRef ref;
    Trustme__Request req;
    container_request(&req, &ref, TRUSTME__REQUEST__BODY_CONFIG, pos[0]);
    Trustme__Response *resp;
    int r = cli_call(cli, &req, &resp);
    if (r)
        return r;
    /* The bytes as created, unchanged (to keep or re-create from); on a terminal escaped like
     * everything else (term_safe.h): a config may hold characters that act on it. */
    if (isatty(STDOUT_FILENO))
        fwrite(resp->config->config_json.data, 1, resp->config->config_json.len, stdout);
    else
        term_write_raw(resp->config->config_json.data, resp->config->config_json.len);
    trustme__response__free_unpacked(resp, NULL);
    return 0;
}

int cmd_remove(struct cli *cli, const struct cli_args *a)
{
    char *const *pos = a->argv;
    Trustme__ContainerRef ref;
    Trustme__Request req;
    container_request(&req, &ref, TRUSTME__REQUEST__BODY_REMOVE, pos[0]);
    Trustme__Response *resp;
    int r = cli_call(cli, &req, &resp);
    if (r)
        return r;
    trustme__response__free_unpacked(resp, NULL);
    printf("removed %s\n", pos[0]);
    return 0;
}

int cmd_logs(struct cli *cli, const struct cli_args *a)
{
    Trustme__LogsRequest lr = TRUSTME__LOGS_REQUEST__INIT;
    lr.id = a->argv[0];
    if (cli_flag(a, "previous"))
        lr.has_previous = lr.previous = true;
    bool raw = cli_flag(a, "raw");
    struct client cl;
    if (cli_connect(cli, &cl) < 0)
        return 1;
    Trustme__Request req = TRUSTME__REQUEST__INIT;
    req.body_case = TRUSTME__REQUEST__BODY_LOGS;
    req.logs = &lr;
    tm_err err;
    int r = 0;
    if (client_send(&cl, &req, &err) < 0)
        r = cli_fail("%s", err.msg);
    while (r == 0) {
        Trustme__Response *resp;
        if (client_recv(&cl, &resp, &err) < 0) {
            r = cli_fail("%s", err.msg);
            break;
        }
        bool done = resp->body_case != TRUSTME__RESPONSE__BODY_AUDIT_CHUNK;
        if (!done && raw)
            term_write_raw(resp->audit_chunk->data.data, resp->audit_chunk->data.len);
        else if (!done)
            fwrite(resp->audit_chunk->data.data, 1, resp->audit_chunk->data.len, stdout);
        else if (resp->body_case == TRUSTME__RESPONSE__BODY_ERROR)
            r = cli_fail("%s", resp->error->message);
        trustme__response__free_unpacked(resp, NULL);
        if (done)
            break;
    }
    client_close(&cl);
    return r;
}
