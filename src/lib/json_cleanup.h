/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Scope-bound release of jansson values, in the style of cleanup.h. */
#pragma once

#include <jansson.h>

#include "cleanup.h"

/* json_decrefp comes with jansson.h (it also defines json_auto_t with it). */
#define _cleanup_json_ _cleanup_(json_decrefp)

/* Compact ("a":1,"b":2, no spaces): audit records, runtime.json, install.json, token files, the
 * verifier's report; byte for byte what json-c wrote with PLAIN | NOSLASHESCAPE except that \u
 * escapes of control characters have upper-case hex. jansson never escapes "/" (base64 is full
 * of it) unless asked to with JSON_ESCAPE_SLASH. */
#define JSON_FORMAT_FLAGS JSON_COMPACT
/* Indented by two spaces, "key": value: guestos.json, reference values, pki.json, state.json,
 * the leases, the CLI's --json. json-c's PRETTY | SPACED (guestos.json, reference values) wrote
 * the same but for empty arrays and objects ("[\n  ]" where jansson writes "[]"); the others
 * were PRETTY alone, without the space after the colon. */
#define JSON_PRETTY_FLAGS JSON_INDENT(2)
