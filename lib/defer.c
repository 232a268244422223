// SPDX-License-Identifier: MIT
/* The deferred-children queue of limited scopes; see defer.h. */
#include "defer.h"

#include <errno.h>

#include "records.h"

/* A block per segment: large enough that the allocator is rarely asked, small enough that a
 * scope with a handful of deferred children does not hold much. */
#define SEG_BYTES WEFT__BLOCK_BYTES
#define SEG_ENTRIES ((SEG_BYTES - 2 * sizeof(void *)) / sizeof(weft__defer_entry))

struct weft__defer_seg {
    weft__defer_seg *next;
    uint32_t read;  /* next entry to take */
    uint32_t write; /* next free slot */
    weft__defer_entry entry[SEG_ENTRIES];
};

_Static_assert(sizeof(weft__defer_seg) <= SEG_BYTES, "a segment fits its page");

static weft__defer_seg *seg_new(weft__defer_queue *q, weft_runtime *rt)
{
    weft__defer_seg *g = q->spare;
    if (g)
        q->spare = NULL;
    else if (!(g = weft__records_alloc_block(rt)))
        return NULL;
    g->next = NULL;
    g->read = g->write = 0;
    return g;
}

int weft__defer_push(weft__defer_queue *q, weft_runtime *rt, weft_fn fn, void *arg)
{
    weft__defer_seg *g = q->tail;
    if (!g || g->write == SEG_ENTRIES) {
        weft__defer_seg *n = seg_new(q, rt);
        if (!n)
            return -ENOMEM;
        if (g)
            g->next = n;
        else
            q->head = n;
        q->tail = g = n;
    }
    g->entry[g->write++] = (weft__defer_entry){fn, arg};
    return 0;
}

int weft__defer_pop(weft__defer_queue *q, weft_runtime *rt, weft__defer_entry *out)
{
    weft__defer_seg *g = q->head;
    if (!g || g->read == g->write)
        return 0;
    *out = g->entry[g->read++];
    if (g->read == g->write) {
        /* Drained. A segment gets a successor only once it is full, so this one is either full
         * (never written again) or the tail (the next push starts a fresh one). */
        q->head = g->next;
        if (!q->head)
            q->tail = NULL;
        if (q->spare)
            weft__records_free_block(rt, g);
        else
            q->spare = g;
    }
    return 1;
}

void weft__defer_release(weft__defer_queue *q, weft_runtime *rt)
{
    for (weft__defer_seg *g = q->head, *n; g; g = n) {
        n = g->next;
        weft__records_free_block(rt, g);
    }
    if (q->spare)
        weft__records_free_block(rt, q->spare);
    weft__defer_init(q);
}

__attribute__((no_sanitize("thread"))) size_t weft__defer_count_racy(const weft__defer_queue *q,
                                                                     size_t max_segs)
{
    size_t n = 0;
    const weft__defer_seg *g = *(weft__defer_seg *const volatile *)&q->head;
    for (size_t i = 0; g && i < max_segs; i++) {
        uint32_t r = *(const volatile uint32_t *)&g->read;
        uint32_t w = *(const volatile uint32_t *)&g->write;
        if (w > r && w <= SEG_ENTRIES)
            n += w - r;
        g = *(weft__defer_seg *const volatile *)&g->next;
    }
    return n;
}
