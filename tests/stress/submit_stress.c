// SPDX-License-Identifier: MIT
/*
 * Submission stress: plain threads submit work to a long-lived runtime while the main thread
 * shuts it down. Each handle is waited for, waited for with a short deadline and then cancelled,
 * cancelled and waited for, or released at once (the task finishing on its own).
 *
 * A gate task keeps the runtime alive (shutdown waits for every submitted task) until each
 * submitter has stopped, so that no submit can come after the shutdown returned (that would be
 * invalid use); submits that race with the beginning of the shutdown are what is tested.
 *
 * Checked: every accepted submission runs exactly once, a refused one (-ESHUTDOWN, and only
 * that) never runs; a handle reports the task's status (its value, or -ECANCELED when it was
 * cancelled by its handle or by the shutdown); a wait with a deadline times out only for a task
 * still running; shutdown cancels what is left.
 *
 * Usage: submit_stress [iterations [seed]]
 */
#define STRESS_NAME "submit_stress"
#define STRESS_SEEDED

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../support.h"
#include "weft.h"

#ifdef UNDER_TSAN
#define DEFAULT_ITERATIONS 8
#define QUOTA 25
#else
#define DEFAULT_ITERATIONS 150
#define QUOTA 150
#endif

#define SUBMITTERS 6

enum kind { IMMEDIATE, SHORT_SLEEP, FOREVER, CHILDREN, NKINDS };
enum action { WAIT, CANCEL_WAIT, DEADLINE_WAIT, RELEASE, NACTIONS };

typedef struct job {
    int kind;
    int value;
    weft_time sleep;
    int accepted;
    atomic_int runs;
} job;

static job jobs[SUBMITTERS][QUOTA];

static struct {
    atomic_long accepted, refused, waited, timed_out, cancelled_status, released, iterations;
} stats;

static int child_fn(void *p)
{
    (void)p;
    int rc = weft_yield();
    return rc ? rc : weft_sleep_for(20 * WEFT_USEC);
}

static int job_fn(void *p)
{
    job *j = p;
    atomic_fetch_add(&j->runs, 1);
    int rc = 0;
    switch (j->kind) {
    case SHORT_SLEEP:
        rc = weft_sleep_for(j->sleep);
        break;
    case FOREVER:
        rc = weft_sleep_for(HOUR);
        CHECK(rc == -ECANCELED, "a task sleeping for ever woke with %d", rc);
        break;
    case CHILDREN: {
        weft_scope *s;
        rc = weft_scope_open(&s, NULL);
        if (rc)
            break;
        for (int i = 0; i < 3; i++)
            if (weft_spawn(s, child_fn, NULL) != 0)
                break;
        rc = weft_scope_join(s);
        weft_scope_release(s);
        break;
    }
    default:
        break;
    }
    if (rc) {
        CHECK(rc == -ECANCELED, "job saw %d", rc);
        return rc;
    }
    return j->value;
}

/* The status a handle may report for `j`; `cancelled`: its handle or the shutdown cancelled it. */
static int status_ok(const job *j, int st)
{
    if (st == -ECANCELED)
        return 1; /* a handle cancel or the shutdown may reach any task before it ends */
    return j->kind != FOREVER && st == j->value;
}

/* ---- one iteration --------------------------------------------------------------------------- */

static struct {
    weft_runtime *rt;
    atomic_int go;
    atomic_int stopped;   /* submitters that will submit no more */
    atomic_int submitted; /* accepted so far, all submitters */
    atomic_int gate_cancelled;
} I;

static int gate_fn(void *p)
{
    (void)p;
    int rc = weft_sleep_for(HOUR); /* until the shutdown cancels it */
    CHECK(rc == -ECANCELED, "gate woke with %d", rc);
    atomic_store(&I.gate_cancelled, 1);
    /* Every suspension point answers -ECANCELED now: hold this worker until the submitters are
     * done, which keeps the runtime (and `I.rt`) alive for their last submits. */
    while (atomic_load(&I.stopped) < SUBMITTERS)
        sched_yield();
    return 0;
}

typedef struct submitter {
    int index;
    uint64_t seed;
} submitter;

