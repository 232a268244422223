// SPDX-License-Identifier: MIT
/*
 * Steady submission: plain threads feed a long-lived runtime for a long time, each keeping a few
 * submissions in flight (submit, and once WINDOW are out, wait for the oldest and release it),
 * while a task on the workers keeps spawning and joining children of its own. Records of
 * submitted tasks are taken off the workers and end on them, and the workers' own spawns take
 * records from the same runtime: a plain thread that submits for ever must not have the runtime
 * carve a record for each submission.
 *
 * Checked: every submission is accepted and runs exactly once, its handle reports the task's
 * value; the churning task's children all run; and at the end the runtime's record chunks
 * (weft__records_mapped_bytes) stay under a bound that the records of all the submissions
 * would pass many times over.
 *
 * Usage: submit_steady [submissions per thread]
 */
#define STRESS_NAME "submit_steady"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "../support.h"
#include "records.h"
#include "weft.h"

#define WORKERS 4
#define SUBMITTERS 4
#define WINDOW 8
#define CHURN_CHILDREN 16

/* Under ThreadSanitizer each task costs a TSan fiber (a millisecond or more): fewer submissions,
 * the same interleavings. */
#ifdef UNDER_TSAN
#define DEFAULT_PER_THREAD 5000
#else
#define DEFAULT_PER_THREAD 50000
#endif

/* Four workers may each map a small chunk and a 2 MiB one of their own, and keep a few hundred
 * free records each (WEFT__TASK_CACHE_MAX); 16 MiB is far above that and far below the records of
 * 200,000 submissions (about 50 MiB). Checked only when there are at least that many. */
#define MAPPED_BOUND ((size_t)16 << 20)
#define BOUND_FROM (SUBMITTERS * 50000L)

static int per_thread;
static atomic_int *runs; /* per submission, [submitter * per_thread + i] */

static int job_fn(void *p)
{
    intptr_t k = (intptr_t)p;
    atomic_fetch_add(&runs[k], 1);
    /* Some park once, to end on another worker than the one they began on. */
    if (k % 3 == 0) {
        int rc = weft_yield();
        if (rc)
            return rc;
    }
    return (int)(k % 1000);
}

static struct {
    weft_runtime *rt;
    atomic_int go, stop;
    atomic_long churned, churn_rounds;
} S;

static int churn_child(void *p)
{
    (void)p;
    atomic_fetch_add(&S.churned, 1);
    return 0;
}

/* Spawns and joins children on the workers until told to stop. */
static int churn_fn(void *p)
{
    (void)p;
    while (!atomic_load(&S.stop)) {
        weft_scope *s;
        int rc = weft_scope_open(&s, NULL);
        if (rc)
            return rc;
        int spawned = 0;
        for (int i = 0; i < CHURN_CHILDREN; i++)
            if (weft_spawn(s, churn_child, NULL) == 0)
                spawned++;
        rc = weft_scope_close(s);
        CHECK(rc == 0 && spawned == CHURN_CHILDREN, "churn round: %d spawned, close %d", spawned,
              rc);
        atomic_fetch_add(&S.churn_rounds, 1);
        if ((rc = weft_yield()) != 0)
            return rc;
    }
    return 0;
}

/* Waits for `h`, which runs submission `k`, checks its status and releases it. */
static void finish(weft_handle *h, long k)
{
    int st = 12345;
    int rc = weft_handle_wait(h, WEFT_NEVER, &st);
    CHECK(rc == 0, "wait for submission %ld: %d", k, rc);
    CHECK(st == (int)(k % 1000), "submission %ld reported %d", k, st);
    CHECK(weft_handle_release(h) == 0, "release");
}

static void *submitter_main(void *p)
{
    long base = (long)(intptr_t)p * per_thread, n = per_thread;
    weft_handle *window[WINDOW];
    long first = 0; /* oldest submission in flight, relative to base */
    while (!atomic_load(&S.go))
        sched_yield();
    for (long i = 0; i < n; i++) {
        if (i - first == WINDOW) {
            finish(window[first % WINDOW], base + first);
            first++;
        }
        weft_handle *h = NULL;
        int rc = weft_submit(S.rt, job_fn, (void *)(intptr_t)(base + i), &h);
        CHECK(rc == 0, "submit %ld: %d", base + i, rc);
        if (rc) {
            n = i; /* the rest count as never run */
            break;
        }
        window[i % WINDOW] = h;
    }
    for (long i = first; i < n; i++)
        finish(window[i % WINDOW], base + i);
    return NULL;
}

int main(int argc, char **argv)
{
    per_thread = argc > 1 ? atoi(argv[1]) : DEFAULT_PER_THREAD;
    if (per_thread <= 0)
        per_thread = 1;
    long total = (long)SUBMITTERS * per_thread;
    runs = calloc((size_t)total, sizeof(*runs));
    if (!runs)
        return 1;

    weft_config cfg = {.workers = WORKERS, .watchdog_ns = -1};
    int rc = weft_runtime_start(&S.rt, &cfg);
    CHECK(rc == 0, "runtime_start %d", rc);
    if (rc)
        return 1;
    weft_handle *churn;
    rc = weft_submit(S.rt, churn_fn, NULL, &churn);
    CHECK(rc == 0, "churn submit %d", rc);
    if (rc)
        return 1;

    pthread_t th[SUBMITTERS];
    for (int i = 0; i < SUBMITTERS; i++)
        if (pthread_create(&th[i], NULL, submitter_main, (void *)(intptr_t)i) != 0) {
            fprintf(stderr, "submit_steady: pthread_create failed\n");
            return 1;
        }
    atomic_store(&S.go, 1);
    for (int i = 0; i < SUBMITTERS; i++)
        pthread_join(th[i], NULL);
    atomic_store(&S.stop, 1);
    int st = 1;
    CHECK(weft_handle_wait(churn, WEFT_NEVER, &st) == 0 && st == 0, "churn status %d", st);
    weft_handle_release(churn);
    size_t mapped = weft__records_mapped_bytes(S.rt);
    CHECK(weft_runtime_shutdown(S.rt) == 0, "shutdown");

    long lost = 0, twice = 0;
    for (long k = 0; k < total; k++) {
        int n = atomic_load(&runs[k]);
        lost += n == 0;
        twice += n > 1;
    }
    CHECK(lost == 0 && twice == 0, "of %ld submissions %ld never ran, %ld ran more than once",
          total, lost, twice);
    long rounds = atomic_load(&S.churn_rounds);
    CHECK(atomic_load(&S.churned) == rounds * CHURN_CHILDREN, "churn: %ld children in %ld rounds",
          atomic_load(&S.churned), rounds);
    if (total >= BOUND_FROM)
        CHECK(mapped <= MAPPED_BOUND, "%zu bytes of record chunks after %ld submissions", mapped,
              total);
    free(runs);
    int bad = atomic_load(&failures);
    printf("submit_steady: %s: %ld submissions from %d threads, %ld churn rounds, %zu bytes of "
           "record chunks, %d failed checks\n",
           bad ? "FAIL" : "ok", total, SUBMITTERS, rounds, mapped, bad);
    return bad ? 1 : 0;
}
