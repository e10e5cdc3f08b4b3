/* trustme CLI: shared declarations of the verbs (one function per verb). */
#pragma once

#include <stdbool.h>

#include "client.h"

struct cli {
    const char *socket_path;
    bool json;
};

/* Connect to trustmed or print why not. */
int cli_connect(struct cli *cli, struct client *cl);
/* Connect, send req and wait for its final response. On failure the reason is printed and the
 * exit status (1) returned; on success 0, and the caller frees *ret. */
int cli_call(struct cli *cli, Trustme__Request *req, Trustme__Response **ret);
/* Fill req as a request of type body about container id (state, config, freeze, unfreeze,
 * remove); ref provides the storage. */
void container_request(Trustme__Request *req, Trustme__ContainerRef *ref,
                       Trustme__Request__BodyCase body, const char *id);
/* Print "trustme: <msg>" and return the exit status for a failed command. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Common option parsing for "VERB [--json] ARG...": fills positional args. */
int cli_args(struct cli *cli, int argc, char **argv, const char *usage, int min, int max,
             char **pos);
const char *state_word(Trustme__ContainerState s);

int cmd_create(struct cli *cli, int argc, char **argv);
int cmd_list(struct cli *cli, int argc, char **argv);
int cmd_state(struct cli *cli, int argc, char **argv);
int cmd_config(struct cli *cli, int argc, char **argv);
int cmd_remove(struct cli *cli, int argc, char **argv);
int cmd_start(struct cli *cli, int argc, char **argv);
int cmd_stop(struct cli *cli, int argc, char **argv);
int cmd_freeze(struct cli *cli, int argc, char **argv);
int cmd_unfreeze(struct cli *cli, int argc, char **argv);
int cmd_run(struct cli *cli, int argc, char **argv);
int cmd_audit(struct cli *cli, int argc, char **argv);
int cmd_logs(struct cli *cli, int argc, char **argv);
/* Relay stdio for request id until its exit status arrives; returns the exit status. */
int relay_session(struct client *cl, uint64_t id, bool tty);
