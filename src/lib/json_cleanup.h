/* Scope-bound release of json-c objects, in the style of cleanup.h. */
#pragma once

#include <json-c/json.h>

#include "cleanup.h"

static inline void json_object_putp(json_object **o)
{
    if (*o)
        json_object_put(*o);
}
#define _cleanup_json_ _cleanup_(json_object_putp)

/* Compact, and without json-c's escaping of "/", which base64 is full of. */
#define JSON_FORMAT_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
