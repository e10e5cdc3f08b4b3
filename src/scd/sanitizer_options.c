/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Built into trustme-scd only in an AddressSanitizer build (src/scd/meson.build; scripts/ci-sanitize.sh).
 *
 * trustmed starts scd in a root of its own that has no /proc (scd_sandbox.c), with an environment
 * reduced to the PKCS#11 variables, so ASAN_OPTIONS cannot reach it: its defaults are set here.
 * LeakSanitizer needs /proc/self/task to stop the threads for its scan; without it every exit of scd
 * would end in "LeakSanitizer has encountered a fatal error" and exit status 1 instead of a report.
 * Leak checking is therefore off for scd by default; its code is leak-checked where it runs with
 * /proc: the unit tests (test_token_*, test_keywrap), the fuzzers (fuzz_scd_request) and a
 * standalone scd with ASAN_OPTIONS=detect_leaks=1 (the environment still overrides this). Every
 * other check of ASan and UBSan stays on. */
const char *__asan_default_options(void);

const char *__asan_default_options(void)
{
    return "detect_leaks=0";
}
