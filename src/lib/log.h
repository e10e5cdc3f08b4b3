/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Logging to stderr (default) or syslog; on stderr with timestamps, or, when $JOURNAL_STREAM says
 * stderr is systemd-journald's, with sd-daemon priority prefixes ("<3>") instead. Log where a
 * decision is made, not in every helper. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

enum tm_log_level { TM_LOG_ERROR = 3, TM_LOG_WARN = 4, TM_LOG_INFO = 6, TM_LOG_DEBUG = 7 };

void tm_log_init(const char *ident, bool use_syslog, enum tm_log_level level);
int tm_log_parse_level(const char *s, enum tm_log_level *ret);
void tm_log(enum tm_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A rate limit for a log line that others can cause at will (refused connections, evictions):
 * at most burst lines per interval_s, then one line saying how many were left out. Zero-
 * initialise; one per kind of message, usually static. */
typedef struct tm_ratelimit {
    unsigned interval_s, burst;
    uint64_t window_start; /* monotonic seconds */
    unsigned logged, suppressed;
} tm_ratelimit;
#define TM_RATELIMIT_INIT(interval, n)         \
    {                                          \
        .interval_s = (interval), .burst = (n) \
    }

/* tm_log, unless rl's budget for this interval is spent. */
void tm_log_ratelimited(tm_ratelimit *rl, enum tm_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_error(...) tm_log(TM_LOG_ERROR, __VA_ARGS__)
#define log_warn(...) tm_log(TM_LOG_WARN, __VA_ARGS__)
#define log_info(...) tm_log(TM_LOG_INFO, __VA_ARGS__)
#define log_debug(...) tm_log(TM_LOG_DEBUG, __VA_ARGS__)
#define log_warn_ratelimited(rl, ...) tm_log_ratelimited((rl), TM_LOG_WARN, __VA_ARGS__)
#define log_info_ratelimited(rl, ...) tm_log_ratelimited((rl), TM_LOG_INFO, __VA_ARGS__)
