/*
 * Per-worker timers: a 4-ary min-heap of deadlines, one per worker, each behind its own lock.
 *
 * Why a heap and not a wheel: most timers here are timeouts that are cancelled long before they
 * fire, and cancellation is O(log n) with the index each timer keeps; a wheel's O(1) insert does
 * not pay for its cascade work and its tick granularity at the sub-millisecond lateness we want.
 * A 4-ary heap halves the depth of a binary one and keeps siblings on one cache line.
 *
 * Contract: a timer is armed on the heap of the worker that arms it; it may be cancelled from any
 * thread. weft__timer_cancel is synchronous: when it returns, the callback is not running and
 * will never run, so the timer's memory may be reused. Callbacks run on the heap's worker thread
 * with no lock held.
 */
#ifndef WEFT_TIMER_H
#define WEFT_TIMER_H

#include <stdatomic.h>
#include <stdint.h>

#include "lock.h"
#include "weft.h"

typedef struct weft__timer weft__timer;
typedef void (*weft__timer_fn)(weft__timer *t);

typedef struct weft__timer_heap {
    weft__lock lock;
    weft__timer **items;
    uint32_t count;
    uint32_t capacity;
    _Atomic weft_time earliest; /* WEFT_NEVER when empty: lets the owner skip the lock */
} weft__timer_heap;

enum { WEFT__TIMER_IDLE = 0, WEFT__TIMER_ARMED, WEFT__TIMER_FIRING };

struct weft__timer {
    weft_time deadline;
    weft__timer_fn fn;
    weft__timer_heap *heap;
    uint32_t index;
    _Atomic int state;
};

void weft__timer_heap_init(weft__timer_heap *h);
void weft__timer_heap_destroy(weft__timer_heap *h);

/** Arms `t` to call fn(t) at `deadline` on heap `h`. 0 or -ENOMEM. */
int weft__timer_arm(weft__timer_heap *h, weft__timer *t, weft_time deadline, weft__timer_fn fn);

/** Disarms `t`. Returns 1 if it was removed before firing, 0 if it had fired (or was never
 *  armed); in both cases the callback is over when this returns. */
int weft__timer_cancel(weft__timer *t);

/** Fires every timer of `h` due at `now`. Returns how many fired. */
int weft__timer_heap_run(weft__timer_heap *h, weft_time now);

static inline weft_time weft__timer_heap_earliest(weft__timer_heap *h)
{
    return atomic_load_explicit(&h->earliest, memory_order_acquire);
}

#endif
