// SPDX-License-Identifier: MIT
/*
 * yield: two tasks on one worker, each yielding 1,000,000 times, so that every yield is a
 * switch to the other task. Reports nanoseconds per switch.
 */
#include "bench.h"

#include <stdatomic.h>

#define YIELDS 1000000L

static atomic_long yields_done;

static int yielder(void *p)
{
    (void)p;
    long done = 0;
    for (long i = 0; i < YIELDS; i++) {
        int rc = weft_yield();
        if (rc != 0) {
            bench_error("weft_yield", rc);
            break;
        }
        done++;
    }
    atomic_fetch_add(&yields_done, done);
    return 0;
}

static int yield_root(void *p)
{
    double *seconds = p;
    weft_scope *s;
    int rc = weft_scope_open(&s, NULL);
    if (rc != 0) {
        bench_error("weft_scope_open", rc);
        return rc;
    }
    double t0 = bench_now();
    for (int i = 0; i < 2; i++) {
        rc = weft_spawn(s, yielder, NULL);
        if (rc != 0)
            bench_error("weft_spawn", rc);
    }
    rc = weft_scope_join(s);
    *seconds = bench_now() - t0;
    if (rc != 0)
        bench_error("weft_scope_join", rc);
    weft_scope_release(s);
    return 0;
}

/* The contract fixes one worker; `threads` is honoured anyway so that the line says what ran,
 * and tools/bench asks for threads=1 only. */
int wl_yield(unsigned threads, bench_result *out)
{
    weft_config cfg;
    bench_config(&cfg, threads);
    double seconds = 0;
    int rc = weft_run(&cfg, yield_root, &seconds);
    if (rc != 0)
        bench_error("weft_run", rc);
    out->seconds = seconds;
    out->check = atomic_load(&yields_done);
    out->expect = 2 * YIELDS;
    out->ns_per_op = seconds * 1e9 / (2.0 * YIELDS);
    return 0;
}
