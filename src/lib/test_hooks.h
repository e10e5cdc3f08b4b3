/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Crash points for the tests: only in a build with -Dtest_hooks=true (docs/TESTING.md,
 * "Crash points"); otherwise test_crash_point compiles to nothing.
 *
 * test_crash_point(dir, name): if the file <dir>/test-crash-at holds name (one line), it is
 * removed and the process kills itself with SIGKILL, exactly there. The test writes the file
 * into the directory the process names (trustmed: its data dir; scd: its state dir), starts the
 * operation, and sees the process die at that step; the file being one-shot, the restarted
 * process goes on normally. */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#ifdef TM_TEST_HOOKS
void test_crash_point(const char *dir, const char *name);
/* In a worker process that does one of trustmed's steps: the crash points it meets from now on
 * kill pid (trustmed) first, then itself, as if the step still ran in trustmed. */
void test_crash_also(pid_t pid);
/* Whether the file <dir>/<name> exists: a test's request to take an old code path (e.g. make a
 * key blob as a release from before would), so that the path that reads it is tested. */
bool test_flag(const char *dir, const char *name);
#else
static inline void test_crash_point(const char *dir, const char *name)
{
    (void)dir;
    (void)name;
}
static inline void test_crash_also(pid_t pid)
{
    (void)pid;
}
static inline bool test_flag(const char *dir, const char *name)
{
    (void)dir;
    (void)name;
    return false;
}
#endif
