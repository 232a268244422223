/*
 * Events: a flag any thread sets, and the tasks waiting for it. A wait registers a small record
 * on the waiting task's stack in the event's list, under its lock; weft_event_set wakes every
 * record it finds there (a waker that loses the race to a cancel only drops the record).
 * `inside` counts waiters not yet out of their last lock, for weft_event_destroy.
 */
#include <errno.h>
#include <stdlib.h>

#include "alloc.h"
#include "lock.h"
#include "sched.h"
#include "scope.h"
#include "wait.h"

typedef struct event_waiter {
    weft__task *task;
    struct event_waiter *next, *prev;
    int queued;
} event_waiter;

struct weft_event {
    weft__lock lock;
    _Atomic int set;
    unsigned inside;
    event_waiter *head;
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

static void unlink_waiter(weft_event *e, event_waiter *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        e->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->queued = 0;
}

int weft_event_set(weft_event *e)
{
    if (!e)
        return -EINVAL;
    weft__lock_acquire(&e->lock);
    atomic_store_explicit(&e->set, 1, memory_order_release);
    while (e->head) {
        event_waiter *w = e->head;
        unlink_waiter(e, w);
        weft__sched_wake(w->task, WEFT__WOKEN);
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
    weft__task_chaos_point(t->rt);
    weft_scope *cs = t->cancel_scope;
    int code = weft__scope_cancel_code(cs);
    if (code)
        return code;
    if (atomic_load_explicit(&e->set, memory_order_acquire))
        return 0;
    event_waiter w = {.task = t, .queued = 1};
    weft__lock_acquire(&e->lock);
    if (atomic_load_explicit(&e->set, memory_order_relaxed)) {
        weft__lock_release(&e->lock);
        return 0;
    }
    weft__wait_prepare(t);
    w.next = e->head;
    if (e->head)
        e->head->prev = &w;
    e->head = &w;
    e->inside++;
    weft__lock_release(&e->lock);

    int why = weft__wait_park(t, cs, WEFT_NEVER);

    weft__lock_acquire(&e->lock);
    if (w.queued)
        unlink_waiter(e, &w);
    e->inside--;
    weft__lock_release(&e->lock);
    return why == WEFT__WOKEN ? 0 : weft__wait_end(why, cs);
}
