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

#include "tsan.h"

typedef struct weft__lock {
    ck_spinlock_fas_t fas;
} weft__lock;

static inline void weft__lock_init(weft__lock *l)
{
    ck_spinlock_fas_init(&l->fas);
}

static inline void weft__lock_acquire(weft__lock *l)
{
    ck_spinlock_fas_lock_eb(&l->fas);
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
