/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme's verbs in one table (verbs.c): each verb's name, synopsis, summary, options and
 * handler. The parser (args.c), `trustme --help` and `trustme VERB --help`, and at build time
 * the man page and the bash and zsh completions (clidoc.c) are all made from it. No includes
 * beyond libc: clidoc, a build-machine program, compiles verbs.c without the rest of the CLI. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct cli;
struct cli_args;

/* What a value or an argument is, for the completions. */
enum cli_kind {
    CLI_NONE, /* a flag: no value */
    CLI_WORD, /* a number, a name: nothing to complete */
    CLI_FILE, /* a file ('-' often means stdin) */
    CLI_DIR, /* a directory */
    CLI_CONTAINER, /* a container's name or UUID (completed from `trustme list`) */
};

struct cli_opt {
    const char *name; /* long name without "--"; NULL ends a list */
    char short_name; /* 0: none */
    enum cli_kind kind; /* CLI_NONE: a flag; otherwise it takes a value */
    const char *value; /* the value's name in help ("FILE", "S") */
    const char *help; /* one sentence; NULL: hidden (accepted, not listed) */
    bool repeatable; /* every value counts (else the last one) */
};

#define CLI_MANY 255 /* max_args: no limit */
#define CLI_POS_KINDS 3

struct cli_verb {
    const char *name; /* "stop", "device cert install" */
    const char *args; /* the positional arguments' synopsis: "CONTAINER" */
    const char *summary; /* one line, for the verb list */
    const char *details; /* more for `trustme VERB --help` and the man page, or NULL */
    const struct cli_opt *opts; /* ended by {NULL}; NULL: none */
    unsigned char min_args, max_args;
    enum cli_kind kinds[CLI_POS_KINDS]; /* the first positionals, for the completions */
    /* Options end at the first positional argument; the rest, '-' or not, is the verb's (the
     * command of `run`, a "-9" signal of `exec kill`). */
    bool options_first;
    int (*fn)(struct cli *cli, const struct cli_args *a);
};

extern const struct cli_verb cli_verbs[];
extern const size_t cli_nverbs;
/* The global options (before the verb). */
extern const struct cli_opt cli_global_opts[];
/* What the man page and `trustme --help` say after the verbs. */
extern const char cli_description[], cli_notes[];

/* Handlers (cmd_*.c). */
int cmd_create(struct cli *cli, const struct cli_args *a);
int cmd_update(struct cli *cli, const struct cli_args *a);
int cmd_list(struct cli *cli, const struct cli_args *a);
int cmd_state(struct cli *cli, const struct cli_args *a);
int cmd_config(struct cli *cli, const struct cli_args *a);
int cmd_start(struct cli *cli, const struct cli_args *a);
int cmd_stop(struct cli *cli, const struct cli_args *a);
int cmd_freeze(struct cli *cli, const struct cli_args *a);
int cmd_unfreeze(struct cli *cli, const struct cli_args *a);
int cmd_run(struct cli *cli, const struct cli_args *a);
int cmd_exec_list(struct cli *cli, const struct cli_args *a);
int cmd_exec_kill(struct cli *cli, const struct cli_args *a);
int cmd_logs(struct cli *cli, const struct cli_args *a);
int cmd_change_pin(struct cli *cli, const struct cli_args *a);
int cmd_token_unlock(struct cli *cli, const struct cli_args *a);
int cmd_wipe(struct cli *cli, const struct cli_args *a);
int cmd_remove(struct cli *cli, const struct cli_args *a);
int cmd_vtpm_info(struct cli *cli, const struct cli_args *a);
int cmd_vtpm_reset(struct cli *cli, const struct cli_args *a);
int cmd_vtpm_owner(struct cli *cli, const struct cli_args *a);
int cmd_iface_assign(struct cli *cli, const struct cli_args *a);
int cmd_iface_unassign(struct cli *cli, const struct cli_args *a);
int cmd_guestos_install(struct cli *cli, const struct cli_args *a);
int cmd_guestos_list(struct cli *cli, const struct cli_args *a);
int cmd_guestos_remove(struct cli *cli, const struct cli_args *a);
int cmd_ca_register(struct cli *cli, const struct cli_args *a);
int cmd_ca_unregister(struct cli *cli, const struct cli_args *a);
int cmd_audit(struct cli *cli, const struct cli_args *a);
int cmd_version(struct cli *cli, const struct cli_args *a);
int cmd_measurements(struct cli *cli, const struct cli_args *a);
int cmd_device_info(struct cli *cli, const struct cli_args *a);
int cmd_device_csr(struct cli *cli, const struct cli_args *a);
int cmd_device_cert_install(struct cli *cli, const struct cli_args *a);
int cmd_device_reseal(struct cli *cli, const struct cli_args *a);
int cmd_attest(struct cli *cli, const struct cli_args *a);
int cmd_migrate_nonce(struct cli *cli, const struct cli_args *a);
int cmd_migrate_offer(struct cli *cli, const struct cli_args *a);
int cmd_migrate_export(struct cli *cli, const struct cli_args *a);
int cmd_migrate_import(struct cli *cli, const struct cli_args *a);
int cmd_migrate_commit(struct cli *cli, const struct cli_args *a);
int cmd_migrate_abort(struct cli *cli, const struct cli_args *a);
int cmd_migrate_send(struct cli *cli, const struct cli_args *a);
int cmd_migrate_announce(struct cli *cli, const struct cli_args *a);
