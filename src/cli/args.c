/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Parsing a verb's command line and printing its help, both from the verb table (args.h). */
#include <assert.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"

#define OPTS_MAX 24 /* options of one verb (migrate send: the verifier's and its own) */
#define OPT_LONG 256 /* getopt_long's value for option i: OPT_LONG + i */
#define WIDTH 79 /* help lines */
#define HELP_COLUMN 24 /* where option and verb descriptions start */

static size_t count_opts(const struct cli_opt *opts)
{
    size_t n = 0;
    while (opts && opts[n].name)
        n++;
    return n;
}

/* How many leading words of name argv repeats ("device cert install" vs "device cert x": 2),
 * and in *all whether that is all of name's words. */
static size_t words_matching(const char *name, int argc, char **argv, bool *all)
{
    size_t n = 0;
    const char *w = name;
    for (;;) {
        size_t len = strcspn(w, " ");
        if ((int)n >= argc || strlen(argv[n]) != len || strncmp(argv[n], w, len) != 0) {
            *all = false;
            return n;
        }
        n++;
        if (!w[len]) {
            *all = true;
            return n;
        }
        w += len + 1;
    }
}

const struct cli_verb *cli_find_verb(int argc, char **argv, size_t *ret_words)
{
    const struct cli_verb *best = NULL;
    size_t best_words = 0, group = 0;
    for (size_t v = 0; v < cli_nverbs; v++) {
        bool all;
        size_t n = words_matching(cli_verbs[v].name, argc, argv, &all);
        if (all && n > best_words) {
            best = &cli_verbs[v];
            best_words = n;
        } else if (!all && n > group) {
            group = n;
        }
    }
    *ret_words = best ? best_words : group;
    return best;
}

static const char *opt_name(const struct cli_verb *verb, int c, char *buf, size_t size)
{
    if (c >= OPT_LONG && (size_t)(c - OPT_LONG) < count_opts(verb->opts))
        snprintf(buf, size, "--%s", verb->opts[c - OPT_LONG].name);
    else
        snprintf(buf, size, "-%c", c);
    return buf;
}

int cli_parse(const struct cli_verb *verb, int argc, char **argv, struct cli_args *ret)
{
    size_t nopts = count_opts(verb->opts);
    assert(nopts < OPTS_MAX);
    struct option lopts[OPTS_MAX + 2];
    char shorts[4 + 2 * OPTS_MAX] = "";
    size_t ns = 0;
    if (verb->options_first)
        shorts[ns++] = '+';
    shorts[ns++] = ':'; /* a missing value is ':', not '?' */
    shorts[ns++] = 'h';
    for (size_t i = 0; i < nopts; i++) {
        const struct cli_opt *o = &verb->opts[i];
        int has_value = o->kind != CLI_NONE;
        lopts[i] = (struct option){o->name, has_value ? required_argument : no_argument, NULL, OPT_LONG + (int)i};
        if (o->short_name) {
            shorts[ns++] = o->short_name;
            if (has_value)
                shorts[ns++] = ':';
        }
    }
    lopts[nopts] = (struct option){"help", no_argument, NULL, 'h'};
    lopts[nopts + 1] = (struct option){NULL, 0, NULL, 0};
    shorts[ns] = '\0';

    *ret = (struct cli_args){.verb = verb, .given = calloc((size_t)argc + 1, sizeof(*ret->given))};
    if (!ret->given) {
        fprintf(stderr, "trustme: out of memory\n");
        return 2;
    }
    optind = 0; /* glibc: start afresh (the global options were parsed before) */
    opterr = 0; /* the messages are ours: they name the verb and its --help */
    char name[80];
    int c;
    while ((c = getopt_long(argc, argv, shorts, lopts, NULL)) != -1) {
        if (c == 'h') {
            cli_verb_help(stdout, verb);
            cli_args_free(ret);
            return 1;
        }
        int r = 0;
        if (c == ':')
            r = cli_usage_error(verb, "option %s needs a value", opt_name(verb, optopt, name, sizeof(name)));
        else if (c == '?' && optopt >= OPT_LONG)
            r = cli_usage_error(verb, "option %s takes no value", opt_name(verb, optopt, name, sizeof(name)));
        else if (c == '?' && optopt)
            r = cli_usage_error(verb, "unknown option -%c", optopt);
        else if (c == '?')
            r = cli_usage_error(verb, "unknown option %s", argv[optind - 1]);
        if (r) {
            cli_args_free(ret);
            return r;
        }
        size_t i = 0;
        if (c >= OPT_LONG)
            i = (size_t)(c - OPT_LONG);
        else
            while (i < nopts && verb->opts[i].short_name != c)
                i++;
        assert(i < nopts);
        ret->given[ret->ngiven++] = (struct cli_given){i, verb->opts[i].kind != CLI_NONE ? optarg : NULL};
    }
    ret->argv = argv + optind;
    ret->argc = (size_t)(argc - optind);
    int r = 0;
    if (ret->argc < verb->min_args)
        r = cli_usage_error(verb, "expected %s", verb->args);
    else if (ret->argc > verb->max_args)
        r = cli_usage_error(verb, "unexpected argument %s%s%s", ret->argv[verb->max_args],
                            verb->max_args ? " after " : "", verb->max_args ? verb->args : "");
    if (r)
        cli_args_free(ret);
    return r;
}

void cli_args_free(struct cli_args *a)
{
    free(a->given);
    a->given = NULL;
    a->ngiven = 0;
}

static size_t opt_index(const struct cli_args *a, const char *name)
{
    size_t n = count_opts(a->verb->opts);
    for (size_t i = 0; i < n; i++)
        if (strcmp(a->verb->opts[i].name, name) == 0)
            return i;
    fprintf(stderr, "trustme %s: no option --%s in the verb table\n", a->verb->name, name);
    abort();
}

