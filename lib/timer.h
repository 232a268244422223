// SPDX-License-Identifier: MIT
/*
 * Per-worker timers: a 4-ary min-heap of deadlines, one per worker, each behind its own lock.
 *
 * Why a heap and not a wheel: deadlines here are arbitrary nanoseconds and must fire within
 * microseconds of them; a wheel's O(1) insert buys little at that resolution and costs cascades.
 * A 4-ary heap halves the depth of a binary one and keeps siblings on one cache line.
 *
 * Cancellation is O(1) and takes no lock, because most timers are timeouts cancelled long before
 * they fire (a cancel of 100,000 sleepers cancels 100,000 timers). A heap item carries the
 * deadline, the timer and the timer's arming generation; a timer's state and generation share one
 * atomic word, so cancel is a CAS from (gen, ARMED) to (gen, IDLE) and the item stays in the
 * heap, stale. The heap drops stale items when they reach the top, and compacts itself when it is
 * full, before it grows, so memory stays proportional to the most timers armed at once. A cancel
 * writes nothing but the timer itself. This needs timers to live in memory that stays a timer
 * while the runtime lives (task and scope records, which are recycled, never freed, until the
 * runtime is destroyed).
 *
 * Contract: a timer is armed on the heap of the worker that arms it; it may be cancelled from any
 * thread. weft__timer_cancel is synchronous: when it returns, the callback is not running and
 * will never run for that arming. Callbacks run with no lock held, on the heap's worker or on
 * another worker that takes over overdue timers (wtimers.c): any thread of the runtime.
 */
#ifndef WEFT_TIMER_H
#define WEFT_TIMER_H

#include <stdatomic.h>
#include <stdint.h>

#include "lock.h"
#include "weft.h"

typedef struct weft__timer weft__timer;
typedef void (*weft__timer_fn)(weft__timer *t);

typedef struct weft__timer_item {
    weft_time deadline;
    weft__timer *timer;
    uint64_t gen;
} weft__timer_item;

typedef struct weft__timer_heap {
    weft__lock lock;
    weft__timer_item *items;
    uint32_t count;
    uint32_t capacity;
    _Atomic weft_time earliest; /* a lower bound of the next deadline; WEFT_NEVER when empty */
} weft__timer_heap;

enum { WEFT__TIMER_IDLE = 0, WEFT__TIMER_ARMED = 1, WEFT__TIMER_FIRING = 2 };

struct weft__timer {
    weft__timer_fn fn;
    weft__timer_heap *heap;
    _Atomic uint64_t word; /* generation << 2 | state. Zero-initialised memory is a valid timer. */
};

void weft__timer_heap_init(weft__timer_heap *h);
void weft__timer_heap_destroy(weft__timer_heap *h);

/** Arms `t` to call fn(t) at `deadline` on heap `h`. 0 or -ENOMEM. */
int weft__timer_arm(weft__timer_heap *h, weft__timer *t, weft_time deadline, weft__timer_fn fn);

/** Makes room on `h` for one more timer, so that the next weft__timer_arm on `h` cannot fail
 *  for the lack of it (as long as nothing else is armed there meanwhile). 0 or -ENOMEM. */
int weft__timer_reserve(weft__timer_heap *h);

/** Disarms `t`. Returns 1 if it was disarmed before firing, 0 if it had fired (or was never
 *  armed); in both cases the callback is over when this returns. */
int weft__timer_cancel(weft__timer *t);

/** Fires every timer of `h` due at `now`. Returns how many fired. */
int weft__timer_heap_run(weft__timer_heap *h, weft_time now);

static inline weft_time weft__timer_heap_earliest(weft__timer_heap *h)
{
    return atomic_load_explicit(&h->earliest, memory_order_acquire);
}

#endif
