/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdbool.h>

#define TM_UUID_STR_LEN 36

/* A random (version 4) UUID in its 36-character text form. */
int tm_uuid_new(char out[TM_UUID_STR_LEN + 1]);
bool tm_uuid_valid(const char *s);
