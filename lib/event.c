// SPDX-License-Identifier: MIT
/*
 * Events: a flag any thread sets, and the tasks waiting for it. A wait queues a record on the
 * waiting task's stack (waitq.h) under the event's lock; weft_event_set wakes every
 * record it finds there (a waker that loses the race to a cancel only drops the record).
 * `inside` counts waiters not yet out of their last lock, for weft_event_destroy. A waiter that
 * a task of its runtime's set wakes has nothing left in the event (its record is out, and the
 * set counts it out of `inside` before it lets it run), so it returns without the lock: with
 * many waiters, each one taking the lock again behind the others made the set's wake-up a queue
 * at the lock. A set from outside the runtime leaves the lock to them (weft__sched_waker_is_own).
 */
#include <errno.h>
#include <stdlib.h>

#include "alloc.h"
#include "lock.h"
#include "sched.h"
#include "scope.h"
#include "wait.h"
#include "waitq.h"

struct weft_event {
    weft__lock lock;
    _Atomic int set;
    unsigned inside;
    weft__waitq waiters;
};

int weft_event_create(weft_event **out)
{
    if (!out)
        return -EINVAL;
    weft_event *e = weft__alloc_calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    weft__lock_init(&e->lock);
    *out = e;
    return 0;
}

int weft_event_destroy(weft_event *e)
{
    if (!e)
        return -EINVAL;
    weft__lock_acquire(&e->lock);
    int busy = e->inside != 0;
    weft__lock_release(&e->lock);
    if (busy)
        return -EBUSY;
    free(e);
    return 0;
}

int weft_event_set(weft_event *e)
{
    if (!e)
        return -EINVAL;
    weft__lock_acquire(&e->lock);
    atomic_store_explicit(&e->set, 1, memory_order_release);
    while (e->waiters.head) {
        weft__waiter *w = e->waiters.head;
        weft__waitq_remove(&e->waiters, w);
        if (weft__sched_wake_claim(w->task, WEFT__WOKEN)) {
            weft__worker *self = weft__sched_worker();
            if (weft__sched_waker_is_own(self, w->task)) {
                w->out = 1;
                e->inside--;
            }
            weft__sched_wake_finish(self, w->task);
        }
    }
    weft__lock_release(&e->lock);
    return 0;
}

int weft_event_reset(weft_event *e)
{
    if (!e)
        return -EINVAL;
    atomic_store_explicit(&e->set, 0, memory_order_release);
    return 0;
}

int weft_event_is_set(const weft_event *e)
{
    return e && atomic_load_explicit(&e->set, memory_order_acquire);
}

int weft_event_wait(weft_event *e)
{
    weft__task *t = weft__task_self();
    if (!t)
        return -EPERM;
    if (!e)
        return -EINVAL;
    int code = weft__wait_enter(t, WEFT__ON_EVENT, e);
    if (code)
        return code;
    weft_scope *cs = t->cancel_scope;
    if (atomic_load_explicit(&e->set, memory_order_acquire))
        return 0;
    weft__waiter w = {.task = t};
    weft__lock_acquire(&e->lock);
    if (atomic_load_explicit(&e->set, memory_order_relaxed)) {
        weft__lock_release(&e->lock);
        return 0;
    }
    weft__wait_prepare(t);
    weft__waitq_push(&e->waiters, &w);
    e->inside++;
    weft__lock_release(&e->lock);

    int why = weft__wait_park(t, cs, WEFT_NEVER);
    if (why == WEFT__WOKEN && w.out) /* out of the queue and of `inside`, by the set */
        return 0;

    weft__lock_acquire(&e->lock);
    if (w.queued)
        weft__waitq_remove(&e->waiters, &w);
    e->inside--;
    weft__lock_release(&e->lock);
    return why == WEFT__WOKEN ? 0 : weft__wait_end(why, cs);
}
