// SPDX-License-Identifier: MIT
/* 4-ary timer heap with lazy cancellation; see timer.h for the contract. */
#include "timer.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "alloc.h"
#include "tsan.h"

#define STATE(w) ((int)((w)&3))
#define WORD(gen, state) ((gen) << 2 | (uint64_t)(state))

weft_time weft_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (weft_time)ts.tv_sec * WEFT_SEC + ts.tv_nsec;
}

void weft__timer_heap_init(weft__timer_heap *h)
{
    weft__lock_init(&h->lock);
    h->items = NULL;
    h->count = h->capacity = 0;
    atomic_init(&h->earliest, WEFT_NEVER);
}

void weft__timer_heap_destroy(weft__timer_heap *h)
{
    free(h->items);
    h->items = NULL;
}

static void sift_up(weft__timer_heap *h, uint32_t i)
{
    weft__timer_item it = h->items[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 4;
        if (h->items[parent].deadline <= it.deadline)
            break;
        h->items[i] = h->items[parent];
        i = parent;
    }
    h->items[i] = it;
}

static void sift_down(weft__timer_heap *h, uint32_t i)
{
    weft__timer_item it = h->items[i];
    for (;;) {
        uint32_t first = 4 * i + 1;
        if (first >= h->count)
            break;
        uint32_t best = first;
        uint32_t last = first + 4 < h->count ? first + 4 : h->count;
        for (uint32_t c = first + 1; c < last; c++)
            if (h->items[c].deadline < h->items[best].deadline)
                best = c;
        if (h->items[best].deadline >= it.deadline)
            break;
        h->items[i] = h->items[best];
        i = best;
    }
    h->items[i] = it;
}

static void publish_earliest(weft__timer_heap *h)
{
    atomic_store_explicit(&h->earliest, h->count ? h->items[0].deadline : WEFT_NEVER,
                          memory_order_release);
}

static int item_live(const weft__timer_item *it)
{
    return atomic_load_explicit(&it->timer->word, memory_order_acquire) ==
           WORD(it->gen, WEFT__TIMER_ARMED);
}

/* Drops the stale items in one pass and rebuilds the heap: O(n). */
static void compact(weft__timer_heap *h)
{
    uint32_t kept = 0;
    for (uint32_t i = 0; i < h->count; i++)
        if (item_live(&h->items[i]))
            h->items[kept++] = h->items[i];
    h->count = kept;
    for (uint32_t i = kept / 4 + 1; i-- > 0;)
        if (i < kept)
            sift_down(h, i);
}

/* Room for one more item. A full heap drops its stale items first and grows only if that freed
 * less than a quarter of it: each arm pays O(1) for the compactions on average (one that frees
 * little is followed by a doubling), and the array stays within a small factor of the most timers
 * armed at once. Compacting only when full, rather than when stale items outnumber live ones,
 * spares cancels a shared count: a mass cancel of timers armed on other workers' heaps made that
 * count's line bounce between cores at every cancel. */
static int make_room(weft__timer_heap *h)
{
    if (h->count < h->capacity)
        return 0;
    if (h->count >= 64)
        compact(h);
    if (h->count <= h->capacity - h->capacity / 4 && h->capacity)
        return 0;
    uint32_t cap = h->capacity ? h->capacity * 2 : 64;
    weft__timer_item *items = weft__alloc_realloc(h->items, cap * sizeof(*items));
    if (!items)
        return h->count < h->capacity ? 0 : -ENOMEM;
    h->items = items;
    h->capacity = cap;
    return 0;
}

int weft__timer_reserve(weft__timer_heap *h)
{
    weft__lock_acquire(&h->lock);
    int rc = make_room(h);
    weft__lock_release(&h->lock);
    return rc;
}

int weft__timer_arm(weft__timer_heap *h, weft__timer *t, weft_time deadline, weft__timer_fn fn)
{
    uint64_t gen = (atomic_load_explicit(&t->word, memory_order_relaxed) >> 2) + 1;
    t->fn = fn;
    t->heap = h;
    weft__lock_acquire(&h->lock);
    if (make_room(h) != 0) {
        weft__lock_release(&h->lock);
        t->heap = NULL;
        return -ENOMEM;
    }
    atomic_store_explicit(&t->word, WORD(gen, WEFT__TIMER_ARMED), memory_order_release);
    h->items[h->count] = (weft__timer_item){.deadline = deadline, .timer = t, .gen = gen};
    sift_up(h, h->count++);
    publish_earliest(h);
    weft__lock_release(&h->lock);
    return 0;
}

int weft__timer_cancel(weft__timer *t)
{
    weft__timer_heap *h = t->heap;
    if (!h)
        return 0;
    uint64_t w = atomic_load_explicit(&t->word, memory_order_acquire);
    if (STATE(w) == WEFT__TIMER_ARMED &&
        atomic_compare_exchange_strong_explicit(&t->word, &w, WORD(w >> 2, WEFT__TIMER_IDLE),
                                                memory_order_acq_rel, memory_order_acquire)) {
        t->heap = NULL;
        return 1;
    }
    /* Fired or firing: wait for the callback to be over (short: a wake, or a cancel that may
     * wait for another cancel's fan-out). */
    unsigned round = 0;
    while (STATE(atomic_load_explicit(&t->word, memory_order_acquire)) == WEFT__TIMER_FIRING)
        weft__lock_backoff(&round);
    t->heap = NULL;
    return 0;
}

int weft__timer_heap_run(weft__timer_heap *h, weft_time now)
{
    int fired = 0;
    if (weft__timer_heap_earliest(h) > now)
        return 0;
    weft__lock_acquire(&h->lock);
    while (h->count && h->items[0].deadline <= now) {
        weft__timer_item it = h->items[0];
        h->items[0] = h->items[--h->count];
        if (h->count)
            sift_down(h, 0);
        uint64_t armed = WORD(it.gen, WEFT__TIMER_ARMED);
        if (!atomic_compare_exchange_strong_explicit(&it.timer->word, &armed,
                                                     WORD(it.gen, WEFT__TIMER_FIRING),
                                                     memory_order_acq_rel, memory_order_relaxed))
            continue; /* stale: cancelled, or re-armed since */
        publish_earliest(h);
        weft__lock_release(&h->lock);
        it.timer->fn(it.timer);
        /* After this store the timer may be reused by a cancel that was waiting: touch it no
         * more. */
        atomic_store_explicit(&it.timer->word, WORD(it.gen, WEFT__TIMER_IDLE),
                              memory_order_release);
        fired++;
        weft__lock_acquire(&h->lock);
    }
    publish_earliest(h);
    weft__lock_release(&h->lock);
    return fired;
}
