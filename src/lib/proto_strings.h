/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Every string of a protobuf message is text: no NUL byte, valid UTF-8 (docs/PROTOCOL.md).
 *
 * protobuf-c hands strings over NUL-terminated and checks neither, so "rel-w\0junk" would act on
 * rel-w. The check walks the wire bytes by the message's descriptor, recursing into
 * sub-messages, so that every request (and every field added later) gets it without code of its
 * own; bytes fields stay bytes. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "error.h"

/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF. With
 * allow_nul false a NUL byte is refused too. On failure *ret_bad (if given) is the offset of
 * the first bad byte. */
bool tm_utf8_valid(const uint8_t *s, size_t len, bool allow_nul, size_t *ret_bad);
/* Check every string field of the message desc encoded in data (already known to unpack).
 * Returns 0, or -EINVAL with err naming the field ("run.argv[1]") and what is wrong. */
int tm_proto_check_strings(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len, tm_err *err);
