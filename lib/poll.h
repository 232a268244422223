// SPDX-License-Identifier: MIT
/*
 * The runtime's poller (poll.c): one epoll set per runtime, in which every descriptor a task
 * waited on is registered once, edge-triggered. It lives in the scheduler's idle path: an idle
 * worker that can take the poller sleeps in epoll_wait instead of on its futex word (idle.c), with
 * its next timer as the timeout and an eventfd as its wake-up; a busy worker looks at it without
 * blocking now and then (sched.c), so that I/O is never starved by CPU work. One worker at a
 * time holds it: the others sleep on their futex words, so readiness wakes no herd.
 *
 * A holder that leaves it may go on to run a task that never comes back (a plain blocking call):
 * so a worker that goes to sleep on its futex word says so (`wanted`), and whoever next releases
 * the poller, or registers the first descriptor, wakes a sleeper, which takes the poller when it
 * goes back to sleep. While some worker sleeps, one of them watches the descriptors.
 *
 * Readiness goes to the descriptor's record (fd.c), which wakes the task waiting there onto the
 * ready queue of the worker that saw it; from there it can be stolen like any other.
 */
#ifndef WEFT_POLL_H
#define WEFT_POLL_H

#include <stdatomic.h>
#include <stdint.h>

#include "weft.h"

typedef struct weft__poller {
    int epfd;
    int evfd;             /* eventfd in the set: a write ends the holder's epoll_wait */
    _Atomic int held;     /* a worker is inside weft__poll_wait or weft__poll_now */
    _Atomic uint32_t fds; /* descriptors registered: with none, nobody polls */
    _Atomic int wanted;   /* a worker went to sleep without the poller (weft__poll_take_or_want) */
} weft__poller;

/** Creates the epoll set and its eventfd. 0 or a negative errno value. */
int weft__poll_init(weft__poller *p);
/** Closes them. No worker may hold the poller. */
void weft__poll_destroy(weft__poller *p);

/** 1 when some descriptor is registered, so that polling can find something. */
static inline int weft__poll_active(weft__poller *p)
{
    return atomic_load_explicit(&p->fds, memory_order_relaxed) != 0;
}

/** Takes the poller if nobody holds it: 1 if taken (then weft__poll_wait or weft__poll_now, and
 *  weft__poll_release). */
int weft__poll_take(weft__poller *p);
/** Releases it. 1 when a worker went to sleep without it meanwhile: the caller then wakes a
 *  sleeping worker (weft__sched_wake_one, once the caller is not counted idle itself), or the
 *  descriptors may have nobody to watch them. */
int weft__poll_release(weft__poller *p);

/** For a worker about to sleep: takes the poller as weft__poll_take does (1), or else leaves word
 *  that a worker sleeps without it (0), for the next weft__poll_release or weft__poll_added. */
int weft__poll_take_or_want(weft__poller *p);

/** Counts a descriptor registered. 1 when it is the first while a worker sleeps without the
 *  poller: the caller then wakes a sleeping worker, as after weft__poll_release. */
int weft__poll_added(weft__poller *p);

/** Blocks in epoll_wait until readiness, a weft__poll_interrupt, or `deadline` (weft_now()
 *  clock; WEFT_NEVER: none), and hands what is ready to the waiting tasks. The caller holds the
 *  poller and is a worker in its scheduler context. */
void weft__poll_wait(weft__poller *p, weft_time deadline);

/** Hands what is ready now to the waiting tasks, without blocking; the caller holds the poller
 *  and is a worker (a task or its scheduler context). Returns the number of tasks woken. */
int weft__poll_now(weft__poller *p);

/** Ends the holder's weft__poll_wait (or the next one, if it is about to start). Any thread. */
void weft__poll_interrupt(weft__poller *p);

#endif
