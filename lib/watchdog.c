// SPDX-License-Identifier: MIT
/*
 * The watchdog: a thread that samples each worker's progress counter and current task. A worker
 * inside a task whose counter has not moved for longer than the threshold runs a task that does
 * not reach suspension points: it is reported once, with the task's name. The kernel's account
 * of the worker's thread decides what counts: a worker that is runnable is charged only its time
 * on a CPU, and the runtime's own waits on the task's behalf (for malloc's lock, the address
 * space's, a spinlock) are not the task's time (alloc.h).
 */
#include "watchdog.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "futex.h"
#include "sched.h"

/* What the kernel says of a worker's thread (see weft__thread_times). */
static weft__thread_times thread_times_of(weft__worker *w)
{
    weft__thread_times tt = {0, 0, 0, 0};
    int tid = atomic_load_explicit(&w->tid, memory_order_relaxed);
    if (!tid)
        return tt;
    char path[64], stat[512];
    snprintf(path, sizeof(path), "/proc/self/task/%d/schedstat", tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return tt;
    unsigned long long ran = 0, waited = 0;
    int got = fscanf(f, "%llu %llu", &ran, &waited);
    fclose(f);
    snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
    f = fopen(path, "r");
    if (!f || got != 2) {
        if (f)
            fclose(f);
        return tt;
    }
    size_t n = fread(stat, 1, sizeof(stat) - 1, f);
    fclose(f);
    stat[n] = 0;
    const char *end_of_name = strrchr(stat, ')'); /* the name may hold anything but the last ) */
    if (!end_of_name || end_of_name[1] != ' ')
        return tt;
    tt.ran = (weft_time)ran;
    tt.waited = (weft_time)waited;
    tt.runnable = end_of_name[2] == 'R';
    tt.known = 1;
    return tt;
}

/* How long the task running on `w` has held its worker since the watchdog's first still sample
 * (`since`, with the thread's times `then`), as of `now`. A task is reported for the time it
 * held its worker, running or blocked in a call; on a loaded machine the kernel may keep a
 * worker off its CPU for tens of milliseconds, and a task that polls checkpoints would otherwise
 * be reported for time it never had. A thread blocked in the kernel is charged with the time
 * that passed less its waits on a run queue; a runnable one only with its time on a CPU, since
 * the kernel adds a wait on the run queue to the thread's total only once the wait is over.
 * Where the kernel does not say, the time that passed. */
static weft_time time_held(weft_time since, weft__thread_times then, weft_time now,
                           weft__thread_times at)
{
    if (!then.known || !at.known)
        return now - since;
    if (at.runnable)
        return at.ran - then.ran;
    return now - since - (at.waited - then.waited);
}

/* Set on a watchdog's own thread: a report callback that shuts that runtime down would free what
 * the watchdog reads on its return, and join its own thread (weft_runtime_shutdown refuses). */
static _Thread_local weft_runtime *watching;

weft_runtime *weft__watchdog_runtime(void)
{
    return watching;
}

/* The tasks reported lately, by id: a task is reported once, also when hogs take turns on the
 * workers or move between them. A ring of the last REPORTED_KEPT: only a program with more
 * hogging tasks than that hears of one twice. */
#define REPORTED_KEPT 256

typedef struct reported_ids {
    uint64_t id[REPORTED_KEPT];
    unsigned next, n;
} reported_ids;

/* Whether `id` was reported already; if not, it is from now on. */
static int reported_before(reported_ids *r, uint64_t id)
{
    for (unsigned i = 0; i < r->n; i++)
        if (r->id[i] == id)
            return 1;
    r->id[r->next] = id;
    r->next = (r->next + 1) % REPORTED_KEPT;
    if (r->n < REPORTED_KEPT)
        r->n++;
    return 0;
}

static void *watchdog_main(void *arg)
{
    weft_runtime *rt = arg;
    watching = rt;
    reported_ids reported = {{0}, 0, 0}; /* 2 KiB of the thread's stack */
    weft_time limit = rt->cfg.watchdog_ns;
    weft_time period = limit / 4 > WEFT_MSEC ? limit / 4 : WEFT_MSEC;
    while (!atomic_load_explicit(&rt->stopping, memory_order_acquire)) {
        uint32_t seq = atomic_load_explicit(&rt->watchdog_wake, memory_order_acquire);
        if (atomic_load_explicit(&rt->stopping, memory_order_acquire))
            break;
        weft__futex_wait(&rt->watchdog_wake, seq, weft_now() + period);
        weft_time now = weft_now();
        for (unsigned i = 0; i < rt->nworkers; i++) {
            weft__worker *w = &rt->workers[i];
            /* `current` first: its acquire orders our reads of that task's record after the
             * record was written for it. A move of either is news: a task that starts running
             * bumps `progress`, one that takes its stack back from an inline child only changes
             * `current`. */
            weft__task *t = atomic_load_explicit(&w->current, memory_order_acquire);
            uint64_t p = atomic_load_explicit(&w->progress, memory_order_acquire);
            /* A worker in one of the library's own waits (an odd count: malloc's lock, the
             * address space's, a spinlock whose holder waits for a CPU) moves on as far as its
             * task is concerned: with far more workers than CPUs such a wait lasts hundreds of
             * milliseconds, and the task did not ask for it. Its time counts from the first
             * sample after the wait. */
            uint64_t own = atomic_load_explicit(&w->own_waits, memory_order_acquire);
            if (p != w->watch_progress || t != w->watch_task || !t || own != w->watch_own_waits ||
                (own & 1)) {
                w->watch_progress = p;
                w->watch_task = t;
                w->watch_own_waits = own;
                w->watch_since = now;
                w->watch_still = 0;
                continue;
            }
            /* Standing still: the thread's times from the first still sample on (one period
             * after the last move at most, so that moving workers cost no read). */
            weft__thread_times at = thread_times_of(w);
            if (!w->watch_still) {
                w->watch_still = 1;
                w->watch_then = at;
            }
            if (time_held(w->watch_since, w->watch_then, now, at) < limit)
                continue;
            /* Neither moved for `limit`, so the task is still running. Its id and name come
             * from its record, which is recycled, never freed, while the runtime lives: if the
             * task ended meanwhile, the check below drops the report (a record runs again only
             * as a new task, which bumps `progress`).
             * ThreadSanitizer would still see those reads race a recycling spawn, so its builds
             * take the id the worker keeps for them, and name the task by id alone. */
            char name[WEFT__TASK_NAME_MAX + 24];
#ifndef WEFT_TSAN
            uint64_t id = t->id;
            if (t->name[0])
                snprintf(name, sizeof(name), "%.*s", WEFT__TASK_NAME_MAX - 1, t->name);
            else
#else
            uint64_t id = atomic_load_explicit(&w->running_id, memory_order_acquire);
#endif
                snprintf(name, sizeof(name), "task-%llu", (unsigned long long)id);
            if (atomic_load_explicit(&w->progress, memory_order_acquire) != p ||
                atomic_load_explicit(&w->current, memory_order_acquire) != t ||
                atomic_load_explicit(&w->own_waits, memory_order_acquire) != own)
                continue;
            /* Once per task: a task that is reported, then yields, then hogs again is known. */
            if (!reported_before(&reported, id)) {
                char line[WEFT__TASK_NAME_MAX + 256];
                snprintf(line, sizeof(line),
                         "weft: task '%s' has run on worker %u for over %lld ms without reaching a "
                         "suspension point; move blocking calls into weft_blocking() and add "
                         "weft_checkpoint() or weft_yield() to long loops",
                         name, i, (long long)(limit / WEFT_MSEC));
                if (rt->cfg.report)
                    rt->cfg.report(rt->cfg.report_arg, WEFT_REPORT_WATCHDOG, line);
                else
                    fprintf(stderr, "%s\n", line);
            }
        }
    }
    return NULL;
}

void weft__watchdog_start(weft_runtime *rt)
{
    if (rt->cfg.watchdog_ns < 0)
        return;
    atomic_init(&rt->watchdog_wake, 0);
    rt->watchdog_running = pthread_create(&rt->watchdog, NULL, watchdog_main, rt) == 0;
    /* Named here, not by the thread itself: so the name is there once the runtime has started,
     * for whoever lists the threads (top, gdb, /proc), not whenever the thread first runs. */
    if (rt->watchdog_running)
        pthread_setname_np(rt->watchdog, "weft-watchdog");
}

void weft__watchdog_stop(weft_runtime *rt)
{
    if (!rt->watchdog_running)
        return;
    atomic_store_explicit(&rt->stopping, 1, memory_order_seq_cst);
    weft__futex_bump(&rt->watchdog_wake);
    pthread_join(rt->watchdog, NULL);
    rt->watchdog_running = 0;
}
