/* 4-ary timer heap; see timer.h for the contract. */
#include "alloc.h"
#include "timer.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "tsan.h"

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

static void place(weft__timer_heap *h, uint32_t i, weft__timer *t)
{
    h->items[i] = t;
    t->index = i;
}

static void sift_up(weft__timer_heap *h, uint32_t i)
{
    weft__timer *t = h->items[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 4;
        if (h->items[parent]->deadline <= t->deadline)
            break;
        place(h, i, h->items[parent]);
        i = parent;
    }
    place(h, i, t);
}

static void sift_down(weft__timer_heap *h, uint32_t i)
{
    weft__timer *t = h->items[i];
    for (;;) {
        uint32_t first = 4 * i + 1;
        if (first >= h->count)
            break;
        uint32_t best = first;
        uint32_t last = first + 4 < h->count ? first + 4 : h->count;
        for (uint32_t c = first + 1; c < last; c++)
            if (h->items[c]->deadline < h->items[best]->deadline)
                best = c;
        if (h->items[best]->deadline >= t->deadline)
            break;
        place(h, i, h->items[best]);
        i = best;
    }
    place(h, i, t);
}

static void publish_earliest(weft__timer_heap *h)
{
    atomic_store_explicit(&h->earliest, h->count ? h->items[0]->deadline : WEFT_NEVER,
                          memory_order_release);
}

static void remove_at(weft__timer_heap *h, uint32_t i)
{
    weft__timer *last = h->items[--h->count];
    if (i < h->count) {
        place(h, i, last);
        if (i > 0 && h->items[(i - 1) / 4]->deadline > last->deadline)
            sift_up(h, i);
        else
            sift_down(h, i);
    }
}

int weft__timer_arm(weft__timer_heap *h, weft__timer *t, weft_time deadline, weft__timer_fn fn)
{
    t->deadline = deadline;
    t->fn = fn;
    t->heap = h;
    weft__lock_acquire(&h->lock);
    if (h->count == h->capacity) {
        uint32_t cap = h->capacity ? h->capacity * 2 : 64;
        weft__timer **items = weft__realloc(h->items, cap * sizeof(*items));
        if (!items) {
            weft__lock_release(&h->lock);
            return -ENOMEM;
        }
        h->items = items;
        h->capacity = cap;
    }
    atomic_store_explicit(&t->state, WEFT__TIMER_ARMED, memory_order_relaxed);
    place(h, h->count++, t);
    sift_up(h, t->index);
    publish_earliest(h);
    weft__lock_release(&h->lock);
    return 0;
}

int weft__timer_cancel(weft__timer *t)
{
    weft__timer_heap *h = t->heap;
    if (!h)
        return 0;
    weft__lock_acquire(&h->lock);
    int state = atomic_load_explicit(&t->state, memory_order_relaxed);
    if (state == WEFT__TIMER_ARMED) {
        remove_at(h, t->index);
        publish_earliest(h);
        atomic_store_explicit(&t->state, WEFT__TIMER_IDLE, memory_order_relaxed);
        weft__lock_release(&h->lock);
        t->heap = NULL;
        return 1;
    }
    weft__lock_release(&h->lock);
    /* Fired or firing: wait for the callback to be over (it is short: a wake or a cancel). */
    while (atomic_load_explicit(&t->state, memory_order_acquire) == WEFT__TIMER_FIRING)
        ck_pr_stall();
    t->heap = NULL;
    return 0;
}

int weft__timer_heap_run(weft__timer_heap *h, weft_time now)
{
    int fired = 0;
    if (weft__timer_heap_earliest(h) > now)
        return 0;
    for (;;) {
        weft__lock_acquire(&h->lock);
        if (h->count == 0 || h->items[0]->deadline > now) {
            weft__lock_release(&h->lock);
            return fired;
        }
        weft__timer *t = h->items[0];
        remove_at(h, 0);
        publish_earliest(h);
        atomic_store_explicit(&t->state, WEFT__TIMER_FIRING, memory_order_relaxed);
        weft__lock_release(&h->lock);
        t->fn(t);
        /* After this store `t` may be reused by a cancel that was waiting: touch it no more. */
        atomic_store_explicit(&t->state, WEFT__TIMER_IDLE, memory_order_release);
        fired++;
    }
}
