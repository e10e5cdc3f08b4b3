/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Verbs that change a container's state: start, stop, freeze, unfreeze. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "cli.h"
#include "secmem.h"

/* Report the container's resulting state in one line. */
static void print_state(Trustme__Response *resp, const char *verb_done)
{
    const Trustme__ContainerInfo *i = resp->container;
    if (i && resp->body_case == TRUSTME__RESPONSE__BODY_CONTAINER) {
        if (i->state == TRUSTME__CONTAINER_STATE__STOPPED && i->last_exit && i->last_exit[0] &&
            strcmp(verb_done, "stopped") != 0)
            printf("%s %s; init already %s\n", i->name, verb_done, i->last_exit);
        else
            printf("%s %s\n", i->name, verb_done);
    }
    trustme__response__free_unpacked(resp, NULL);
}

/* Send req and report the container's resulting state in one line. */
static int change_state(struct cli *cli, Trustme__Request *req, const char *verb_done)
{
    Trustme__Response *resp;
    int r = cli_call(cli, req, &resp);
    if (r)
        return r;
    print_state(resp, verb_done);
    return 0;
}

/* One start request: the exit status, or *pin_required (nothing printed) when trustmed asks for
 * the container's PIN. */
static int start_once(struct cli *cli, Trustme__Request *req, bool attach, bool *pin_required)
{
    struct client cl;
    if (cli_connect(cli, &cl) < 0)
        return 1;
    tm_err err;
    int r;
    if (attach) {
        /* The relay blocks the signals it forwards: a PIN prompt after it must be interruptible. */
        sigset_t mask;
        sigprocmask(SIG_SETMASK, NULL, &mask);
        int64_t id = client_send(&cl, req, &err);
        r = id < 0 ? cli_fail("%s", err.msg) : relay_session(&cl, (uint64_t)id, false, pin_required);
        sigprocmask(SIG_SETMASK, &mask, NULL);
    } else {
        Trustme__Response *resp;
        r = client_call(&cl, req, &resp, &err);
        if (r == 0)
            print_state(resp, "started");
        else if (!(*pin_required = cl.pin_required))
            r = cli_fail("%s", err.msg);
        else
            r = 1;
    }
    client_close(&cl);
    return r;
}

int cmd_start(struct cli *cli, const struct cli_args *a)
{
    bool attach = cli_flag(a, "attach");
    const char *pin_file = cli_value(a, "pin-file");
    char *name = a->argv[0];
    if (attach && pin_file && strcmp(pin_file, "-") == 0)
        return fprintf(stderr, "trustme start: with --attach, stdin belongs to the container; "
                               "give the PIN in a file\n"),
               2;
    /* A PIN file is read up front. Otherwise the start is sent without a PIN, and trustmed
     * refuses it with pin_required before anything changes when the container needs one: then
     * the PIN is asked for and the start sent again. No state request before every start (a
     * round trip through trustmed), and no PIN asked for where trustmed would not use it. */
    _cleanup_secret_ struct secret *pin = NULL;
    int r;
    if (pin_file && (r = read_pin(name, pin_file, attach, &pin)))
        return r;
    for (;;) {
        Trustme__StartRequest sr = TRUSTME__START_REQUEST__INIT;
        sr.id = name;
        sr.has_attach = true;
        sr.attach = attach;
        sr.has_stdin_credit = sr.stdin_credit = attach;
        set_start_pin(&sr, pin);
        Trustme__Request req = TRUSTME__REQUEST__INIT;
        req.body_case = TRUSTME__REQUEST__BODY_START;
        req.start = &sr;
        bool pin_required = false;
        r = start_once(cli, &req, attach, &pin_required);
        if (!pin_required)
            return r;
        if (pin) /* trustmed does not ask again for a request with a PIN */
            return cli_fail("%s: trustmed asks for a PIN again", name);
        if ((r = read_pin(name, NULL, attach, &pin)))
            return r;
    }
}

int cmd_stop(struct cli *cli, const struct cli_args *a)
{
    Trustme__StopRequest sr = TRUSTME__STOP_REQUEST__INIT;
    sr.id = a->argv[0];
    if (cli_flag(a, "kill"))
        sr.has_kill = sr.kill = true;
    const char *timeout = cli_value(a, "timeout");
    if (timeout) {
        char *end;
        errno = 0;
        unsigned long t = strtoul(timeout, &end, 10);
        if (errno || *end || end == timeout || timeout[0] == '-' || t > 3600)
            return cli_usage_error(a->verb, "--timeout takes 0..3600 seconds, not %s", timeout);
        sr.has_timeout_s = true;
        sr.timeout_s = (uint32_t)t;
    }
    Trustme__Request req = TRUSTME__REQUEST__INIT;
    req.body_case = TRUSTME__REQUEST__BODY_STOP;
    req.stop = &sr;
    return change_state(cli, &req, "stopped");
}

static int freeze_verb(struct cli *cli, const struct cli_args *a, bool freeze)
{
    Trustme__ContainerRef ref;
    Trustme__Request req;
    container_request(&req, &ref, freeze ? TRUSTME__REQUEST__BODY_FREEZE : TRUSTME__REQUEST__BODY_UNFREEZE, a->argv[0]);
    return change_state(cli, &req, freeze ? "frozen" : "thawed");
}

int cmd_freeze(struct cli *cli, const struct cli_args *a)
{
    return freeze_verb(cli, a, true);
}
int cmd_unfreeze(struct cli *cli, const struct cli_args *a)
{
    return freeze_verb(cli, a, false);
}
