// SPDX-License-Identifier: MIT
/*
 * blocking: the round trip of handing a trivial function to the blocking pool and getting the
 * task back, one call after another. blocking-pthread: the naive way to keep a blocking call
 * off the caller, a thread created and joined per call, on the same function.
 */
#include "bench.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define BLOCKING_CALLS 10000

static atomic_long calls_made;

/* Trivial on purpose: the measurement is the hand-off, not the work. */
static int trivial(void *arg)
{
    (void)arg;
    atomic_fetch_add_explicit(&calls_made, 1, memory_order_relaxed);
    return 0;
}

static int blocking_root(void *p)
{
    double *seconds = p;
    double t0 = bench_now();
    for (int i = 0; i < BLOCKING_CALLS; i++) {
        int result = -1;
        int rc = weft_blocking(trivial, NULL, &result);
        if (rc != 0 || result != 0) {
            bench_error("weft_blocking", rc != 0 ? rc : result);
            break;
        }
    }
    *seconds = bench_now() - t0;
    return 0;
}

int wl_blocking(unsigned threads, bench_result *out)
{
    weft_config cfg;
    bench_config(&cfg, threads);
    double seconds = 0;
    int rc = weft_run(&cfg, blocking_root, &seconds);
    if (rc != 0)
        bench_error("weft_run", rc);
    out->seconds = seconds;
    out->check = atomic_load(&calls_made);
    out->expect = BLOCKING_CALLS;
    out->ns_per_op = seconds * 1e9 / BLOCKING_CALLS;
    return 0;
}

static void *trivial_thread(void *arg)
{
    return (void *)(intptr_t)trivial(arg);
}

/* Runs on the main thread without a runtime: it is what a program without weft would do. */
int wl_blocking_pthread(unsigned threads, bench_result *out)
{
    (void)threads;
    double t0 = bench_now();
    for (int i = 0; i < BLOCKING_CALLS; i++) {
        pthread_t t;
        int rc = pthread_create(&t, NULL, trivial_thread, NULL);
        if (rc != 0) {
            bench_error("pthread_create", rc);
            break;
        }
        pthread_join(t, NULL);
    }
    double seconds = bench_now() - t0;
    out->seconds = seconds;
    out->check = atomic_load(&calls_made);
    out->expect = BLOCKING_CALLS;
    out->ns_per_op = seconds * 1e9 / BLOCKING_CALLS;
    return 0;
}
