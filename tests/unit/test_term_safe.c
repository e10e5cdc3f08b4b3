/* SPDX-License-Identifier: GPL-2.0-or-later */
/* term_escape(): printable UTF-8, newline and tab pass; controls, DEL, C1, bidi controls and
 * bytes that are not UTF-8 are shown; a sequence cut between two writes is kept whole. And the
 * terminal-mode tracker of run -t resets only what a session left switched on. */
#include "unit.h"

#include <string.h>

#include "term_safe.h"

static void check(const char *in, size_t len, const char *want)
{
    struct term_escaper e = {0};
    char out[512];
    size_t n = term_escape(&e, in, len, out, true);
    out[n] = '\0';
    if (strcmp(out, want) != 0)
        print_error("got \"%s\", want \"%s\"\n", out, want);
    assert_string_equal(out, want);
}

static void escapes(void **state)
{
    (void)state;
    check("plain text\twith tab\n", 20, "plain text\twith tab\n");
    check("\x1b]0;t\x07", 6, "\\u001b]0;t\\u0007");
    check("a\rb\x7f", 4, "a\\u000db\\u007f");
    check("\xc3\xa4\xe2\x82\xac\xf0\x9f\x98\x80", 9, "\xc3\xa4\xe2\x82\xac\xf0\x9f\x98\x80");
    check("\xc2\x9b"
          "2J",
          4, "\\u009b2J"); /* 8-bit CSI */
    check("\xe2\x80\xae"
          "abc",
          6, "\\u202eabc"); /* right-to-left override */
    check("x\xffy\xc0\xaf", 5, "x\\xffy\\xc0\\xaf"); /* not UTF-8, overlong */
    check("\xed\xa0\x80", 3, "\\xed\\xa0\\x80"); /* surrogate */
    check("\xe2\x82", 2, "\\xe2\\x82"); /* cut at the very end */
    check("\0", 1, "\\u0000");
}

static void split_sequence_is_kept(void **state)
{
    (void)state;
    struct term_escaper e = {0};
    char out[64];
    size_t n = term_escape(&e, "a\xe2\x82", 3, out, false);
    assert_int_equal(n, 1);
    n = term_escape(&e,
                    "\xac"
                    "b",
                    2, out, false);
    out[n] = '\0';
    assert_string_equal(out, "\xe2\x82\xac"
                             "b");
    n = term_escape(&e, "\xc2", 1, out, false);
    assert_int_equal(n, 0);
    n = term_escape(&e, "\x9b", 1, out, false); /* completes a C1 control */
    out[n] = '\0';
    assert_string_equal(out, "\\u009b");
    n = term_escape(&e, "\xe2", 1, out, false);
    n = term_escape(&e, "x", 1, out, false); /* not a continuation after all */
    out[n] = '\0';
    assert_string_equal(out, "\\xe2x");
}

static void modes_left_on_are_reset(void **state)
{
    (void)state;
    struct term_modes m = {0};
    char seq[512];
    const char *out = "\x1b[?1049h\x1b[?1000;1006h\x1b[?25l"
                      "text \x1b[1;31m"
                      "\x1b[?1006l";
    /* fed in pieces, cut inside the sequences */
    for (size_t i = 0; i < strlen(out); i += 3)
        term_track(&m, out + i, strlen(out) - i < 3 ? strlen(out) - i : 3);
    term_reset_sequence(&m, seq, sizeof(seq));
    assert_string_equal(seq, "\x1b[?1049l\x1b[?1000l\x1b[?25h");
    struct term_modes clean = {0};
    const char *tidy = "\x1b[?2004h\x1b[?2004l\x1b[?7l\x1b[?7h";
    term_track(&clean, tidy, strlen(tidy));
    assert_int_equal(term_reset_sequence(&clean, seq, sizeof(seq)), 0);
    struct term_modes ris = {0};
    const char *reset = "\x1b[?1049h\x1b"
                        "c"; /* a full reset leaves nothing to do */
    term_track(&ris, reset, strlen(reset));
    assert_int_equal(term_reset_sequence(&ris, seq, sizeof(seq)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(escapes),
        cmocka_unit_test(split_sequence_is_kept),
        cmocka_unit_test(modes_left_on_are_reset),
    };
    return cmocka_run_group_tests_name("term_safe", tests, NULL, NULL);
}
