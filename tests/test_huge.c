// SPDX-License-Identifier: MIT
/*
 * The range that huge-page chunks are carved from (lib/huge.h): where chunks come from, what
 * they hold, when they are unmapped, and the fallbacks (no range, a used-up range, a failed
 * allocation).
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "alloc.h"
#include "huge.h"

#define MIB ((size_t)1 << 20)
#define GIB ((size_t)1 << 30)
#define CHUNK (2 * MIB)

static int is_mapped(const void *addr)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    /* msync fails with ENOMEM on an address that is not mapped. */
    return msync((void *)((uintptr_t)addr & ~(uintptr_t)(page - 1)), page, MS_ASYNC) == 0;
}

static int in_range(const weft__huge_range *r, const void *p)
{
    return (const char *)p >= r->base && (const char *)p < r->base + r->size;
}

static void check_chunk(char *c)
{
    cr_assert_not_null(c);
    cr_assert_eq((uintptr_t)c % CHUNK, 0, "a chunk is aligned for a huge page");
    for (size_t i = 0; i < CHUNK; i += 4096)
        cr_assert_eq(c[i], 0, "a new chunk reads as zero");
    c[0] = 1;
    c[CHUNK - 1] = 1;
}

Test(huge, chunks_are_carved_in_order_from_a_range_on_its_own_gigabyte)
{
    weft__huge_range r;
    weft__huge_init(&r);
    cr_assert_not_null(r.base, "the range is reserved on an ordinary machine");
    cr_assert_eq((uintptr_t)r.base % GIB, 0);
    cr_assert_eq(r.size % GIB, 0);
    char *a = weft__huge_take(&r, CHUNK);
    char *b = weft__huge_take(&r, 2 * CHUNK);
    char *c = weft__huge_take(&r, CHUNK);
    check_chunk(a);
    check_chunk(b);
    check_chunk(b + CHUNK);
    check_chunk(c);
    cr_assert(in_range(&r, a) && in_range(&r, b) && in_range(&r, c));
    cr_assert_eq(b, a + CHUNK, "chunks follow each other");
    cr_assert_eq(c, b + 2 * CHUNK);
    weft__huge_destroy(&r);
}

Test(huge, a_chunk_given_back_stays_mapped_until_the_range_goes)
{
    weft__huge_range r;
    weft__huge_init(&r);
    char *a = weft__huge_take(&r, CHUNK);
    char *b = weft__huge_take(&r, CHUNK);
    cr_assert_not_null(a);
    cr_assert_not_null(b);
    weft__huge_give_back(&r, a, CHUNK);
    cr_assert(is_mapped(a), "no hole is punched in the range: another mapping could take it");
    a[0] = 2; /* still ours to write */
    char *base = r.base;
    weft__huge_destroy(&r);
    cr_assert_not(is_mapped(a));
    cr_assert_not(is_mapped(b));
    cr_assert_not(is_mapped(base + r.size - 1));
    cr_assert_null(r.base);
}

Test(huge, without_a_range_every_chunk_is_a_mapping_of_its_own)
{
    weft__huge_range r = {.base = NULL}; /* what init leaves when the reservation fails */
    char *a = weft__huge_take(&r, CHUNK);
    check_chunk(a);
    weft__huge_give_back(&r, a, CHUNK);
    cr_assert_not(is_mapped(a), "a chunk outside any range is unmapped when given back");
    weft__huge_destroy(&r);
}

Test(huge, a_used_up_range_falls_back_to_mappings_of_their_own)
{
    weft__huge_range r;
    weft__huge_init(&r);
    cr_assert_not_null(r.base);
    atomic_store(&r.used, r.size - CHUNK); /* as if 16 GiB had been carved */
    char *last = weft__huge_take(&r, CHUNK);
    char *beyond = weft__huge_take(&r, CHUNK);
    check_chunk(last);
    check_chunk(beyond);
    cr_assert(in_range(&r, last), "the last chunk that fits still comes from the range");
    cr_assert_not(in_range(&r, beyond));
    weft__huge_give_back(&r, beyond, CHUNK);
    cr_assert_not(is_mapped(beyond));
    weft__huge_give_back(&r, last, CHUNK);
    cr_assert(is_mapped(last));
    weft__huge_destroy(&r);
    cr_assert_not(is_mapped(last));
}

Test(huge, an_injected_failure_gives_null_and_the_next_take_succeeds)
{
    weft__huge_range r;
    weft__huge_init(&r);
    weft__alloc_fail_at(1);
    cr_assert_null(weft__huge_take(&r, CHUNK));
    weft__alloc_fail_at(0);
    char *a = weft__huge_take(&r, CHUNK);
    check_chunk(a);
    cr_assert(in_range(&r, a));
    weft__huge_destroy(&r);
}
