// SPDX-License-Identifier: MIT
/*
 * semfan: 100,000 tasks in one scope contend for 64 tokens; each holds its token across one
 * yield, so that holders really interleave and the waiters really park.
 * semfan-scope: the same bound expressed by the scope's max_concurrency instead: unstarted
 * children wait without a stack, where semaphore waiters each hold a parked one.
 */
#include "bench.h"

#include <errno.h>
#include <stdatomic.h>

#define SEMFAN_TASKS 100000
#define SEMFAN_TOKENS 64

struct semfan {
    weft_sem *sem; /* NULL for semfan-scope */
    atomic_long counter;
    double seconds;
};

static int semfan_task(void *p)
{
    struct semfan *f = p;
    int rc = weft_sem_acquire(f->sem);
    if (rc != 0) {
        bench_error("weft_sem_acquire", rc);
        return rc;
    }
    rc = weft_yield();
    if (rc != 0)
        bench_error("weft_yield", rc);
    atomic_fetch_add(&f->counter, 1);
    rc = weft_sem_release(f->sem);
    if (rc != 0)
        bench_error("weft_sem_release", rc);
    return 0;
}

static int semfan_scope_task(void *p)
{
    struct semfan *f = p;
    int rc = weft_yield();
    if (rc != 0)
        bench_error("weft_yield", rc);
    atomic_fetch_add(&f->counter, 1);
    return 0;
}

static int semfan_root(void *p)
{
    struct semfan *f = p;
    weft_scope_opts opts = {.name = "semfan"};
    weft_fn fn = semfan_task;
    if (f->sem == NULL) {
        opts.max_concurrency = SEMFAN_TOKENS;
        fn = semfan_scope_task;
    }
    double t0 = bench_now();
    weft_scope *s;
    int rc = weft_scope_open(&s, &opts);
    if (rc != 0) {
        bench_error("weft_scope_open", rc);
        return rc;
    }
    for (int i = 0; i < SEMFAN_TASKS; i++) {
        rc = weft_spawn(s, fn, f);
        if (rc != 0) {
            bench_error("weft_spawn", rc);
            break;
        }
    }
    rc = weft_scope_join(s);
    f->seconds = bench_now() - t0;
    if (rc != 0)
        bench_error("weft_scope_join", rc);
    weft_scope_release(s);
    return 0;
}

static int semfan_run(unsigned threads, int with_sem, bench_result *out)
{
    struct semfan f = {.sem = NULL};
    if (with_sem) {
        int rc = weft_sem_create(&f.sem, SEMFAN_TOKENS);
        if (rc != 0) {
            bench_error("weft_sem_create", rc);
            return 1;
        }
    }
    weft_config cfg;
    bench_config(&cfg, threads);
    int rc = weft_run(&cfg, semfan_root, &f);
    if (rc != 0)
        bench_error("weft_run", rc);
    if (f.sem != NULL) {
        /* Every token must be back: a lost one is a bug even if the count came out right. */
        if (weft_sem_available(f.sem) != SEMFAN_TOKENS)
            bench_error("weft_sem_available", -EPROTO);
        weft_sem_destroy(f.sem);
    }
    out->seconds = f.seconds;
    out->check = atomic_load(&f.counter);
    out->expect = SEMFAN_TASKS;
    return 0;
}

int wl_semfan(unsigned threads, bench_result *out)
{
    return semfan_run(threads, 1, out);
}

int wl_semfan_scope(unsigned threads, bench_result *out)
{
    return semfan_run(threads, 0, out);
}
