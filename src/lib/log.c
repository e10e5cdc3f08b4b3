/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>

static const char *log_ident = "trustme";
static bool log_syslog;
static bool log_journal; /* stderr is systemd-journald's stream: "<N>" prefixes, no timestamps */
static enum tm_log_level log_level = TM_LOG_INFO;

void tm_log_init(const char *ident, bool use_syslog, enum tm_log_level level)
{
    log_ident = ident;
    log_syslog = use_syslog;
    log_level = level;
    /* $JOURNAL_STREAM ("device:inode") names the stream journald gave as stderr; only when
     * stderr is still that stream (not redirected since) does it read our prefixes. */
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    log_journal =
        js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(2, &st) == 0 && st.st_dev == dev && st.st_ino == ino;
    if (use_syslog) /* glibc opens the syslog socket with SOCK_CLOEXEC */
        openlog(ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

int tm_log_parse_level(const char *s, enum tm_log_level *ret)
{
    static const struct {
        const char *name;
        enum tm_log_level level;
    } names[] = {{"error", TM_LOG_ERROR}, {"warn", TM_LOG_WARN}, {"info", TM_LOG_INFO}, {"debug", TM_LOG_DEBUG}};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(s, names[i].name) == 0) {
            *ret = names[i].level;
            return 0;
        }
    return -EINVAL;
}

/* fmt is checked where tm_log and tm_log_ratelimited are called (log.h). */
static void vlog(enum tm_log_level level, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

void tm_log(enum tm_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(level, fmt, ap);
    va_end(ap);
}

void tm_log_ratelimited(tm_ratelimit *rl, enum tm_log_level level, const char *fmt, ...)
{
    if (level > log_level)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t now = (uint64_t)ts.tv_sec;
    unsigned interval = rl->interval_s ? rl->interval_s : 10;
    if (rl->window_start == 0 || now - rl->window_start >= interval) {
        if (rl->suppressed)
            tm_log(level, "(%u similar messages left out in the last %u s)", rl->suppressed,
                   (unsigned)(now - rl->window_start));
        rl->window_start = now ? now : 1;
        rl->logged = rl->suppressed = 0;
    }
    if (rl->logged >= (rl->burst ? rl->burst : 5)) {
        rl->suppressed++;
        return;
    }
    rl->logged++;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, fmt, ap);
    va_end(ap);
}

static void vlog(enum tm_log_level level, const char *fmt, va_list ap)
{
    if (level > log_level)
        return;
    int saved = errno;
    if (log_syslog) {
        vsyslog((int)level, fmt, ap);
    } else {
        static const char *tags[] = {
            [TM_LOG_ERROR] = "error", [TM_LOG_WARN] = "warning", [TM_LOG_INFO] = "info", [TM_LOG_DEBUG] = "debug"};
        if (log_journal) {
            /* sd-daemon(3): the priority as "<N>"; journald keeps the time and the process. */
            char line[2048];
            int n = snprintf(line, sizeof(line), "<%d>%s: ", (int)level, log_ident);
            if (n > 0 && (size_t)n < sizeof(line))
                vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
            fprintf(stderr, "%s\n", line);
            errno = saved;
            return;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        char line[2048];
        int n = snprintf(line, sizeof(line), "%02d:%02d:%02d.%03ld %s %s: ", tm.tm_hour, tm.tm_min, tm.tm_sec,
                         ts.tv_nsec / 1000000, log_ident, tags[level] ? tags[level] : "log");
        if (n > 0 && (size_t)n < sizeof(line))
            vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
        fprintf(stderr, "%s\n", line);
    }
    errno = saved;
}