bool cli_flag(const struct cli_args *a, const char *name)
{
    size_t i = opt_index(a, name);
    for (size_t g = 0; g < a->ngiven; g++)
        if (a->given[g].opt == i)
            return true;
    return false;
}

const char *cli_value(const struct cli_args *a, const char *name)
{
    size_t i = opt_index(a, name);
    const char *v = NULL;
    for (size_t g = 0; g < a->ngiven; g++)
        if (a->given[g].opt == i)
            v = a->given[g].value;
    return v;
}

size_t cli_values(const struct cli_args *a, const char *name, char **out, size_t max)
{
    size_t i = opt_index(a, name), n = 0;
    for (size_t g = 0; g < a->ngiven; g++)
        if (a->given[g].opt == i) {
            if (n < max)
                out[n] = a->given[g].value;
            n++;
        }
    return n;
}

int cli_usage_error(const struct cli_verb *verb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "trustme %s: ", verb->name);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nUsage: trustme %s ", verb->name);
    cli_synopsis(stderr, verb);
    fprintf(stderr, "\n(see trustme %s --help)\n", verb->name);
    va_end(ap);
    return 2;
}

/* ---- help ------------------------------------------------------------------------------------- */

/* text from column col (where the cursor is) on, wrapped at WIDTH, continued at column indent. */
static void wrap(FILE *out, const char *text, int col, int indent)
{
    if (col >= indent) {
        fputc('\n', out);
        col = 0;
    }
    while (*text) {
        size_t n = strlen(text), width = (size_t)(WIDTH - indent);
        if (n > width) {
            n = width;
            while (n > 0 && text[n] != ' ')
                n--;
            if (n == 0)
                n = width;
        }
        fprintf(out, "%*s%.*s\n", indent - col, "", (int)n, text);
        col = 0;
        text += n;
        while (*text == ' ')
            text++;
    }
}

void cli_synopsis(FILE *out, const struct cli_verb *verb)
{
    const char *sep = "";
    for (size_t i = 0; i < count_opts(verb->opts); i++) {
        const struct cli_opt *o = &verb->opts[i];
        if (!o->help)
            continue;
        fprintf(out, "%s[", sep);
        if (o->short_name)
            fprintf(out, "-%c|", o->short_name);
        fprintf(out, "--%s%s%s]%s", o->name, o->value ? " " : "", o->value ? o->value : "", o->repeatable ? "..." : "");
        sep = " ";
    }
    fprintf(out, "%s%s", verb->args[0] ? sep : "", verb->args);
}

static void opt_help(FILE *out, const struct cli_opt *o)
{
    int col;
    if (o->short_name)
        col = fprintf(out, "  -%c, --%s", o->short_name, o->name);
    else
        col = fprintf(out, "      --%s", o->name);
    if (o->value)
        col += fprintf(out, "=%s", o->value);
    char help[512];
    snprintf(help, sizeof(help), "%s%s", o->help, o->repeatable ? " (repeatable)" : "");
    wrap(out, help, col, HELP_COLUMN);
}

void cli_verb_help(FILE *out, const struct cli_verb *verb)
{
    fprintf(out, "Usage: trustme %s ", verb->name);
    cli_synopsis(out, verb);
    fprintf(out, "\n\n");
    char text[2048];
    snprintf(text, sizeof(text), "%c%s.%s%s",
             verb->summary[0] >= 'a' && verb->summary[0] <= 'z' ? verb->summary[0] - 'a' + 'A' : verb->summary[0],
             verb->summary + 1, verb->details ? " " : "", verb->details ? verb->details : "");
    wrap(out, text, 0, 0);
    fprintf(out, "\nOptions:\n");
    for (size_t i = 0; i < count_opts(verb->opts); i++)
        if (verb->opts[i].help)
            opt_help(out, &verb->opts[i]);
    opt_help(out, &(struct cli_opt){"help", 'h', CLI_NONE, NULL, "this help", false});
}

static void verb_line(FILE *out, const struct cli_verb *verb, size_t skip)
{
    int col = fprintf(out, "  %s", verb->name + skip);
    wrap(out, verb->summary, col, HELP_COLUMN);
}

void cli_group_help(FILE *out, const char *group)
{
    fprintf(out, "Usage: trustme %s COMMAND [OPTIONS] [ARGS]\n\nCommands:\n", group);
    size_t len = strlen(group);
    for (size_t v = 0; v < cli_nverbs; v++)
        if (strncmp(cli_verbs[v].name, group, len) == 0 && cli_verbs[v].name[len] == ' ')
            verb_line(out, &cli_verbs[v], len + 1);
    fprintf(out, "\n'trustme %s COMMAND --help' shows a command's options.\n", group);
}

void cli_help(FILE *out)
{
    fprintf(out, "Usage: trustme [--socket PATH | --run-dir DIR] COMMAND [OPTIONS] [ARGS]\n\n");
    wrap(out, cli_description, 0, 0);
    fprintf(out, "\nCommands:\n");
    for (size_t v = 0; v < cli_nverbs; v++)
        verb_line(out, &cli_verbs[v], 0);
    fprintf(out, "\nGlobal options:\n");
    for (size_t i = 0; cli_global_opts[i].name; i++)
        opt_help(out, &cli_global_opts[i]);
    opt_help(out, &(struct cli_opt){"help", 'h', CLI_NONE, NULL,
                                    "this help; 'trustme COMMAND --help' for a command's options", false});
    fputc('\n', out);
    wrap(out, cli_notes, 0, 0);
}
