/* Verbs about container objects: create, list, state, config, remove. */
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "cli.h"
#include "fileio.h"

#define CONFIG_MAX (1024 * 1024)

static json_object *info_json(const Trustme__ContainerInfo *i)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "name", json_object_new_string(i->name ? i->name : ""));
    json_object_object_add(o, "uuid", json_object_new_string(i->uuid ? i->uuid : ""));
    json_object_object_add(o, "state", json_object_new_string(state_word(i->state)));
    json_object_object_add(o, "pid", json_object_new_int(i->pid));
    json_object_object_add(o, "rootfs", json_object_new_string(i->rootfs ? i->rootfs : ""));
    json_object_object_add(o, "user_namespace", json_object_new_boolean(i->user_namespace));
    json_object_object_add(o, "uid_base", json_object_new_int64(i->uid_base));
    json_object_object_add(o, "memory_limit_mb", json_object_new_int64((int64_t)i->memory_limit_mb));
    json_object_object_add(o, "pids_limit", json_object_new_int64(i->pids_limit));
    json_object_object_add(o, "cpus", json_object_new_string(i->cpus ? i->cpus : ""));
    json_object_object_add(o, "data_size_mb", json_object_new_int64((int64_t)i->data_size_mb));
    json_object_object_add(o, "autostart", json_object_new_boolean(i->autostart));
    json_object_object_add(o, "started_at", json_object_new_int64((int64_t)i->started_at));
    json_object_object_add(o, "adopted", json_object_new_boolean(i->adopted));
    json_object_object_add(o, "last_exit", json_object_new_string(i->last_exit ? i->last_exit : ""));
    json_object_object_add(o, "last_error", json_object_new_string(i->last_error ? i->last_error : ""));
    return o;
}

static void print_json(json_object *o)
{
    puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
}

static const char *or_dash(const char *s) { return s && s[0] ? s : "-"; }

static void print_info(const Trustme__ContainerInfo *i)
{
    char started[64] = "-";
    if (i->started_at) {
        time_t t = (time_t)i->started_at;
        strftime(started, sizeof(started), "%Y-%m-%d %H:%M:%S %Z", localtime(&t));
    }
    printf("name:            %s\n", i->name);
    printf("uuid:            %s\n", i->uuid);
    printf("state:           %s%s\n", state_word(i->state), i->adopted ? " (re-adopted)" : "");
    if (i->pid)
        printf("init pid:        %d\n", i->pid);
    printf("rootfs:          %s\n", i->rootfs);
    if (i->user_namespace)
        printf("user namespace:  host ids %u-%u\n", i->uid_base, i->uid_base + 65535);
    else
        printf("user namespace:  off (container root is host root)\n");
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
    printf("autostart:       %s\n", i->autostart ? "yes" : "no");
    printf("last started:    %s\n", started);
    printf("last exit:       %s\n", or_dash(i->last_exit));
    printf("last error:      %s\n", or_dash(i->last_error));
}

int cmd_create(struct cli *cli, int argc, char **argv)
{
    char *pos[1];
    if (cli_args(cli, argc, argv, "[--json] CONFIG.json  (see docs/CONFIG.md)", 1, 1, pos) < 0)
        return 2;
    _cleanup_free_ char *data = NULL;
    size_t len;
    tm_err err;
    if (read_file(pos[0], CONFIG_MAX, &data, &len, &err) < 0)
        return cli_fail("%s", err.msg);
    Trustme__CreateRequest cr = TRUSTME__CREATE_REQUEST__INIT;
    cr.has_config_json = true;
    cr.config_json.data = (uint8_t *)data;
    cr.config_json.len = len;
    Trustme__Request req = TRUSTME__REQUEST__INIT;
    req.body_case = TRUSTME__REQUEST__BODY_CREATE;
    req.create = &cr;
    Trustme__Response *resp;
    int r = cli_call(cli, &req, &resp);
    if (r)
        return r;
    if (cli->json)
        print_json(info_json(resp->container));
    else
        printf("created %s (%s)\n", resp->container->name, resp->container->uuid);
    trustme__response__free_unpacked(resp, NULL);
    return 0;
}

int cmd_list(struct cli *cli, int argc, char **argv)
{
    char *pos[1];
    if (cli_args(cli, argc, argv, "[--json]", 0, 0, pos) < 0)
        return 2;
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
        json_object *arr = json_object_new_array();
        for (size_t i = 0; i < l->n_containers; i++)
            json_object_array_add(arr, info_json(l->containers[i]));
        print_json(arr);
    } else if (l->n_containers == 0) {
        printf("no containers (create one with: trustme create CONFIG.json)\n");
    } else {
        printf("%-20s %-9s %-8s %-36s %s\n", "NAME", "STATE", "PID", "UUID", "LAST EXIT");
        for (size_t i = 0; i < l->n_containers; i++) {
            const Trustme__ContainerInfo *c = l->containers[i];
            char pid[16] = "-";
            if (c->pid)
                snprintf(pid, sizeof(pid), "%d", c->pid);
            printf("%-20s %-9s %-8s %-36s %s\n", c->name, state_word(c->state), pid, c->uuid,
                   c->last_error && c->last_error[0] ? "start failed (see trustme state)"
                                                     : or_dash(c->last_exit));
        }
    }
    trustme__response__free_unpacked(resp, NULL);
    return 0;
}

int cmd_state(struct cli *cli, int argc, char **argv)
{
    char *pos[1];
    if (cli_args(cli, argc, argv, "[--json] CONTAINER", 1, 1, pos) < 0)
        return 2;
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

int cmd_config(struct cli *cli, int argc, char **argv)
{
    char *pos[1];
    if (cli_args(cli, argc, argv, "CONTAINER", 1, 1, pos) < 0)
        return 2;
    Trustme__ContainerRef ref;
    Trustme__Request req;
    container_request(&req, &ref, TRUSTME__REQUEST__BODY_CONFIG, pos[0]);
    Trustme__Response *resp;
    int r = cli_call(cli, &req, &resp);
    if (r)
        return r;
    fwrite(resp->config->config_json.data, 1, resp->config->config_json.len, stdout);
    trustme__response__free_unpacked(resp, NULL);
    return 0;
}

int cmd_remove(struct cli *cli, int argc, char **argv)
{
    char *pos[1];
    if (cli_args(cli, argc, argv, "CONTAINER", 1, 1, pos) < 0)
        return 2;
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

int cmd_logs(struct cli *cli, int argc, char **argv)
{
    const char *usage = "[--previous] CONTAINER\n"
                        "  init's output when started without --attach (the last 1-2 MiB);\n"
                        "  --previous: the log before the current one";
    Trustme__LogsRequest lr = TRUSTME__LOGS_REQUEST__INIT;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--previous") == 0 || strcmp(argv[i], "-p") == 0)
            lr.has_previous = lr.previous = true;
        else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return printf("Usage: trustme logs %s\n", usage), 0;
        else if (argv[i][0] == '-' || lr.id)
            return fprintf(stderr, "Usage: trustme logs %s\n", usage), 2;
        else
            lr.id = argv[i];
    }
    if (!lr.id)
        return fprintf(stderr, "Usage: trustme logs %s\n", usage), 2;
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
        if (!done)
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
