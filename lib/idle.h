// SPDX-License-Identifier: MIT
/*
 * Where a worker sleeps when it finds nothing to run (idle.c): the seam between the scheduler
 * and whatever can wake it. A worker that can take the runtime's poller (poll.h) sleeps in it,
 * so that readiness of a descriptor wakes it as a wake-up does; the others sleep on their futex
 * words. (tokio's split: park on the driver if you can take it, else on the condition variable.)
 *
 * The contract the scheduler's wake protocol relies on (sched.c's essay): a sleeper takes a
 * ticket, then looks for work a last time, then sleeps with the ticket. A wake issued after the
 * ticket was taken ends that sleep, or prevents it. Sleeps may end early (a signal, a spurious
 * wake-up); the sleeper then looks for work again.
 */
#ifndef WEFT_IDLE_H
#define WEFT_IDLE_H

#include <stdatomic.h>
#include <stdint.h>

#include "poll.h"
#include "weft.h"

typedef struct weft__idle {
    _Atomic uint32_t seq;  /* bumped by each wake */
    _Atomic int in_poller; /* the sleeper sleeps (or is about to) in the poller */
    weft__poller *poller;  /* the runtime's */
} weft__idle;

/** Prepares `i` for a worker of the runtime whose poller is `p`. */
void weft__idle_init(weft__idle *i, weft__poller *p);

/** A ticket for weft__idle_sleep, taken before the sleeper's last look for work. Only the
 *  sleeper's thread. */
static inline uint32_t weft__idle_ticket(weft__idle *i)
{
    return atomic_load_explicit(&i->seq, memory_order_acquire);
}

/** Sleeps unless a wake came after `ticket` was taken, until such a wake or `deadline`
 *  (weft_now() clock; WEFT_NEVER: none). Only the sleeper's thread. Returns what
 *  weft__poll_release returned when it slept in the poller (1: the caller wakes a sleeper once it
 *  is no longer counted idle), else 0. */
int weft__idle_sleep(weft__idle *i, uint32_t ticket, weft_time deadline);

/** Ends the sleep of whoever sleeps on `i`, or the next sleep with an older ticket. Any
 *  thread. */
void weft__idle_wake(weft__idle *i);

#endif
