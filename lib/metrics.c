// SPDX-License-Identifier: MIT
/*
 * Metrics: a snapshot of what each worker counted and holds, taken from any thread while the
 * runtime runs. The workers count with plain increments of their own words (sched.h,
 * weft__worker_counts): an atomic RMW, or any word two workers write, would cost every spawn.
 * So the snapshot reads words that move: each read is of an aligned word, which returns an old
 * or a new value and never a torn one on the architectures weft runs on, and nothing here
 * follows a pointer read so. ThreadSanitizer is told to let these reads be.
 */
#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

#include "blocking.h"
#include "records.h"
#include "runtime.h"
#include "sched.h"
#include "tsan.h"

#define READ(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

static void worker_metrics(weft__worker *w, weft_worker_metrics *m)
{
    const weft__worker_counts *c = &w->counts;
    m->spawned = weft__records_ids_given(w) - READ(c->unspawned);
    m->inline_runs = READ(c->inline_runs);
    m->started = READ(c->started) + m->inline_runs;
    m->stolen = READ(c->stolen);
    m->parked = READ(c->parked);
    m->woken = READ(c->woken);
    weft_time born = READ(c->born), idle, since, now;
    /* Both idle words and the clock of one moment: the worker begins and ends a period under
     * idle_seq (sched.c, idle_begins and idle_ends), reading the moment of the change on the
     * clock inside the odd count. Read here between two even counts, the clock is before that
     * moment if the words are of before it, and after it if they are of after: a snapshot never
     * counts as idle a time the next one counts as busy, nor the other way. */
    for (;;) {
        uint32_t seq = __atomic_load_n(&c->idle_seq, __ATOMIC_ACQUIRE);
        idle = READ(c->idle_ns);
        since = READ(c->idle_since);
        now = weft_now();
#if defined(__x86_64__)
        /* The clock's read (rdtsc) done before the count's second load: no fence orders it
         * against later loads but lfence. (aarch64's clock read is ordered already.) */
        __builtin_ia32_lfence();
#endif
        atomic_thread_fence(memory_order_acquire);
        if (!(seq & 1) && READ(c->idle_seq) == seq)
            break;
        sched_yield(); /* the worker is inside its few stores, or was preempted there */
    }
    if (since && since < now)
        idle += now - since; /* idle now: the time so far counts */
    weft_time alive = born && born < now ? now - born : 0;
    m->idle_ns = idle < alive ? idle : alive;
    m->busy_ns = alive - m->idle_ns;
    int64_t q = weft__deque_size_estimate(&w->spawnq);
    m->spawn_queue = q > 0 ? (uint64_t)q : 0;
    q = weft__deque_size_estimate(&w->readyq);
    m->ready_queue = q > 0 ? (uint64_t)q : 0;
    m->timers = READ(w->timers.count);
    m->cached_stacks = READ(w->stacks.count);
    m->cached_tasks = READ(w->task_cache_count);
    m->cached_scopes = READ(w->scopes.count);
}

static void add(weft_worker_metrics *t, const weft_worker_metrics *m)
{
    t->spawned += m->spawned;
    t->started += m->started;
    t->inline_runs += m->inline_runs;
    t->stolen += m->stolen;
    t->parked += m->parked;
    t->woken += m->woken;
    t->busy_ns += m->busy_ns;
    t->idle_ns += m->idle_ns;
    t->spawn_queue += m->spawn_queue;
    t->ready_queue += m->ready_queue;
    t->timers += m->timers;
    t->cached_stacks += m->cached_stacks;
    t->cached_tasks += m->cached_tasks;
    t->cached_scopes += m->cached_scopes;
}

int weft_runtime_metrics(weft_runtime *rt, weft_metrics *out, size_t size,
                         weft_worker_metrics *worker, unsigned nworker)
{
    if (!out || !size)
        return -EINVAL;
    if (!rt) {
        weft__worker *self = weft__sched_worker();
        if (!self)
            return -EPERM;
        rt = self->rt;
    }
    if (atomic_load_explicit(&rt->shutting_down, memory_order_acquire))
        return -ESHUTDOWN;
    weft_metrics m;
    memset(&m, 0, sizeof(m));
    m.workers = rt->nworkers;
    weft__tsan_ignore_reads_begin();
    for (unsigned i = 0; i < rt->nworkers; i++) {
        weft_worker_metrics one;
        worker_metrics(&rt->workers[i], &one);
        add(&m.total, &one);
        if (worker && i < nworker)
            worker[i] = one;
    }
    m.pool_stacks = READ(rt->stacks.warm);
    weft__tsan_ignore_reads_end();
    m.submitted = atomic_load_explicit(&rt->submitted, memory_order_relaxed);
    m.woken_outside = atomic_load_explicit(&rt->foreign_wakes, memory_order_relaxed);
    m.inject_queue = atomic_load_explicit(&rt->inject_len, memory_order_relaxed);
    weft__blocking_counts(rt, &m.blocking_threads, &m.blocking_idle, &m.blocking_queued);
    memcpy(out, &m, size < sizeof(m) ? size : sizeof(m));
    return 0;
}
