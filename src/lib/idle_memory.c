/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "idle_memory.h"

#include <elf.h>
#include <link.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <unistd.h>

struct range {
    uintptr_t lo, hi;
};

#define SEGMENTS_MAX 16

/* An object with text relocations has written into its read-only segments: not file copies. */
static bool has_textrel(const struct dl_phdr_info *info)
{
    for (size_t i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_DYNAMIC)
            continue;
        for (const ElfW(Dyn) *dyn = (const ElfW(Dyn) *)(info->dlpi_addr + ph->p_vaddr); dyn->d_tag != DT_NULL; dyn++)
            if (dyn->d_tag == DT_TEXTREL || (dyn->d_tag == DT_FLAGS && (dyn->d_un.d_val & DF_TEXTREL)))
                return true;
    }
    return false;
}

static bool overlaps(const struct range *a, const struct range *keep, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a->lo < keep[i].hi && keep[i].lo < a->hi)
            return true;
    return false;
}

static int drop_object(struct dl_phdr_info *info, size_t size, void *data)
{
    size_t *dropped = data;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    /* The vDSO is the kernel's, not a file's. */
    uintptr_t vdso = (uintptr_t)getauxval(AT_SYSINFO_EHDR);
    if (info->dlpi_phnum == 0 || (vdso && (uintptr_t)info->dlpi_phdr - vdso < 16 * page) || has_textrel(info))
        return 0;
    /* Whole pages of the writable segments and of RELRO, which must stay as they are. */
    struct range keep[SEGMENTS_MAX];
    size_t n_keep = 0;
    for (size_t i = 0; i < info->dlpi_phnum && n_keep < SEGMENTS_MAX; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if ((ph->p_type == PT_LOAD && (ph->p_flags & PF_W)) || ph->p_type == PT_GNU_RELRO) {
            uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
            keep[n_keep++] = (struct range){lo & ~(page - 1), (lo + ph->p_memsz + page - 1) & ~(page - 1)};
        }
    }
    if (n_keep == SEGMENTS_MAX)
        return 0; /* more than we can check: leave the object alone */
    for (size_t i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || (ph->p_flags & PF_W))
            continue;
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        /* Only pages that lie wholly inside the file's part of the segment (no .bss tail). */
        struct range r = {(lo + page - 1) & ~(page - 1), (lo + ph->p_filesz) & ~(page - 1)};
        if (r.lo >= r.hi || overlaps(&r, keep, n_keep))
            continue;
        if (madvise((void *)r.lo, r.hi - r.lo, MADV_DONTNEED) == 0)
            *dropped += r.hi - r.lo;
    }
    return 0;
}

size_t tm_idle_release(void)
{
    malloc_trim(0);
    size_t dropped = 0;
    dl_iterate_phdr(drop_object, &dropped);
    return dropped;
}
