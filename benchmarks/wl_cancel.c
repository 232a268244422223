// SPDX-License-Identifier: MIT
/*
 * cancel: 100,000 tasks parked in an hour-long sleep; time from weft_scope_cancel until the
 * join returns, and peak RSS per parked task.
 * million: 1,000,000 such tasks under the default configuration; time to spawn and park them
 * all, and RSS per task. Both check that every task saw the cancellation.
 */
#include "bench.h"

#include <errno.h>
#include <stdatomic.h>

struct park {
    long tasks;
    int time_cancel; /* 1: report the cancel-to-join time; 0: the spawn-and-park time */
    atomic_long parked;
    atomic_long cancelled;
    double seconds;
    double rss_per_task;
};

static int park_task(void *p)
{
    struct park *k = p;
    /* Counted just before parking: the root tolerates the gap with a few extra yields. */
    atomic_fetch_add_explicit(&k->parked, 1, memory_order_relaxed);
    int rc = weft_sleep_for(3600 * WEFT_SEC);
    if (rc == -ECANCELED) {
        atomic_fetch_add_explicit(&k->cancelled, 1, memory_order_relaxed);
        return 0;
    }
    /* 0 would mean the hour passed; anything else is an error of the sleep itself. */
    bench_error("weft_sleep_for", rc == 0 ? -EPROTO : rc);
    return rc == 0 ? -EPROTO : rc;
}

static int park_root(void *p)
{
    struct park *k = p;
    long long rss_before = bench_rss_now();
    double t0 = bench_now();
    weft_scope *s;
    int rc = weft_scope_open(&s, NULL);
    if (rc != 0) {
        bench_error("weft_scope_open", rc);
        return rc;
    }
    for (long i = 0; i < k->tasks; i++) {
        rc = weft_spawn(s, park_task, k);
        if (rc != 0) {
            bench_error("weft_spawn", rc);
            break;
        }
    }
    /* Yielding (not sleeping) keeps the root on the run queue, so it sees the last park
     * within one scheduling round instead of a timer tick later. */
    while (rc == 0 && atomic_load_explicit(&k->parked, memory_order_relaxed) < k->tasks) {
        rc = weft_yield();
        if (rc != 0)
            bench_error("weft_yield", rc);
    }
    for (int i = 0; i < 8; i++)
        weft_yield();
    double t_parked = bench_now();
    long long rss_peak = bench_rss_peak();
    k->rss_per_task = (double)(rss_peak - rss_before) / (double)k->tasks;

    double t1 = bench_now();
    rc = weft_scope_cancel(s);
    if (rc != 0)
        bench_error("weft_scope_cancel", rc);
    rc = weft_scope_join(s);
    double t2 = bench_now();
    /* An explicit cancel of the scope it owns may be reported either way by the join. */
    if (rc != 0 && rc != -ECANCELED)
        bench_error("weft_scope_join", rc);
    weft_scope_release(s);
    k->seconds = k->time_cancel ? t2 - t1 : t_parked - t0;
    return 0;
}

static int park_run(unsigned threads, long tasks, int time_cancel, bench_result *out)
{
    weft_config cfg;
    bench_config(&cfg, threads);
    struct park k = {.tasks = tasks, .time_cancel = time_cancel};
    int rc = weft_run(&cfg, park_root, &k);
    if (rc != 0)
        bench_error("weft_run", rc);
    out->seconds = k.seconds;
    out->check = atomic_load(&k.cancelled);
    out->expect = tasks;
    out->rss_per_task = k.rss_per_task;
    return 0;
}

int wl_cancel(unsigned threads, bench_result *out)
{
    return park_run(threads, 100000, 1, out);
}

int wl_million(unsigned threads, bench_result *out)
{
    return park_run(threads, 1000000, 0, out);
}
