/* Scope-bound release of jansson values, in the style of cleanup.h. */
#pragma once

#include <jansson.h>

#include "cleanup.h"

/* json_decrefp comes with jansson.h (it also defines json_auto_t with it). */
#define _cleanup_json_ _cleanup_(json_decrefp)

/* Compact ("a":1,"b":2, no spaces), as every machine-read file trustme writes. jansson never
 * escapes "/" (base64 is full of it) unless asked to with JSON_ESCAPE_SLASH. */
#define JSON_FORMAT_FLAGS JSON_COMPACT
/* Indented by two spaces for people, "key": value. */
#define JSON_PRETTY_FLAGS JSON_INDENT(2)
