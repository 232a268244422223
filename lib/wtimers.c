// SPDX-License-Identifier: MIT
/* The workers' timers: see wtimers.h. */
#include "wtimers.h"

#include "chaos.h"
#include "sched.h"

/* Timers sit on the heap of the worker that armed them, and that worker fires them when it looks
 * for work. A worker that does not look (stuck in a plain system call inside a task, or running
 * one task that never suspends) would hold them for as long as it is stuck, and with them every
 * deadline and sleep they end. So the other workers fire a neighbour's timers once they are this
 * late (Go runs other Ps' timers for the same reason): late enough that a worker serving its own
 * timers is seldom overtaken, soon enough that a deadline held by a stuck worker is late by about
 * this much, not by the length of the stall. */
#define TIMER_TAKEOVER_NS (1 * WEFT_MSEC)

/* When the first of the other workers' timers becomes ours to fire (WEFT_NEVER: none). A
 * sleeping worker wakes for its own timers, so only those of workers awake count. */
static weft_time takeover_at(weft__worker *w)
{
    weft_runtime *rt = w->rt;
    weft_time at = WEFT_NEVER;
    for (unsigned i = 0; i < rt->nworkers; i++) {
        weft__worker *v = &rt->workers[i];
        if (v == w)
            continue;
        weft_time e = weft__timer_heap_earliest(&v->timers);
        if (e == WEFT_NEVER || e >= WEFT_NEVER - TIMER_TAKEOVER_NS || e + TIMER_TAKEOVER_NS >= at)
            continue;
        uint64_t bit = (uint64_t)1 << (i % 64);
        if (atomic_load_explicit(&rt->idle_mask[i / 64], memory_order_relaxed) & bit)
            continue;
        at = e + TIMER_TAKEOVER_NS;
    }
    return at;
}

/* Fires the timers of other workers that are overdue by TIMER_TAKEOVER_NS at `now`. */
static void take_over_timers(weft__worker *w, weft_time now)
{
    weft_runtime *rt = w->rt;
    for (unsigned i = 0; i < rt->nworkers; i++) {
        weft__worker *v = &rt->workers[i];
        weft_time e = weft__timer_heap_earliest(&v->timers);
        if (v != w && e != WEFT_NEVER && e <= now - TIMER_TAKEOVER_NS)
            weft__timer_heap_run(&v->timers, now);
    }
}

void weft__wtimers_run(weft__worker *w)
{
    weft_time own = weft__timer_heap_earliest(&w->timers);
    weft_time others = w->rt->nworkers > 1 ? takeover_at(w) : WEFT_NEVER;
    if (own == WEFT_NEVER && others == WEFT_NEVER)
        return;
    weft_time now = weft_now();
    if (others <= now)
        take_over_timers(w, now);
    if (own == WEFT_NEVER)
        return;
    if (weft__chaos_hit(w, 2))
        now -= (weft_time)(w->chaos_rng % (2 * WEFT_MSEC)); /* fire late */
    weft__timer_heap_run(&w->timers, now);
}

weft_time weft__wtimers_next(weft__worker *w)
{
    weft_time own = weft__timer_heap_earliest(&w->timers);
    weft_time others = w->rt->nworkers > 1 ? takeover_at(w) : WEFT_NEVER;
    return own < others ? own : others;
}

int weft__wtimers_reserve(void)
{
    return weft__timer_reserve(&weft__sched_worker()->timers);
}

int weft__wtimers_arm(weft__timer *t, weft_time deadline, weft__timer_fn fn)
{
    weft__worker *w = weft__sched_worker();
    return weft__timer_arm(&w->timers, t, deadline, fn);
}
