/* A strict RFC 8259 check run before json-c parses a document. json-c is lenient where a
 * security-relevant config must not be: it keeps the last of duplicate keys (so two parsers could
 * read one signed file differently), accepts single quotes, raw control characters in strings,
 * Infinity/NaN and numbers like "1.". This scanner rejects all of that and names the JSON path. */
#pragma once

#include <stddef.h>

#include "error.h"

int tm_json_strict_check(const char *data, size_t len, tm_err *err);
