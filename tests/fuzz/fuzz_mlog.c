/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The measurement log's line parser (src/tpmd/mlog.c) on arbitrary bytes, one line per input
 * line as tpmd reads <run>/measurements.log at start: no crash, and what parses is an event the
 * rest of trustme accepts (tm_event_check) that formats back to a line parsing to the same
 * event. The replay and reconciliation then run over whatever parsed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mlog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct mlog_event events[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t n = 0, off = 0;
    while (off < size && n < sizeof(events) / sizeof(events[0])) {
        const uint8_t *nl = memchr(data + off, '\n', size - off);
        size_t len = nl ? (size_t)(nl - (data + off)) : size - off;
        struct mlog_event ev;
        if (mlog_parse_line((const char *)data + off, len, n, &ev, NULL) < 0)
            break; /* tpmd stops at the first bad line too */
        if (ev.seq != n || tm_event_check(ev.pcr, ev.type, ev.name, 32, NULL) < 0)
            abort();
        char line[MLOG_LINE_MAX];
        size_t flen = mlog_format_line(&ev, line);
        struct mlog_event again;
        if (flen == 0 || line[flen - 1] != '\n' || mlog_parse_line(line, flen - 1, n, &again, NULL) < 0 ||
            again.pcr != ev.pcr || strcmp(again.type, ev.type) != 0 || strcmp(again.name, ev.name) != 0 ||
            memcmp(again.sha256, ev.sha256, 32) != 0)
            abort();
        events[n++] = ev;
        off += len + 1;
    }
    uint8_t values[MLOG_PCRS][32] = {{0}};
    uint32_t mask = mlog_pcr_mask(events, n);
    for (uint32_t pcr = 0; pcr < MLOG_PCRS; pcr++)
        if (mask & (1u << pcr))
            mlog_replay(events, n, pcr, values[pcr]);
    int pcr = -1;
    /* The log replays to the values it was replayed into. */
    if (mlog_reconcile(events, n, mask, (const uint8_t(*)[32])values, &pcr) != (n ? MLOG_CONSISTENT : MLOG_FRESH) &&
        n > 0)
        abort();
    return 0;
}
