/* Logging to stderr (default) or syslog. Log where a decision is made, not in every helper. */
#pragma once

#include <stdbool.h>

enum tm_log_level { TM_LOG_ERROR = 3, TM_LOG_WARN = 4, TM_LOG_INFO = 6, TM_LOG_DEBUG = 7 };

void tm_log_init(const char *ident, bool use_syslog, enum tm_log_level level);
int tm_log_parse_level(const char *s, enum tm_log_level *ret);
void tm_log(enum tm_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) tm_log(TM_LOG_ERROR, __VA_ARGS__)
#define log_warn(...) tm_log(TM_LOG_WARN, __VA_ARGS__)
#define log_info(...) tm_log(TM_LOG_INFO, __VA_ARGS__)
#define log_debug(...) tm_log(TM_LOG_DEBUG, __VA_ARGS__)
