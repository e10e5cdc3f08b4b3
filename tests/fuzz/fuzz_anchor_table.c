/* The anchor table file's parser (src/tpmd/anchor.c, anchor_parse) on arbitrary bytes, as
 * anchor_load hands it the file read_file read (NUL-terminated). The file sits in tpmd's data
 * dir, which root on the device or a copy of the disk can edit; the TPM's digest makes anchor_load
 * refuse an edited table before parsing, but the parser is not to depend on that. No crash, no
 * leak, and a table that parses keeps the promises anchor.h makes: valid names, sorted and
 * unique, values within ANCHOR_VALUE_MAX. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "anchor.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
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
                (i > 0 && strcmp(t.e[i - 1].name, t.e[i].name) >= 0) ||
                anchor_find(&t, t.e[i].name) != &t.e[i])
                abort();
        }
        anchor_free(&t);
    }
    free(buf);
    return 0;
}
