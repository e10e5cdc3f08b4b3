/* trustme: the command-line client of trustmed. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "cli.h"
#include "term_safe.h"
#include "version.h"

static const struct verb {
    const char *name;
    int (*fn)(struct cli *cli, int argc, char **argv);
    const char *args;
    const char *help;
} verbs[] = {
    {"create", cmd_create, "[--pin-file F] CONFIG.json", "create a container from a config file (docs/CONFIG.md)"},
    {"update", cmd_update, "CONTAINER CONFIG.json", "replace a stopped container's config"},
    {"list", cmd_list, "[--json]", "list containers"},
    {"state", cmd_state, "[--json] CONTAINER", "show a container's state, limits and last exit"},
    {"config", cmd_config, "CONTAINER", "print a container's config"},
    {"start", cmd_start, "[--attach] [--pin-file F] CONTAINER", "start; --attach relays init's stdio and exits with its status"},
    {"stop", cmd_stop, "[--timeout S] [--kill] CONTAINER", "stop: SIGTERM, SIGKILL after S seconds (default 10)"},
    {"freeze", cmd_freeze, "CONTAINER", "freeze every process of a running container"},
    {"unfreeze", cmd_unfreeze, "CONTAINER", "thaw a frozen container"},
    {"run", cmd_run, "[-t] [-e KEY=VALUE] CONTAINER -- CMD [ARG...]", "run a command inside a running container"},
    {"exec", cmd_exec, "list [--json] CONTAINER | kill CONTAINER SESSION [SIG]", "the commands trustme run started, also those whose CLI is gone"},
    {"logs", cmd_logs, "[--previous] [--raw] CONTAINER", "print init's console output (when not attached), escaped unless --raw"},
    {"change-pin", cmd_change_pin, "[--pin-file F] CONTAINER", "set the PIN of a container's token (the first time: pair it)"},
    {"token", cmd_token, "unlock [--pin-file F] CONTAINER", "unlock a token locked by wrong PINs, with its PUK"},
    {"wipe", cmd_wipe, "[--pin-file F] CONTAINER", "crypto-erase a stopped container's data"},
    {"remove", cmd_remove, "CONTAINER", "wipe and delete a stopped container"},
    {"guestos", cmd_guestos, "install DIR | list | remove NAME [--version V]", "the signed GuestOSes containers run (docs/GUESTOS.md)"},
    {"ca", cmd_ca, "register CERT.pem | unregister SHA256", "trust a GuestOS-signing CA (it must chain to the General root), or stop trusting it"},
    {"audit", cmd_audit, "[--json] [--verify] [--file LOG]", "show or verify the hash-chained audit log"},
    {"measurements", cmd_measurements, "[--json]", "the measurement log and the PCR values; 1 if they disagree"},
    {"attest", cmd_attest, "--anchor ROOT.pem --reference REFS.json", "quote the TPM and verify it here, as trustme-verify does"},
    {"iface", cmd_iface, "assign CONTAINER IFACE [--persistent] | unassign CONTAINER IFACE", "move a host interface into a running container, or give it back"},
    {"device", cmd_device, "info | csr | cert install CERT.pem | reseal", "the TPM, the device's attestation key and storage secret"},
};

static void usage(FILE *out)
{
    fprintf(out, "Usage: trustme [--socket PATH | --run-dir DIR] COMMAND [ARGS]\n\n"
                 "Manage trustme containers through trustmed. Containers are named by name or UUID.\n\n"
                 "Commands:\n");
    for (size_t i = 0; i < ARRAY_SIZE(verbs); i++)
        fprintf(out, "  %-12s %-46s %s\n", verbs[i].name, verbs[i].args, verbs[i].help);
    fprintf(out, "\nGlobal options:\n"
                 "  --socket PATH   control socket (default $TRUSTME_SOCKET or /run/trustme/control.sock)\n"
                 "  --run-dir DIR   use DIR/control.sock (the --run-dir given to trustmed)\n"
                 "  --version       print the version\n"
                 "  -h, --help      this help; 'trustme COMMAND --help' for a command\n"
                 "\nPINs and PUKs are asked on the terminal without echo. --pin-file FILE gives them\n"
                 "one per line in the order asked ('-' is stdin); without a terminal they are read\n"
                 "from stdin. docs/STORAGE.md explains tokens, PINs, PUKs and the lockout.\n"
                 "A config CONFIG.json signed by the GuestOS Signing PKI has CONFIG.json.sig and\n"
                 "CONFIG.json.chain.pem beside it; create and update send them along.\n");
}

int main(int argc, char **argv)
{
    /* Names, details and messages come from containers and vendors: a person's terminal gets
     * their control characters escaped (term_safe.h), whatever the command. */
    term_safe_stdio();
    struct cli cli = {.socket_path = getenv("TRUSTME_SOCKET")};
    static char sock[4096];
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc) {
            cli.socket_path = argv[++i];
        } else if (strcmp(argv[i], "--run-dir") == 0 && i + 1 < argc) {
            snprintf(sock, sizeof(sock), "%s/control.sock", argv[++i]);
            cli.socket_path = sock;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("trustme %s\n", TRUSTME_VERSION);
            return 0;
        } else {
            fprintf(stderr, "trustme: unknown option %s\n\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!cli.socket_path || !cli.socket_path[0])
        cli.socket_path = "/run/trustme/control.sock";
    if (i >= argc) {
        usage(stderr);
        return 2;
    }
    for (size_t v = 0; v < ARRAY_SIZE(verbs); v++)
        if (strcmp(argv[i], verbs[v].name) == 0)
            return verbs[v].fn(&cli, argc - i, argv + i);
    fprintf(stderr, "trustme: unknown command \"%s\" (see trustme --help)\n", argv[i]);
    return 2;
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

void container_request(Trustme__Request *req, Trustme__ContainerRef *ref,
                       Trustme__Request__BodyCase body, const char *id)
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

int cli_args(struct cli *cli, int argc, char **argv, const char *usage_line, int min, int max,
             char **pos)
{
    int n = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            cli->json = true;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            printf("Usage: trustme %s %s\n", argv[0], usage_line);
            exit(0);
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "trustme %s: unknown option %s\nUsage: trustme %s %s\n", argv[0], argv[i],
                    argv[0], usage_line);
            return -1;
        } else if (n < max) {
            pos[n++] = argv[i];
        } else {
            fprintf(stderr, "trustme %s: too many arguments\nUsage: trustme %s %s\n", argv[0],
                    argv[0], usage_line);
            return -1;
        }
    }
    if (n < min) {
        fprintf(stderr, "Usage: trustme %s %s\n", argv[0], usage_line);
        return -1;
    }
    return n;
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
