// SPDX-License-Identifier: MIT
/* The runtime's range for huge-page chunks; see huge.h. */
#include "huge.h"

#include <stdint.h>
#include <sys/mman.h>

#include "alloc.h"

/* 1 GiB: the span of one page-directory page, so that no page table of the range is shared
 * with a neighbouring mapping. */
#define RANGE_ALIGN ((size_t)1 << 30)
/* 16 GiB of address space: 64 million task records, far beyond any program we know of, for
 * nothing but a mapping entry (the range is PROT_NONE and MAP_NORESERVE until carved). */
#define RANGE_BYTES ((size_t)16 << 30)

void weft__huge_init(weft__huge_range *r)
{
    r->base = NULL;
    r->size = 0;
    atomic_init(&r->used, 0);
    char *m = mmap(NULL, RANGE_BYTES + RANGE_ALIGN, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED)
        return; /* a small address-space limit: chunks go where the kernel puts them */
    char *base = (char *)(((uintptr_t)m + RANGE_ALIGN - 1) & ~(uintptr_t)(RANGE_ALIGN - 1));
    if (base > m)
        munmap(m, (size_t)(base - m));
    munmap(base + RANGE_BYTES, (size_t)(m + RANGE_ALIGN - base));
    madvise(base, RANGE_BYTES, MADV_HUGEPAGE);
    r->base = base;
    r->size = RANGE_BYTES;
}

void *weft__huge_take(weft__huge_range *r, size_t bytes)
{
    if (r->base) {
        size_t at = atomic_fetch_add_explicit(&r->used, bytes, memory_order_relaxed);
        if (at <= r->size - bytes) {
            /* The address space's lock: one of the library's own waits (alloc.h). */
            weft__alloc_own_wait_mark();
            int failed = weft__alloc_should_fail(); /* the carved part stays unused: no undo */
            int made = !failed && mprotect(r->base + at, bytes, PROT_READ | PROT_WRITE) == 0;
            weft__alloc_own_wait_mark();
            if (failed)
                return NULL;
            if (made)
                return r->base + at;
            /* Out of mapping entries, say: a mapping of its own may still succeed. */
        }
    }
    return weft__alloc_map(bytes, 1);
}

void weft__huge_give_back(weft__huge_range *r, void *chunk, size_t bytes)
{
    char *c = chunk;
    if (r->base && c >= r->base && c < r->base + r->size)
        return;
    weft__alloc_unmap(chunk, bytes);
}

void weft__huge_destroy(weft__huge_range *r)
{
    if (r->base)
        munmap(r->base, r->size);
    r->base = NULL;
}
