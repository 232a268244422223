// SPDX-License-Identifier: MIT
/*
 * weft_runtime_metrics from a foreign thread while the runtime runs a load of spawns, parks,
 * steals and short sleeps (so that workers go idle and busy again all the time): every snapshot
 * succeeds, counts never go back from one snapshot to the next, nor does a worker's busy or idle
 * time, and once the load is over they add up (every task spawned started). Run under TSan and
 * ASan.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "../support.h"

#ifdef UNDER_TSAN
#define ROUNDS 20
#else
#define ROUNDS 200
#endif
#define FAN 50

static atomic_long spawned_by_load;

static int leaf(void *arg)
{
    weft_sem *sem = arg;
    if (weft_sem_acquire(sem) != 0) /* some park: the semaphore is narrow */
        return -1;
    weft_yield();
    if (atomic_fetch_add(&spawned_by_load, 0) % 4 == 0)
        weft_sleep_for(20 * WEFT_USEC); /* the workers idle meanwhile */
    weft_sem_release(sem);
    return 0;
}

static int load(void *arg)
{
    (void)arg;
    weft_sem *sem;
    if (weft_sem_create(&sem, 2) != 0)
        return -ENOMEM;
    int rc = 0;
    for (int r = 0; r < ROUNDS && rc == 0; r++) {
        weft_scope *s;
        rc = weft_scope_open(&s, NULL);
        for (int i = 0; rc == 0 && i < FAN; i++) {
            rc = weft_spawn(s, leaf, sem);
            if (rc == 0)
                atomic_fetch_add(&spawned_by_load, 1);
        }
        int jrc = weft_scope_close(s);
        if (rc == 0)
            rc = jrc;
    }
    weft_sem_destroy(sem);
    return rc;
}

static int fail(const char *what, unsigned long long a, unsigned long long b)
{
    fprintf(stderr, "metrics_stress: %s (%llu, %llu)\n", what, a, b);
    return 1;
}

int main(void)
{
    weft_runtime *rt;
    weft_config cfg = {.workers = 3};
    if (weft_runtime_start(&rt, &cfg) != 0)
        return fail("start", 0, 0);
    weft_handle *h;
    if (weft_submit(rt, load, NULL, &h) != 0)
        return fail("submit", 0, 0);
    weft_metrics prev = {0}, m;
    weft_worker_metrics w[3], prev_w[3] = {{0}};
    long snapshots = 0;
    for (;;) {
        int status;
        int finished = weft_handle_wait(h, 0, &status) == 0;
        if (weft_runtime_metrics(rt, &m, sizeof(m), w, 3) != 0)
            return fail("snapshot", 0, 0);
        snapshots++;
        if (m.total.spawned < prev.total.spawned || m.total.parked < prev.total.parked ||
            m.total.woken < prev.total.woken || m.total.stolen < prev.total.stolen)
            return fail("a count went back", m.total.spawned, prev.total.spawned);
        unsigned long long sum = 0;
        for (int i = 0; i < 3; i++) {
            sum += w[i].spawned;
            if (w[i].busy_ns < prev_w[i].busy_ns)
                return fail("a worker's busy time went back (ns)", (unsigned long long)w[i].busy_ns,
                            (unsigned long long)prev_w[i].busy_ns);
            if (w[i].idle_ns < prev_w[i].idle_ns)
                return fail("a worker's idle time went back (ns)", (unsigned long long)w[i].idle_ns,
                            (unsigned long long)prev_w[i].idle_ns);
            prev_w[i] = w[i];
        }
        if (sum != m.total.spawned)
            return fail("workers do not add up to the total", sum, m.total.spawned);
        prev = m;
        if (finished) {
            if (status != 0)
                return fail("load failed", (unsigned long long)-status, 0);
            break;
        }
    }
    weft_handle_release(h);
    /* Quiet now: exact. */
    if (weft_runtime_metrics(rt, &m, sizeof(m), NULL, 0) != 0)
        return fail("snapshot", 0, 0);
    long n = atomic_load(&spawned_by_load);
    if (m.total.spawned != (unsigned long long)n)
        return fail("spawned", m.total.spawned, (unsigned long long)n);
    if (m.total.started != (unsigned long long)n + 1)
        return fail("started", m.total.started, (unsigned long long)n + 1);
    if (m.submitted != 1)
        return fail("submitted", m.submitted, 1);
    if (weft_runtime_shutdown(rt) != 0)
        return fail("shutdown", 0, 0);
    printf("metrics_stress: %ld snapshots, %ld tasks, ok\n", snapshots, n);
    return 0;
}
