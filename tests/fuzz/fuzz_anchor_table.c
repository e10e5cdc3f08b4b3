/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The anchor table file's parser (src/tpmd/anchor.c, anchor_parse) on arbitrary bytes, placed
 * right before an inaccessible page: a read past the end faults even inside libc, where ASan
 * does not look (anchor_load's buffer is NUL-terminated; the parser must not rely on it). The file sits in tpmd's data dir, which root on the device or a copy of the disk can
 * edit; the TPM's digest makes anchor_load refuse an edited table before parsing, but the
 * parser is not to depend on that. No crash, no
 * leak, and a table that parses keeps the promises anchor.h makes: valid names, sorted and
 * unique, values within ANCHOR_VALUE_MAX. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "anchor.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE), span = (size + pg - 1) / pg * pg + pg;
    uint8_t *map = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED)
        abort();
    if (mprotect(map + span - pg, pg, PROT_NONE) < 0)
        abort();
    char *buf = (char *)map + span - pg - size;
    memcpy(buf, data, size);
    struct anchor_table t = {0};
    tm_err err = {0};
    int r = anchor_parse(buf, size, &t, &err);
    if (r < 0) {
        if (!err.msg[0] || t.e || t.n || t.loaded)
            abort();
    } else {
        if (!t.loaded || t.n > ANCHOR_ENTRIES_MAX)
            abort();
        for (size_t i = 0; i < t.n; i++) {
            if (anchor_check_name(t.e[i].name, NULL) < 0 || t.e[i].len > ANCHOR_VALUE_MAX ||
                (i > 0 && strcmp(t.e[i - 1].name, t.e[i].name) >= 0) || anchor_find(&t, t.e[i].name) != &t.e[i])
                abort();
        }
        anchor_free(&t);
    }
    munmap(map, span);
    return 0;
}
