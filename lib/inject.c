// SPDX-License-Identifier: MIT
/*
 * The injection queue: one per runtime, for work that arrives from threads that are not workers
 * and for woken tasks beyond what a worker's ready queue holds (a cancel that wakes 100,000
 * sleepers). An intrusive FIFO of task records behind a spinlock: unbounded without allocating.
 * Tasks queued together form a run, whose first record knows its last and its length, so that a
 * worker takes a run without walking it under the lock.
 */
#include "inject.h"

#include "sched.h"

void weft__inject_list(weft_runtime *rt, weft__task *first, weft__task *last, long n)
{
    last->next = NULL;
    first->run_last = last;
    first->run_len = (uint32_t)n;
    weft__lock_acquire(&rt->inject_lock);
    if (rt->inject_tail)
        rt->inject_tail->next = first;
    else
        rt->inject_head = first;
    rt->inject_tail = last;
    atomic_fetch_add_explicit(&rt->inject_len, n, memory_order_relaxed);
    weft__lock_release(&rt->inject_lock);
    atomic_thread_fence(memory_order_seq_cst);
    weft__sched_wake_one(rt);
}

void weft__inject_task(weft_runtime *rt, weft__task *t)
{
    weft__inject_list(rt, t, t, 1);
}

/* Takes the oldest task of the injection queue, and with it the rest of the run it was queued in
 * (up to INJECT_BATCH - 1 more) onto the worker's ready queue: there they are taken without the
 * lock and prefetched before they run (prefetch_ready), which a linked queue cannot do without
 * walking it. The walk is done after the lock is let go: the records of a mass wake-up are cold
 * and often in another core's cache, and a walk of 32 of them under the lock kept every other
 * worker spinning on it for microseconds. A fair share only (the queue's length over the number
 * of workers), and none past WEFT__READY_LOCAL_MAX. */
#define INJECT_BATCH 32

weft__task *weft__inject_take(weft__worker *w)
{
    weft_runtime *rt = w->rt;
    long len = atomic_load_explicit(&rt->inject_len, memory_order_relaxed);
    if (len == 0)
        return NULL;
    long want = len / (long)rt->nworkers + 1;
    if (want > INJECT_BATCH)
        want = INJECT_BATCH;
    if (want > 1 && weft__deque_size_owner(&w->readyq, WEFT__READY_LOCAL_MAX - want) >
                        WEFT__READY_LOCAL_MAX - want)
        want = 1;
    weft__lock_acquire(&rt->inject_lock);
    weft__task *first = rt->inject_head, *last = NULL;
    long n = 0;
    if (first) {
        last = first->run_last;
        n = first->run_len;
        rt->inject_head = last->next;
        if (!rt->inject_head)
            rt->inject_tail = NULL;
    }
    weft__lock_release(&rt->inject_lock);
    if (!first)
        return NULL;
    /* The run is ours now: up to `want` of it (first included) is taken, the rest goes back to
     * the front of the queue, still counted in inject_len meanwhile (a worker that sees it
     * non-zero looks again rather than sleep). Each link is read before its task is queued:
     * once queued, a task may be stolen, run and recycled at once. */
    weft__task *x = n > 1 ? first->next : NULL;
    long taken = 1;
    for (; x && taken < want; taken++) {
        weft__task *hint = weft__task_hint(x);
        if (hint)
            __builtin_prefetch(&hint->next, 0);
        weft__task *after = x == last ? NULL : x->next;
        if (weft__deque_push_owner(&w->readyq, x) != 0)
            weft__inject_task(rt, x);
        x = after;
    }
    if (x) {
        x->run_last = last;
        x->run_len = (uint32_t)(n - taken);
        weft__lock_acquire(&rt->inject_lock);
        last->next = rt->inject_head;
        rt->inject_head = x;
        if (!rt->inject_tail)
            rt->inject_tail = last;
        weft__lock_release(&rt->inject_lock);
    }
    atomic_fetch_sub_explicit(&rt->inject_len, taken, memory_order_relaxed);
    if (taken > 1)
        weft__sched_notify_local(rt);
    return first;
}
