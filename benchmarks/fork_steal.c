// SPDX-License-Identifier: MIT
/*
 * What a fork costs when another worker takes it: one caller on two workers forks again and
 * again, and each time its own function waits until the forked one has started, which only the
 * other worker can do. So every fork is taken: the time per fork is a steal's round trip (the
 * thief finding it, a task record and a stack for it, its run, the caller's wait for its end).
 *
 * Two victims. An `answering` caller keeps forking tiny pairs while it waits, so that a thief's
 * request for its private items (lib/deque.h) is answered at its next push or pop, as in a
 * fork-join program; a `silent` caller spins without a push or pop, so the thief takes the fork
 * with a rescue steal once it gave up asking (some 20 us, then a process-wide barrier).
 *
 * Usage: fork_steal [forks]; prints one line per victim, microseconds per fork taken.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "weft.h"

static atomic_int started;
static int answering;

static int nothing(void *p)
{
    (void)p;
    return 0;
}

static int forked(void *p)
{
    (void)p;
    atomic_store_explicit(&started, 1, memory_order_release);
    return 0;
}

static int here(void *p)
{
    (void)p;
    while (!atomic_load_explicit(&started, memory_order_acquire))
        if (answering)
            weft_fork_join(nothing, NULL, nothing, NULL);
    return 0;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int root(void *p)
{
    int n = *(int *)p;
    weft_metrics a, b;
    weft_runtime_metrics(NULL, &a, sizeof(a), NULL, 0);
    double t0 = now();
    for (int i = 0; i < n; i++) {
        atomic_store(&started, 0);
        int rc = weft_fork_join(forked, NULL, here, NULL);
        if (rc != 0) {
            fprintf(stderr, "fork_steal: weft_fork_join: %d\n", rc);
            return rc;
        }
        if (!answering && i % 64 == 63)
            weft_yield(); /* no watchdog report for the silent caller's long run */
    }
    double seconds = now() - t0;
    weft_runtime_metrics(NULL, &b, sizeof(b), NULL, 0);
    /* Taken forks are the tasks made; the answering caller's tiny forks may be taken too. */
    printf("%-9s victim: %d forks, %llu tasks made, %.2f us per fork\n",
           answering ? "answering" : "silent", n,
           (unsigned long long)(b.total.spawned - a.total.spawned), seconds / n * 1e6);
    return 0;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 5000;
    if (n < 1) {
        fprintf(stderr, "usage: fork_steal [forks]\n");
        return 2;
    }
    weft_config cfg = {.workers = 2};
    for (answering = 1; answering >= 0; answering--)
        if (weft_run(&cfg, root, &n) != 0)
            return 1;
    return 0;
}
