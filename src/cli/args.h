/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The command line of one verb, parsed with getopt_long from its row of the verb table
 * (verbs.h): "--timeout=5" and "--timeout 5" alike, options before, between and after the
 * arguments (unless the verb takes options first), "--" ending the options. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "verbs.h"

struct cli_given {
    size_t opt; /* index in the verb's opts */
    char *value; /* NULL for a flag */
};

struct cli_args {
    const struct cli_verb *verb;
    char **argv; /* the positional arguments */
    size_t argc;
    struct cli_given *given; /* the options, in the order given */
    size_t ngiven;
};

/* The verb named by the first words of argv (the longest row that matches), and in *ret_words
 * how many words its name took. NULL if none: *ret_words is then how many words name a group
 * of verbs ("device", "device cert"), 0 if not even that. */
const struct cli_verb *cli_find_verb(int argc, char **argv, size_t *ret_words);
/* Parse the options and arguments after the verb's name (argv[0] is its last word). 0 with a
 * filled *ret (free with cli_args_free); 1 after printing --help; 2 after printing a usage
 * error. */
int cli_parse(const struct cli_verb *verb, int argc, char **argv, struct cli_args *ret);
void cli_args_free(struct cli_args *a);

/* Whether flag name was given; the last value of option name (NULL if not given); all its
 * values: up to max into out, returning how many were given. name must be one of the verb's
 * options (a typo aborts). */
bool cli_flag(const struct cli_args *a, const char *name);
const char *cli_value(const struct cli_args *a, const char *name);
size_t cli_values(const struct cli_args *a, const char *name, char **out, size_t max);

/* "trustme VERB: <msg> (see trustme VERB --help)" on stderr; returns 2, the usage error status. */
int cli_usage_error(const struct cli_verb *verb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Help from the table: trustme --help, trustme VERB --help, a group's verbs ("device"). */
void cli_help(FILE *out);
void cli_verb_help(FILE *out, const struct cli_verb *verb);
void cli_group_help(FILE *out, const char *group);
/* "[-k|--kill] [-t|--timeout S] CONTAINER" */
void cli_synopsis(FILE *out, const struct cli_verb *verb);
