// SPDX-License-Identifier: MIT
/*
 * Short critical sections: a ck spinlock, announced to ThreadSanitizer.
 *
 * Every lock in weft guards a few pointer updates (a list link, a counter): never a call that
 * can block or switch. A spinlock is cheaper than a mutex there and never parks the OS thread,
 * which would stall every green thread of that worker.
 */
#ifndef WEFT_LOCK_H
#define WEFT_LOCK_H

#include <ck_spinlock.h>
#include <sched.h>

#include "alloc.h"
#include "tsan.h"

typedef struct weft__lock {
    ck_spinlock_fas_t fas;
} weft__lock;

static inline void weft__lock_init(weft__lock *l)
{
    ck_spinlock_fas_init(&l->fas);
}

static inline void weft__lock_backoff(unsigned *round);

/* Waits until `l` is free and takes it: one of the library's own waits (alloc.h). Its holder may
 * be waiting for a CPU, or in malloc, and the wait then lasts as long; the task running on this
 * worker did not ask for it. It spins a little, then gives its CPU up between looks: on a machine
 * with more runnable threads than CPUs the holder may be waiting for this very CPU, and a spin
 * that never yields burnt whole time slices (a stress test ran 60 times slower with two busy
 * processes per CPU). */
static __attribute__((noinline, unused)) void weft__lock_wait(weft__lock *l)
{
    weft__alloc_own_wait_mark();
    unsigned round = 0;
    do {
        while (ck_spinlock_fas_locked(&l->fas))
            weft__lock_backoff(&round);
    } while (!ck_spinlock_fas_trylock(&l->fas));
    weft__alloc_own_wait_mark();
}

static inline void weft__lock_acquire(weft__lock *l)
{
    if (__builtin_expect(!ck_spinlock_fas_trylock(&l->fas), 0))
        weft__lock_wait(l);
    weft__tsan_acquire(l);
}

static inline void weft__lock_release(weft__lock *l)
{
    weft__tsan_release(l);
    ck_spinlock_fas_unlock(&l->fas);
}

/** One round of waiting for another thread to finish short work (no lock held by the waiter):
 *  a pause for the first rounds, then the OS, since that thread may have been preempted. */
static inline void weft__lock_backoff(unsigned *round)
{
    if ((*round)++ < 64)
        ck_pr_stall();
    else
        sched_yield();
}

#endif