static void *submitter_main(void *p)
{
    submitter *s = p;
    uint64_t rng = s->seed;
    while (!atomic_load(&I.go))
        sched_yield();
    for (int i = 0; i < QUOTA; i++) {
        job *j = &jobs[s->index][i];
        j->kind = (int)below(&rng, NKINDS);
        j->value = (int)below(&rng, 1000) - 500;
        j->sleep = (weft_time)below(&rng, 300) * WEFT_USEC;
        weft_handle *h = NULL;
        int rc = weft_submit(I.rt, job_fn, j, &h);
        if (rc) {
            CHECK(rc == -ESHUTDOWN, "submit returned %d", rc);
            atomic_fetch_add(&stats.refused, 1);
            break; /* shutting down: no more submits from this thread */
        }
        j->accepted = 1;
        atomic_fetch_add(&stats.accepted, 1);
        atomic_fetch_add(&I.submitted, 1);
        int action = (int)below(&rng, NACTIONS);
        if (j->kind == FOREVER && action == WAIT)
            action = CANCEL_WAIT;
        int st = 77777;
        switch (action) {
        case WAIT:
            CHECK(weft_handle_wait(h, WEFT_NEVER, &st) == 0, "wait");
            CHECK(status_ok(j, st), "kind %d value %d: status %d", j->kind, j->value, st);
            atomic_fetch_add(&stats.waited, 1);
            break;
        case CANCEL_WAIT:
            CHECK(weft_handle_cancel(h) == 0, "cancel");
            CHECK(weft_handle_wait(h, WEFT_NEVER, &st) == 0, "wait");
            CHECK(status_ok(j, st), "kind %d value %d: status %d", j->kind, j->value, st);
            if (j->kind == FOREVER)
                CHECK(st == -ECANCELED, "a cancelled endless task reported %d", st);
            atomic_fetch_add(&stats.waited, 1);
            break;
        case DEADLINE_WAIT:
            rc = weft_handle_wait(h, weft_now() + (weft_time)below(&rng, 200) * WEFT_USEC, &st);
            if (rc == -ETIMEDOUT) {
                CHECK(st == 77777, "a timed-out wait wrote a status");
                atomic_fetch_add(&stats.timed_out, 1);
                CHECK(weft_handle_cancel(h) == 0, "cancel");
                CHECK(weft_handle_wait(h, WEFT_NEVER, &st) == 0, "wait");
            } else {
                CHECK(rc == 0, "wait with a deadline returned %d", rc);
                CHECK(j->kind != FOREVER || st == -ECANCELED, "endless task ended by itself");
            }
            CHECK(status_ok(j, st), "kind %d value %d: status %d", j->kind, j->value, st);
            atomic_fetch_add(&stats.waited, 1);
            break;
        default:
            atomic_fetch_add(&stats.released, 1);
            break;
        }
        if (st == -ECANCELED)
            atomic_fetch_add(&stats.cancelled_status, 1);
        CHECK(weft_handle_release(h) == 0, "release");
    }
    atomic_fetch_add(&I.stopped, 1);
    return NULL;
}

static void one_iteration(uint64_t *rng)
{
    memset(jobs, 0, sizeof(jobs));
    atomic_store(&I.go, 0);
    atomic_store(&I.stopped, 0);
    atomic_store(&I.submitted, 0);
    atomic_store(&I.gate_cancelled, 0);
    weft_config cfg = {.workers = 2 + below(rng, 3), .watchdog_ns = -1};
    int rc = weft_runtime_start(&I.rt, &cfg);
    CHECK(rc == 0, "runtime_start %d", rc);
    if (rc)
        return;
    weft_handle *gate;
    rc = weft_submit(I.rt, gate_fn, NULL, &gate);
    CHECK(rc == 0, "gate submit %d", rc);
    if (rc)
        return;

    static submitter subs[SUBMITTERS];
    pthread_t th[SUBMITTERS];
    int started = 0;
    for (int i = 0; i < SUBMITTERS; i++) {
        subs[i] = (submitter){.index = i, .seed = next_rand(rng)};
        if (pthread_create(&th[i], NULL, submitter_main, &subs[i]) != 0) {
            CHECK(0, "pthread_create");
            atomic_fetch_add(&I.stopped, 1);
            continue;
        }
        started |= 1 << i;
    }
    atomic_store(&I.go, 1);
    /* Shut down somewhere in the middle of the submissions (or after all of them). */
    int when = (int)below(rng, SUBMITTERS * QUOTA);
    while (atomic_load(&I.submitted) < when && atomic_load(&I.stopped) < SUBMITTERS)
        sched_yield();
    rc = weft_runtime_shutdown(I.rt);
    CHECK(rc == 0, "shutdown %d", rc);
    CHECK(atomic_load(&I.stopped) == SUBMITTERS, "shutdown returned before the gate let go");
    for (int i = 0; i < SUBMITTERS; i++)
        if (started & (1 << i))
            pthread_join(th[i], NULL);
    CHECK(atomic_load(&I.gate_cancelled) == 1, "the shutdown did not cancel the gate");
    int st = 1;
    CHECK(weft_handle_wait(gate, WEFT_NEVER, &st) == 0 && st == 0, "gate status %d", st);
    weft_handle_release(gate);

    for (int i = 0; i < SUBMITTERS; i++)
        for (int k = 0; k < QUOTA; k++) {
            job *j = &jobs[i][k];
            int runs = atomic_load(&j->runs);
            CHECK(runs == (j->accepted ? 1 : 0), "job %d/%d (accepted %d) ran %d times", i, k,
                  j->accepted, runs);
        }
    atomic_fetch_add(&stats.iterations, 1);
}

int main(int argc, char **argv)
{
    int iterations = argc > 1 ? atoi(argv[1]) : DEFAULT_ITERATIONS;
    uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 0) : (uint64_t)weft_now();
    run_seed = (unsigned long long)seed;
    /* First, so that a run a sanitizer aborts can still be repeated with the same seed. */
    printf("submit_stress: seed %llu\n", run_seed);
    fflush(stdout);
    for (int it = 0; it < iterations && atomic_load(&failures) == 0; it++)
        one_iteration(&seed);
    int bad = atomic_load(&failures);
    printf("submit_stress: %s: %ld iterations, %ld submits accepted, %ld refused by the shutdown, "
           "%ld handles waited (%ld timed out first, %ld reported -ECANCELED), %ld released at "
           "once, %d failed checks, seed %llu\n",
           bad ? "FAIL" : "ok", atomic_load(&stats.iterations), atomic_load(&stats.accepted),
           atomic_load(&stats.refused), atomic_load(&stats.waited), atomic_load(&stats.timed_out),
           atomic_load(&stats.cancelled_status), atomic_load(&stats.released), bad, run_seed);
    return bad ? 1 : 0;
}
