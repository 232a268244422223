// SPDX-License-Identifier: MIT
/*
 * fib(30) with a fork at every call: fib(n-1) offered to other workers, fib(n-2) computed by a
 * plain call, then joined. No cutoff, so the run is dominated by the cost of the fork and the
 * join; fib-serial is the floor. `fib` forks with weft_fork_join (a task only when another
 * worker takes it); `fib-scope` writes the same recursion with a scope, a spawn and a close at
 * every call, which makes a task record for every child.
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>

#define FIB_N 30
#define FIB_EXPECT 832040
#define FIB_CALLS 1346268 /* calls with n >= 2: one fork or spawn each */

struct fib_arg {
    int n;
    long result;
};

static long fib_tasks(int n);
static long fib_forks(int n);

static int fib_task(void *p)
{
    struct fib_arg *a = p;
    a->result = fib_tasks(a->n);
    return 0;
}

static int fib_fork(void *p)
{
    struct fib_arg *a = p;
    a->result = fib_forks(a->n);
    return 0;
}

static long fib_forks(int n)
{
    if (n < 2)
        return n;
    /* Both halves write into this frame: weft_fork_join returns only once both are done. */
    struct fib_arg forked = {.n = n - 1, .result = 0};
    struct fib_arg here = {.n = n - 2, .result = 0};
    int rc = weft_fork_join(fib_fork, &forked, fib_fork, &here);
    if (rc != 0)
        bench_error("weft_fork_join", rc);
    return forked.result + here.result;
}

static long fib_tasks(int n)
{
    if (n < 2)
        return n;
    /* The child writes into the parent's frame: the join below keeps that frame alive. */
    struct fib_arg child = {.n = n - 1, .result = 0};
    weft_scope *s;
    int rc = weft_scope_open(&s, NULL);
    if (rc != 0) {
        bench_error("weft_scope_open", rc);
        return 0;
    }
    rc = weft_spawn(s, fib_task, &child);
    if (rc != 0)
        bench_error("weft_spawn", rc);
    long y = fib_tasks(n - 2);
    rc = weft_scope_close(s); /* join, then release */
    if (rc != 0)
        bench_error("weft_scope_close", rc);
    return child.result + y;
}

struct fib_root {
    int n;
    long (*fib)(int n);
    long result;
    double seconds;
};

/* With WEFT_BENCH_METRICS set, what the workers did during the timed part goes to stderr: the
 * tasks made (at every call for fib-scope; for fib, the forks other workers took), the steals,
 * and the time the workers were busy and idle (what the second worker costs, and where). */
static void report_metrics(const weft_metrics *a, const weft_metrics *b)
{
    const weft_worker_metrics *x = &a->total, *y = &b->total;
    fprintf(stderr,
            "metrics: tasks %llu of %d calls (%.4f%%), stolen %llu, busy %.3f ms, idle %.3f ms\n",
            (unsigned long long)(y->spawned - x->spawned), FIB_CALLS,
            100.0 * (double)(y->spawned - x->spawned) / FIB_CALLS,
            (unsigned long long)(y->stolen - x->stolen), (double)(y->busy_ns - x->busy_ns) / 1e6,
            (double)(y->idle_ns - x->idle_ns) / 1e6);
}

static int fib_root(void *p)
{
    struct fib_root *r = p;
    int metrics = getenv("WEFT_BENCH_METRICS") != NULL;
    weft_metrics before, after;
    if (metrics)
        weft_runtime_metrics(NULL, &before, sizeof(before), NULL, 0);
    double t0 = bench_now();
    r->result = r->fib(r->n);
    r->seconds = bench_now() - t0;
    if (metrics) {
        weft_runtime_metrics(NULL, &after, sizeof(after), NULL, 0);
        report_metrics(&before, &after);
    }
    return 0;
}

static int run_fib(unsigned threads, long (*fib)(int n), bench_result *out)
{
    weft_config cfg;
    bench_config(&cfg, threads);
    struct fib_root r = {.n = FIB_N, .fib = fib};
    int rc = weft_run(&cfg, fib_root, &r);
    if (rc != 0)
        bench_error("weft_run", rc);
    out->seconds = r.seconds;
    out->check = r.result;
    out->expect = FIB_EXPECT;
    return 0;
}

int wl_fib(unsigned threads, bench_result *out)
{
    return run_fib(threads, fib_forks, out);
}

int wl_fib_scope(unsigned threads, bench_result *out)
{
    return run_fib(threads, fib_tasks, out);
}

/* noinline keeps it an honest call tree: the same work a task body would do, minus tasks. */
__attribute__((noinline)) static long fib_plain(int n)
{
    if (n < 2)
        return n;
    return fib_plain(n - 1) + fib_plain(n - 2);
}

int wl_fib_serial(unsigned threads, bench_result *out)
{
    (void)threads;
    /* volatile: the compiler must not fold fib(30) into a constant. */
    volatile int n = FIB_N;
    double t0 = bench_now();
    long v = fib_plain(n);
    out->seconds = bench_now() - t0;
    out->check = v;
    out->expect = FIB_EXPECT;
    return 0;
}
