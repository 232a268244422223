// SPDX-License-Identifier: MIT
/*
 * Where a runtime's huge-page chunks (task records, deferred-children blocks) live: a range of
 * address space reserved for them alone, aligned to 1 GiB, so that they never sit next to the
 * task stacks.
 *
 * Why a range of their own: on the virtual machines we measure on, 4 KiB pages faulted in near
 * transparent huge pages (the kernel's default placement puts the stack slabs right below the
 * record chunks) cost tens of times more at their next touch than when the huge pages sit a
 * gigabyte away (README.md, Performance). A cancel of 100,000 parked tasks touches 100,000 stack
 * pages, so this alone made it several times slower. Chunks are carved from the range in order and
 * never given back one by one: a hole punched in the range could be taken by an unrelated mapping,
 * which the final unmap of the range would then destroy. When the range cannot be reserved or is
 * used up, chunks are mapped one by one where the kernel puts them, as before.
 */
#ifndef WEFT_HUGE_H
#define WEFT_HUGE_H

#include <stdatomic.h>
#include <stddef.h>

typedef struct weft__huge_range {
    char *base; /* NULL: nothing reserved; every chunk is a mapping of its own */
    size_t size;
    _Atomic size_t used; /* bytes carved so far (may overshoot `size` once it is used up) */
} weft__huge_range;

/** Reserves the range (address space only: no memory is committed until a chunk is taken). */
void weft__huge_init(weft__huge_range *r);

/** A zeroed chunk of `bytes` (a multiple of 2 MiB), aligned to 2 MiB and advised into
 *  transparent huge pages; NULL when out of memory. Any thread. */
void *weft__huge_take(weft__huge_range *r, size_t bytes);

/** Gives back a chunk of weft__huge_take: one outside the range is unmapped now, one inside it
 *  with the range (weft__huge_destroy). */
void weft__huge_give_back(weft__huge_range *r, void *chunk, size_t bytes);

/** Unmaps the range and every chunk carved from it. */
void weft__huge_destroy(weft__huge_range *r);

#endif
