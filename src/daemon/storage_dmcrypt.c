#include "storage_dmcrypt.h"

#include <errno.h>
#include <unistd.h>

int dmcrypt_available(tm_err *err)
{
    if (access("/dev/mapper/control", F_OK) < 0)
        return tm_err_set(err, ENODEV, "this kernel has no device-mapper (/dev/mapper/control is "
                          "missing), so dm-crypt cannot be used; use \"fscrypt\"");
    return tm_err_set(err, EOPNOTSUPP, "the dm-crypt backend is not built in yet");
}
