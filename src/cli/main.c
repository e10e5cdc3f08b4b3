/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme: the command-line client of trustmed. */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "cli.h"
#include "term_safe.h"
#include "version.h"

/* The global options (cli_global_opts, before the verb); returns the index of the verb's first
 * word, or -1 with the exit status in *ret_status (help or version printed, or a usage error). */
static int parse_global(struct cli *cli, int argc, char **argv, int *ret_status)
{
    enum { OPT_SOCKET = 256, OPT_RUN_DIR, OPT_VERSION };
    static const struct option opts[] = {{"socket", required_argument, NULL, OPT_SOCKET},
                                         {"run-dir", required_argument, NULL, OPT_RUN_DIR},
                                         {"version", no_argument, NULL, OPT_VERSION},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    static char sock[4096];
    opterr = 0;
    int c;
    /* '+': the options end at the verb, whose own options follow it */
    while ((c = getopt_long(argc, argv, "+:h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_SOCKET: cli->socket_path = optarg; break;
        case OPT_RUN_DIR:
            if (snprintf(sock, sizeof(sock), "%s/control.sock", optarg) >= (int)sizeof(sock)) {
                fprintf(stderr, "trustme: --run-dir: path too long\n");
                return *ret_status = 2, -1;
            }
            cli->socket_path = sock;
            break;
        case OPT_VERSION: printf("trustme %s\n", TRUSTME_VERSION); return *ret_status = 0, -1;
        case 'h': cli_help(stdout); return *ret_status = 0, -1;
        case ':':
            fprintf(stderr, "trustme: option %s needs a value (see trustme --help)\n", argv[optind - 1]);
            return *ret_status = 2, -1;
        default:
            if (optopt >= OPT_SOCKET)
                fprintf(stderr, "trustme: option %s takes no value (see trustme --help)\n", argv[optind - 1]);
            else if (optopt)
                fprintf(stderr, "trustme: unknown option -%c (see trustme --help)\n", optopt);
            else
                fprintf(stderr, "trustme: unknown option %s (see trustme --help)\n", argv[optind - 1]);
            return *ret_status = 2, -1;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "trustme: no command given\n\n");
        cli_help(stderr);
        return *ret_status = 2, -1;
    }
    return optind;
}

int main(int argc, char **argv)
{
    /* Names, details and messages come from containers and vendors: a person's terminal gets
     * their control characters escaped (term_safe.h), whatever the command. */
    term_safe_stdio();
    struct cli cli = {.socket_path = getenv("TRUSTME_SOCKET")};
    /* Kept as given for a verb that trustme-crypto-verbs runs (crypto_verbs.c). */
    _cleanup_free_ char **given = calloc((size_t)argc + 1, sizeof(*given));
    if (!given)
        return cli_fail("out of memory");
    memcpy(given, argv, (size_t)argc * sizeof(*given));
    cli.argv = given;
    int status = 2;
    int i = parse_global(&cli, argc, argv, &status);
    if (i < 0)
        return status;
    if (!cli.socket_path || !cli.socket_path[0])
        cli.socket_path = "/run/trustme/control.sock";
    size_t words;
    const struct cli_verb *verb = cli_find_verb(argc - i, argv + i, &words);
    if (!verb) {
        /* "trustme device": a group of verbs, without (or with an unknown) subcommand */
        char group[64] = "";
        for (size_t w = 0; w < words; w++)
            snprintf(group + strlen(group), sizeof(group) - strlen(group), "%s%s", w ? " " : "", argv[i + (int)w]);
        int next = i + (int)words;
        if (words && next < argc && (strcmp(argv[next], "-h") == 0 || strcmp(argv[next], "--help") == 0)) {
            cli_group_help(stdout, group);
            return 0;
        }
        if (words && next < argc)
            fprintf(stderr, "trustme %s: unknown subcommand \"%s\"\n", group, argv[next]);
        else if (words)
            fprintf(stderr, "trustme %s: which one?\n", group);
        else
            fprintf(stderr, "trustme: unknown command \"%s\" (see trustme --help)\n", argv[i]);
        if (words)
            cli_group_help(stderr, group);
        return 2;
    }
    struct cli_args a;
    int r = cli_parse(verb, argc - i - (int)words + 1, argv + i + words - 1, &a);
    if (r)
        return r == 1 ? 0 : r;
    for (size_t o = 0; verb->opts && verb->opts[o].name; o++)
        if (strcmp(verb->opts[o].name, "json") == 0)
            cli.json = cli_flag(&a, "json");
    r = verb->fn(&cli, &a);
    cli_args_free(&a);
    return r;
}

int cli_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("trustme: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

int cli_connect(struct cli *cli, struct client *cl)
{
    tm_err err;
    if (client_connect(cl, cli->socket_path, &err) < 0) {
        cli_fail("%s", err.msg);
        return -1;
    }
    return 0;
}

int cli_call(struct cli *cli, Trustme__Request *req, Trustme__Response **ret)
{
    struct client cl;
    if (cli_connect(cli, &cl) < 0)
        return 1;
    tm_err err;
    int r = client_call(&cl, req, ret, &err);
    client_close(&cl);
    return r < 0 ? cli_fail("%s", err.msg) : 0;
}

void container_request(Trustme__Request *req, Trustme__ContainerRef *ref, Trustme__Request__BodyCase body,
                       const char *id)
{
    trustme__container_ref__init(ref);
    ref->id = (char *)id;
    trustme__request__init(req);
    req->body_case = body;
    switch (body) {
    case TRUSTME__REQUEST__BODY_STATE: req->state = ref; break;
    case TRUSTME__REQUEST__BODY_CONFIG: req->config = ref; break;
    case TRUSTME__REQUEST__BODY_FREEZE: req->freeze = ref; break;
    case TRUSTME__REQUEST__BODY_UNFREEZE: req->unfreeze = ref; break;
    case TRUSTME__REQUEST__BODY_REMOVE: req->remove = ref; break;
    default: abort(); /* not a request about one container */
    }
}

const char *state_word(Trustme__ContainerState s)
{
    switch (s) {
    case TRUSTME__CONTAINER_STATE__STOPPED: return "stopped";
    case TRUSTME__CONTAINER_STATE__STARTING: return "starting";
    case TRUSTME__CONTAINER_STATE__RUNNING: return "running";
    case TRUSTME__CONTAINER_STATE__FREEZING: return "freezing";
    case TRUSTME__CONTAINER_STATE__FROZEN: return "frozen";
    case TRUSTME__CONTAINER_STATE__STOPPING: return "stopping";
    default: return "unknown";
    }
}
