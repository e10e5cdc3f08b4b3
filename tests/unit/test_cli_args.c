/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The CLI's command line (src/cli/args.c) against its real verb table (src/cli/verbs.c, linked
 * without the handlers): getopt_long's forms, the errors, and the verbs that take their options
 * first. */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "unit.h"

#include "args.h"

/* Parse the words after "trustme" as main does: find the verb, then its options. Returns what
 * cli_parse returned (0 ok, 1 help, 2 usage error); on 0, *a is filled. */
static int parse(struct cli_args *a, char **words, int n)
{
    size_t used;
    const struct cli_verb *verb = cli_find_verb(n, words, &used);
    assert_non_null(verb);
    /* the messages of a usage error or of --help are not this test's output */
    fflush(stdout);
    fflush(stderr);
    int saved_out = dup(STDOUT_FILENO), saved_err = dup(STDERR_FILENO);
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    assert_true(saved_out >= 0 && saved_err >= 0 && null >= 0);
    dup2(null, STDOUT_FILENO);
    dup2(null, STDERR_FILENO);
    int r = cli_parse(verb, n - (int)used + 1, words + used - 1, a);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, STDOUT_FILENO);
    dup2(saved_err, STDERR_FILENO);
    close(saved_out);
    close(saved_err);
    close(null);
    return r;
}

#define WORDS(...) ((char *[]){__VA_ARGS__}), (int)(sizeof((char *[]){__VA_ARGS__}) / sizeof(char *))

static void test_value_forms(void **state)
{
    (void)state;
    struct cli_args a;
    assert_int_equal(parse(&a, WORDS("stop", "--timeout=5", "c")), 0);
    assert_string_equal(cli_value(&a, "timeout"), "5");
    assert_string_equal(a.argv[0], "c");
    cli_args_free(&a);
    assert_int_equal(parse(&a, WORDS("stop", "c", "--timeout", "7", "--kill")), 0);
    assert_string_equal(cli_value(&a, "timeout"), "7");
    assert_true(cli_flag(&a, "kill"));
    assert_int_equal(a.argc, 1);
    cli_args_free(&a);
    assert_int_equal(parse(&a, WORDS("stop", "-kt3", "c")), 0);
    assert_string_equal(cli_value(&a, "timeout"), "3");
    assert_true(cli_flag(&a, "kill"));
    cli_args_free(&a);
}

static void test_repeatable_in_order(void **state)
{
    (void)state;
    struct cli_args a;
    assert_int_equal(parse(&a, WORDS("device", "cert", "install", "--chain=a.pem", "leaf.pem", "--chain", "b.pem")), 0);
    char *v[4];
    assert_int_equal(cli_values(&a, "chain", v, 4), 2);
    assert_string_equal(v[0], "a.pem");
    assert_string_equal(v[1], "b.pem");
    assert_string_equal(a.argv[0], "leaf.pem");
    cli_args_free(&a);
}

static void test_usage_errors(void **state)
{
    (void)state;
    struct cli_args a;
    assert_int_equal(parse(&a, WORDS("stop", "--bogus", "c")), 2);
    assert_int_equal(parse(&a, WORDS("stop", "c", "--timeout")), 2);
    assert_int_equal(parse(&a, WORDS("stop", "--kill=yes", "c")), 2);
    assert_int_equal(parse(&a, WORDS("stop")), 2);
    assert_int_equal(parse(&a, WORDS("stop", "a", "b")), 2);
    assert_int_equal(parse(&a, WORDS("config", "--json", "c")), 2);
    assert_int_equal(parse(&a, WORDS("stop", "--help")), 1);
    assert_int_equal(parse(&a, WORDS("device", "info", "-h")), 1);
}

static void test_options_first_verbs(void **state)
{
    (void)state;
    struct cli_args a;
    /* run: what follows the container is the command, options and "--" included */
    assert_int_equal(parse(&a, WORDS("run", "-t", "-eA=1", "box", "--", "sh", "-c", "x")), 0);
    assert_true(cli_flag(&a, "tty"));
    assert_string_equal(cli_value(&a, "env"), "A=1");
    assert_int_equal(a.argc, 5);
    assert_string_equal(a.argv[1], "--");
    cli_args_free(&a);
    assert_int_equal(parse(&a, WORDS("run", "box", "ls", "-l")), 0);
    assert_false(cli_flag(&a, "tty"));
    assert_string_equal(a.argv[2], "-l");
    cli_args_free(&a);
    /* exec kill: a "-9" after the container is the signal */
    assert_int_equal(parse(&a, WORDS("exec", "kill", "box", "3", "-9")), 0);
    assert_int_equal(a.argc, 3);
    assert_string_equal(a.argv[2], "-9");
    cli_args_free(&a);
}

static void test_find_verb(void **state)
{
    (void)state;
    size_t used;
    const struct cli_verb *v = cli_find_verb(4, (char *[]){"device", "cert", "install", "x"}, &used);
    assert_non_null(v);
    assert_string_equal(v->name, "device cert install");
    assert_int_equal(used, 3);
    assert_null(cli_find_verb(2, (char *[]){"device", "cert"}, &used));
    assert_int_equal(used, 2); /* a group: "device cert" */
    assert_null(cli_find_verb(1, (char *[]){"frobnicate"}, &used));
    assert_int_equal(used, 0);
    v = cli_find_verb(2, (char *[]){"exec", "list"}, &used);
    assert_non_null(v);
    assert_string_equal(v->name, "exec list");
    assert_int_equal(used, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_value_forms),  cmocka_unit_test(test_repeatable_in_order),
        cmocka_unit_test(test_usage_errors), cmocka_unit_test(test_options_first_verbs),
        cmocka_unit_test(test_find_verb),
    };
    return cmocka_run_group_tests_name("cli_args", tests, NULL, NULL);
}
