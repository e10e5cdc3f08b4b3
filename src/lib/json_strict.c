#include "json_strict.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 32
#define MAX_KEYS 512 /* more than any config object may have (env: 256) */
#define PATH_MAX_LEN 256

struct scan {
    const char *p, *end;
    const char *start;
    char path[PATH_MAX_LEN];
    tm_err *err;
};

static int fail(struct scan *s, const char *what)
{
    if (s->p >= s->end)
        what = "document ends in the middle of a value";
    return tm_err_set(s->err, EINVAL, "%s: %s at byte %zu", s->path[0] ? s->path : "$", what,
                      (size_t)(s->p - s->start));
}

static void skip_ws(struct scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(char *out, unsigned cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlong forms, no surrogates,
 * nothing above U+10FFFF), or 0. RFC 8259 requires UTF-8, and a byte string that decodes
 * differently in another parser (or as a terminal control) has no place in a config. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    size_t n;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (p[0] >= 0xC2 && p[0] <= 0xDF) {
        n = 2;
    } else if (p[0] >= 0xE0 && p[0] <= 0xEF) {
        n = 3;
        if (p[0] == 0xE0)
            lo = 0xA0; /* overlong */
        else if (p[0] == 0xED)
            hi = 0x9F; /* UTF-16 surrogates */
    } else if (p[0] >= 0xF0 && p[0] <= 0xF4) {
        n = 4;
        if (p[0] == 0xF0)
            lo = 0x90; /* overlong */
        else if (p[0] == 0xF4)
            hi = 0x8F; /* above U+10FFFF */
    } else {
        return 0; /* a continuation byte, C0/C1 (overlong), F5..FF */
    }
    if ((size_t)(end - p) < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return n;
}

/* Scan a string at s->p (on the opening quote). If out is given, store the decoded string (so
 * that "a" and "\u0061" compare equal as keys); *out_len is its length. */
static int scan_string(struct scan *s, char **out, size_t *out_len)
{
    s->p++; /* opening quote */
    char *buf = NULL;
    size_t n = 0, cap = 0;
    int r = 0;
    while (r == 0) {
        if (s->p >= s->end) {
            r = fail(s, "unterminated string");
            break;
        }
        unsigned char c = (unsigned char)*s->p;
        char enc[4];
        size_t elen = 0;
        if (c == '"') {
            s->p++;
            break;
        } else if (c < 0x20) {
            r = fail(s, "control character in a string (escape it)");
        } else if (c == '\\') {
            if (s->p + 1 >= s->end) {
                r = fail(s, "unterminated escape");
                break;
            }
            char e = s->p[1];
            const char *simple = strchr("\"\\/bfnrt", e);
            if (e && simple) {
                static const char map[] = "\"\\/\b\f\n\r\t";
                enc[0] = map[simple - "\"\\/bfnrt"];
                elen = 1;
                s->p += 2;
            } else if (e == 'u') {
                unsigned cp, lo;
                if (s->end - s->p < 6 || hex4(s->p + 2, &cp) < 0) {
                    r = fail(s, "bad \\u escape");
                    break;
                }
                s->p += 6;
                if (cp >= 0xD800 && cp <= 0xDBFF) { /* a surrogate pair must follow */
                    if (s->end - s->p < 6 || s->p[0] != '\\' || s->p[1] != 'u' ||
                        hex4(s->p + 2, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF) {
                        r = fail(s, "unpaired surrogate in a \\u escape");
                        break;
                    }
                    s->p += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    r = fail(s, "unpaired surrogate in a \\u escape");
                    break;
                }
                elen = put_utf8(enc, cp);
            } else {
                r = fail(s, "unknown escape");
            }
        } else if (c < 0x80) {
            enc[0] = (char)c;
            elen = 1;
            s->p++;
        } else if ((elen = utf8_len((const unsigned char *)s->p, (const unsigned char *)s->end)) == 0) {
            r = fail(s, "invalid UTF-8 in a string");
        } else {
            memcpy(enc, s->p, elen);
            s->p += elen;
        }
        if (r == 0 && out) {
            if (n + elen + 1 > cap) {
                cap = cap ? cap * 2 : 32;
                char *nb = realloc(buf, cap);
                if (!nb) {
                    r = tm_err_set(s->err, ENOMEM, "out of memory");
                    break;
                }
                buf = nb;
            }
            memcpy(buf + n, enc, elen);
            n += elen;
        }
    }
    if (r < 0 || !out) {
        free(buf);
        return r;
    }
    if (!buf && !(buf = calloc(1, 1)))
        return tm_err_set(s->err, ENOMEM, "out of memory");
    buf[n] = '\0';
    *out = buf;
    *out_len = n;
    return 0;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* json-c silently saturates integers beyond int64: refuse them here, where the digits are. */
static bool fits_int64(const char *digits, size_t n, bool negative)
{
    const char *limit = negative ? "9223372036854775808" : "9223372036854775807";
    size_t ln = strlen(limit);
    return n < ln || (n == ln && memcmp(digits, limit, n) <= 0);
}

static int scan_number(struct scan *s)
{
    bool negative = s->p < s->end && *s->p == '-';
    if (negative)
        s->p++;
    if (s->p >= s->end || !is_digit(*s->p))
        return fail(s, "bad number");
    const char *digits = s->p;
    if (*s->p == '0')
        s->p++;
    else
        while (s->p < s->end && is_digit(*s->p))
            s->p++;
    bool integer = s->p >= s->end || (*s->p != '.' && *s->p != 'e' && *s->p != 'E');
    if (integer && !fits_int64(digits, (size_t)(s->p - digits), negative))
        return fail(s, "integer out of range");
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        if (s->p >= s->end || !is_digit(*s->p))
            return fail(s, "digits must follow a decimal point");
        while (s->p < s->end && is_digit(*s->p))
            s->p++;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
            s->p++;
        if (s->p >= s->end || !is_digit(*s->p))
            return fail(s, "bad exponent");
        while (s->p < s->end && is_digit(*s->p))
            s->p++;
    }
    return 0;
}

static int scan_value(struct scan *s, int depth);

/* The path grows while a member is scanned; callers cut it back to a saved length. */
static void path_key(struct scan *s, const char *key)
{
    size_t used = strlen(s->path);
    snprintf(s->path + used, sizeof(s->path) - used, ".%s", key);
}

static void path_index(struct scan *s, size_t index)
{
    size_t used = strlen(s->path);
    snprintf(s->path + used, sizeof(s->path) - used, "[%zu]", index);
}

static int scan_object(struct scan *s, int depth)
{
    s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
        return 0;
    }
    char *keys[MAX_KEYS];
    size_t nkeys = 0, base = strlen(s->path);
    int r = 0;
    for (;;) {
        skip_ws(s);
        if (s->p >= s->end || *s->p != '"') {
            r = fail(s, "expected a key in double quotes");
            break;
        }
        char *key;
        size_t klen;
        if ((r = scan_string(s, &key, &klen)) < 0)
            break;
        if (strlen(key) != klen) {
            free(key);
            r = fail(s, "NUL character in a key");
            break;
        }
        path_key(s, key);
        for (size_t i = 0; i < nkeys; i++)
            if (strcmp(keys[i], key) == 0) {
                r = tm_err_set(s->err, EINVAL, "%s: key appears more than once", s->path);
                break;
            }
        if (r < 0 || nkeys == MAX_KEYS) {
            if (r == 0)
                r = fail(s, "too many keys");
            free(key);
            break;
        }
        keys[nkeys++] = key;
        skip_ws(s);
        if (s->p >= s->end || *s->p != ':') {
            r = fail(s, "expected ':' after the key");
            break;
        }
        s->p++;
        if ((r = scan_value(s, depth + 1)) < 0)
            break;
        s->path[base] = '\0';
        skip_ws(s);
        if (s->p < s->end && *s->p == ',') {
            s->p++;
            continue;
        }
        if (s->p < s->end && *s->p == '}') {
            s->p++;
            break;
        }
        r = fail(s, "expected ',' or '}'");
        break;
    }
    for (size_t i = 0; i < nkeys; i++)
        free(keys[i]);
    return r;
}

static int scan_array(struct scan *s, int depth)
{
    s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == ']') {
        s->p++;
        return 0;
    }
    size_t base = strlen(s->path);
    for (size_t i = 0;; i++) {
        path_index(s, i);
        int r = scan_value(s, depth + 1);
        if (r < 0)
            return r;
        s->path[base] = '\0';
        skip_ws(s);
        if (s->p < s->end && *s->p == ',') {
            s->p++;
            continue;
        }
        if (s->p < s->end && *s->p == ']') {
            s->p++;
            return 0;
        }
        return fail(s, "expected ',' or ']'");
    }
}

static int scan_literal(struct scan *s, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
        return fail(s, "unexpected character");
    s->p += n;
    return 0;
}

static int scan_value(struct scan *s, int depth)
{
    if (depth > MAX_DEPTH)
        return fail(s, "nested too deeply");
    skip_ws(s);
    if (s->p >= s->end)
        return fail(s, "document ends in the middle of a value");
    switch (*s->p) {
    case '{': return scan_object(s, depth);
    case '[': return scan_array(s, depth);
    case '"': return scan_string(s, NULL, NULL);
    case 't': return scan_literal(s, "true");
    case 'f': return scan_literal(s, "false");
    case 'n': return scan_literal(s, "null");
    default:
        if (*s->p == '-' || is_digit(*s->p))
            return scan_number(s);
        return fail(s, "unexpected character");
    }
}

int tm_json_strict_check(const char *data, size_t len, tm_err *err)
{
    struct scan s = {.p = data, .end = data + len, .start = data, .path = "$", .err = err};
    int r = scan_value(&s, 0);
    if (r < 0)
        return r;
    skip_ws(&s);
    if (s.p != s.end)
        return fail(&s, "unexpected data after the JSON value");
    return 0;
}
