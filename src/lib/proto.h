/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The control protocol's generated types plus helpers to put them into frames. */
#pragma once

#include "buf.h"
#include "control.pb-c.h"

#define TM_PROTOCOL_VERSION 1u

/* Serialize msg into out as one frame. 0 or -errno. */
int tm_proto_append(tm_buf *out, const ProtobufCMessage *msg);
