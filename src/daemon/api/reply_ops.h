/* SPDX-License-Identifier: GPL-2.0-or-later */
/* api/'s side of reply.h: answers go to the connection they belong to (reply_ops.c). */
#pragma once

#include "reply.h"

extern const struct reply_ops control_reply_ops;
