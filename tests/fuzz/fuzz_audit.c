/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The audit log reader: tm_audit_verify over a whole log and tm_audit_parse_line per line.
 *
 * Random bytes almost never carry a matching SHA-256, which would keep the fuzzer in front of the
 * hash check. So the first byte chooses a mode: even = verify the input as it is; odd = treat
 * each input line as a record body, append the hash the writer would append, and verify that
 * log, which reaches the JSON, seq and prev checks. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "crypto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void verify(const char *log, size_t len)
{
    tm_audit_report rep;
    int r = tm_audit_verify(log, len, &rep);
    size_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += log[i] == '\n';
    if (r == 0 && (rep.records != lines || rep.bad_line != 0 || rep.last_seq != rep.records))
        abort();
    if (r < 0 && (rep.bad_line == 0 || rep.bad_line != rep.records + 1 || !rep.problem[0]))
        abort();
}

static void parse_lines(const char *log, size_t len)
{
    size_t pos = 0;
    while (pos < len) {
        const char *nl = memchr(log + pos, '\n', len - pos);
        size_t l = nl ? (size_t)(nl - (log + pos)) : len - pos;
        tm_audit_record rec;
        char problem[64];
        tm_audit_parse_line(log + pos, l, &rec, problem, sizeof(problem));
        pos += l + 1;
    }
}

/* body "{...}" -> body without '}' + ,"hash":"<sha256 of body>"} */
static size_t seal(const char *body, size_t len, char *out)
{
    char hash[TM_SHA256_HEX_LEN + 1];
    if (len == 0 || tm_sha256_hex(body, len, hash) < 0)
        return 0;
    memcpy(out, body, len - 1);
    int n = sprintf(out + len - 1, ",\"hash\":\"%s\"}\n", hash);
    return len - 1 + (size_t)n;
}

static void verify_sealed(const char *in, size_t len)
{
    char *log = malloc(len + 80 * (len + 1));
    if (!log)
        return;
    size_t pos = 0, out = 0;
    while (pos < len) {
        const char *nl = memchr(in + pos, '\n', len - pos);
        size_t l = nl ? (size_t)(nl - (in + pos)) : len - pos;
        out += seal(in + pos, l, log + out);
        pos += l + 1;
    }
    verify(log, out);
    parse_lines(log, out);
    free(log);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *log = (const char *)data + 1;
    size_t len = size - 1;
    if (data[0] & 1) {
        verify_sealed(log, len);
    } else {
        verify(log, len);
        parse_lines(log, len);
    }
    return 0;
}
