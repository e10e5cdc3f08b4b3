/* SPDX-License-Identifier: GPL-2.0-or-later */
/* For bench/hash_throughput.sh: hashes files the way trustmed verifies a GuestOS image
 * (tm_sha256_fd) and prints their digests in sha256sum's format, so the script can compare them.
 *
 *   hash_helper [--nettle] FILE...     --nettle: force nettle (NETTLE_FAT_OVERRIDE= in the
 *                                      environment: nettle without CPU extensions)
 *   hash_helper --impl                 prints the implementation this CPU gets ("sha-ni", "nettle")
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "crypto.h"

int main(int argc, char **argv)
{
    int i = 1;
    if (argc == 2 && strcmp(argv[1], "--impl") == 0) {
        printf("%s\n", tm_sha256_impl());
        return 0;
    }
    if (i < argc && strcmp(argv[i], "--nettle") == 0) {
        tm_sha256_force_nettle(true);
        i++;
    }
    if (i >= argc) {
        fprintf(stderr, "usage: %s [--nettle] FILE... | --impl\n", argv[0]);
        return 2;
    }
    int rc = 0;
    for (; i < argc; i++) {
        int fd = open(argv[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            fprintf(stderr, "%s: cannot open %s: %m\n", argv[0], argv[i]);
            rc = 1;
            continue;
        }
        uint8_t md[32];
        char hex[TM_SHA256_HEX_LEN + 1];
        tm_err err = {0};
        if (tm_sha256_fd(fd, md, NULL, NULL, NULL, &err) < 0) {
            fprintf(stderr, "%s: %s: %s\n", argv[0], argv[i], err.msg);
            rc = 1;
        } else {
            tm_hex(md, sizeof(md), hex);
            printf("%s  %s\n", hex, argv[i]);
        }
        close(fd);
    }
    return rc;
}
