// SPDX-License-Identifier: MIT
/*
 * timers: how late sleeping tasks wake. 100 tasks each sleep 20 times for a random 1-10 ms;
 * every wake-up records weft_now() minus the deadline. Reports the median and the 99th
 * percentile of that lateness in microseconds (the contract's seconds= is the whole run). No
 * peer runs it (benchmarks/README.md): it is weft's own check of its timer promise (under
 * 100 us at the median, under 1 ms at the 99th percentile on an idle machine). check = the
 * number of wake-ups.
 */
#include <stdlib.h>

#include "bench.h"

#define TIMER_TASKS 100
#define TIMER_SLEEPS 20
#define TIMER_SAMPLES (TIMER_TASKS * TIMER_SLEEPS)

struct timers {
    weft_time lateness[TIMER_SAMPLES];
};

struct sleeper {
    struct timers *t;
    int index;
};

static int sleeper_task(void *p)
{
    struct sleeper *s = p;
    unsigned seed = (unsigned)s->index * 2654435761u + 1;
    for (int i = 0; i < TIMER_SLEEPS; i++) {
        seed = seed * 1103515245u + 12345u;
        weft_time deadline = weft_now() + WEFT_MSEC + (weft_time)(seed >> 8) % (9 * WEFT_MSEC);
        int rc = weft_sleep_until(deadline);
        if (rc != 0)
            bench_error("weft_sleep_until", rc);
        s->t->lateness[s->index * TIMER_SLEEPS + i] = weft_now() - deadline;
    }
    return 0;
}

struct timers_root {
    struct timers *t;
    struct sleeper s[TIMER_TASKS];
};

static int timers_root(void *p)
{
    struct timers_root *r = p;
    weft_scope *scope;
    int rc = weft_scope_open(&scope, NULL);
    if (rc != 0) {
        bench_error("weft_scope_open", rc);
        return rc;
    }
    for (int i = 0; i < TIMER_TASKS; i++) {
        r->s[i] = (struct sleeper){.t = r->t, .index = i};
        rc = weft_spawn(scope, sleeper_task, &r->s[i]);
        if (rc != 0)
            bench_error("weft_spawn", rc);
    }
    return weft_scope_join(scope);
}

static int by_value(const void *a, const void *b)
{
    weft_time x = *(const weft_time *)a, y = *(const weft_time *)b;
    return (x > y) - (x < y);
}

int wl_timers(unsigned threads, bench_result *out)
{
    static struct timers t;
    static struct timers_root r;
    r.t = &t;
    weft_config cfg;
    bench_config(&cfg, threads);
    double t0 = bench_now();
    int rc = weft_run(&cfg, timers_root, &r);
    out->seconds = bench_now() - t0;
    if (rc != 0)
        bench_error("weft_run", rc);
    long long woke = 0;
    for (int i = 0; i < TIMER_SAMPLES; i++)
        woke += t.lateness[i] >= 0;
    qsort(t.lateness, TIMER_SAMPLES, sizeof(t.lateness[0]), by_value);
    out->p50_us = (double)t.lateness[TIMER_SAMPLES / 2] / WEFT_USEC;
    out->p99_us = (double)t.lateness[TIMER_SAMPLES * 99 / 100] / WEFT_USEC;
    out->check = woke;
    out->expect = TIMER_SAMPLES;
    return 0;
}
