/* SPDX-License-Identifier: GPL-2.0-or-later */
/* scd's errno values carry meaning (token.h: -EACCES is a wrong PIN, -EPERM a locked token).
 * A state file that cannot be read or written is neither: calls on files go through fs_err,
 * which reports those two as -EIO and keeps the message ("... Permission denied"). */
#pragma once

#include <errno.h>

#include "error.h"

static inline int fs_err(int r, tm_err *err)
{
    if (r != -EACCES && r != -EPERM)
        return r;
    if (err)
        err->code = EIO;
    return -EIO;
}
