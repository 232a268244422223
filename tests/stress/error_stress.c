// SPDX-License-Identifier: MIT
/*
 * Error-group stress: bursts of children failing at the same instant on four workers.
 *
 *   collect    every child waits at a barrier, then most fail at once with assorted codes:
 *              every failure is recorded exactly once, with its code, message and task id, and
 *              join returns the first one recorded;
 *   fail-fast  thousands of children wait at a barrier and fail at once: the even ones fail
 *              whatever happens (a failure after the cancel is still a failure), the odd ones
 *              give up with -ECANCELED if they see the cancel first. Exactly the children that
 *              returned a failure are recorded (each once), the cancelled ones are not, and
 *              join returns the failure;
 *   nested     middle tasks hand their inner groups up with weft_fail_group concurrently: the
 *              outer group holds every unhandled leaf failure exactly once with its origin.
 *
 * Usage: error_stress [rounds [seed]]
 */
#define STRESS_NAME "error_stress"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../support.h"
#include "weft.h"

/* Under TSan every task that gets a stack of its own costs a millisecond or more: smaller bursts
 * and fewer rounds keep the default run within its time budget. */
#ifdef UNDER_TSAN
#define DEFAULT_ROUNDS 2
#define NCOLLECT 60
#define NFAILFAST 250
#define NMID 6
#define NLEAF 8
#else
#define DEFAULT_ROUNDS 30
#define NCOLLECT 300
#define NFAILFAST 3000
#define NMID 12
#define NLEAF 16
#endif

static struct {
    atomic_long collected, failfast_failed, failfast_cancelled, handed_up, rounds;
} stats;

/* A barrier on a drained semaphore: the first n-1 tasks park in weft_sem_acquire, the last one
 * releases them all at once (no polling: thousands of waiters cost one park each). */
typedef struct barrier {
    weft_sem *sem;
    atomic_int arrived;
    int n;
} barrier;

static void barrier_init(barrier *b, int n)
{
    CHECK(weft_sem_create(&b->sem, (unsigned)n) == 0, "sem_create");
    for (int i = 0; i < n; i++)
        CHECK(weft_sem_try_acquire(b->sem) == 0, "drain");
    atomic_store(&b->arrived, 0);
    b->n = n;
}

/* 0 once all n have arrived, or the cancel code if the task's scope was cancelled first. */
static int barrier_wait(barrier *b)
{
    if (atomic_fetch_add(&b->arrived, 1) + 1 == b->n) {
        for (int i = 0; i < b->n - 1; i++)
            CHECK(weft_sem_release(b->sem) == 0, "barrier release");
        return weft_checkpoint();
    }
    return weft_sem_acquire(b->sem);
}

static void barrier_destroy(barrier *b)
{
    CHECK(weft_sem_destroy(b->sem) == 0, "a task still waits at the barrier");
}

/* ---- collect --------------------------------------------------------------------------------- */

static struct {
    barrier bar;
    uint64_t id[NCOLLECT];
    int marks[NCOLLECT];
} C;

static int collect_code(int i)
{
    static const int codes[] = {0, -EIO, -ENOENT, -EPIPE, -EIO, -EACCES, 0, -EIO};
    return codes[i % 8];
}

static int collect_child(void *p)
{
    int i = (int)(intptr_t)p;
    C.id[i] = weft_task_id();
    int rc = barrier_wait(&C.bar);
    CHECK(rc == 0, "collect child %d: barrier %d", i, rc);
    int code = collect_code(i);
    return code ? weft_fail(code, "c%d", i) : 0;
}

static void collect_burst(void)
{
    memset(&C, 0, sizeof(C));
    barrier_init(&C.bar, NCOLLECT);
    weft_scope *s;
    weft_scope_opts o = {.policy = WEFT_COLLECT, .name = "burst"};
    if (weft_scope_open(&s, &o) != 0) {
        CHECK(0, "open");
        return;
    }
    for (int i = 0; i < NCOLLECT; i++)
        CHECK(weft_spawn(s, collect_child, (void *)(intptr_t)i) == 0, "spawn");
    int jr = weft_scope_join(s);
    size_t n = weft_scope_error_count(s);
    int expect = 0;
    for (int i = 0; i < NCOLLECT; i++)
        expect += collect_code(i) != 0;
    CHECK(n == (size_t)expect, "%zu failures recorded, %d happened", n, expect);
    CHECK(n == 0 || jr == weft_scope_error(s, 0)->code, "join %d is not the first failure", jr);
    for (size_t k = 0; k < n; k++) {
        const weft_error *e = weft_scope_error(s, k);
        int i = -1;
        if (sscanf(e->message, "c%d", &i) != 1 || i < 0 || i >= NCOLLECT) {
            CHECK(0, "unexpected message '%s'", e->message);
            continue;
        }
        C.marks[i]++;
        CHECK(e->code == collect_code(i), "child %d: code %d", i, e->code);
        CHECK(e->task_id == C.id[i], "child %d: task id", i);
        CHECK(strcmp(e->scope, "burst") == 0, "scope '%s'", e->scope);
    }
    static const int codes[] = {-EIO, -ENOENT, -EPIPE, -EACCES};
    size_t split = 0;
    for (int c = 0; c < 4; c++)
        split += weft_scope_error_count_code(s, codes[c]);
    CHECK(split == n, "count by code adds up to %zu of %zu", split, n);
    for (int i = 0; i < NCOLLECT; i++)
        CHECK(C.marks[i] == (collect_code(i) != 0), "child %d recorded %d times", i, C.marks[i]);
    CHECK(weft_scope_cancel_reason(s) == WEFT_CANCEL_NONE, "collect cancelled");
    CHECK(weft_scope_release(s) == 0, "release");
    barrier_destroy(&C.bar);
    atomic_fetch_add(&stats.collected, (long)n);
}

/* ---- fail-fast ------------------------------------------------------------------------------- */

static struct {
    barrier bar;
    int rc[NFAILFAST];
    int marks[NFAILFAST];
} FF;

static int failfast_child(void *p)
{
    int i = (int)(intptr_t)p;
    int rc = barrier_wait(&FF.bar);
    if (!rc)
        rc = weft_checkpoint();
    if (rc && i % 2 == 0) {
        CHECK(rc == -ECANCELED, "child %d saw %d", i, rc);
        rc = 0; /* fails anyway */
    }
    if (rc) {
        CHECK(rc == -ECANCELED, "child %d saw %d", i, rc);
        CHECK(weft_cancel_reason_self() == WEFT_CANCEL_FAILURE, "reason");
        FF.rc[i] = rc;
        return rc; /* ended by the cancel: not a failure */
    }
    FF.rc[i] = -EIO;
    return weft_fail(-EIO, "f%d", i);
}

static void failfast_burst(void)
{
    memset(&FF, 0, sizeof(FF));
    barrier_init(&FF.bar, NFAILFAST);
    weft_scope *s;
    if (weft_scope_open(&s, NULL) != 0) {
        CHECK(0, "open");
        return;
    }
    for (int i = 0; i < NFAILFAST; i++) {
        int rc = weft_spawn(s, failfast_child, (void *)(intptr_t)i);
        CHECK(rc == 0, "spawn %d", rc); /* nobody fails before everyone has arrived */
    }
    int jr = weft_scope_join(s);
    CHECK(jr == -EIO, "join %d", jr);
    CHECK(weft_scope_cancel_reason(s) == WEFT_CANCEL_FAILURE, "reason");
    int failed = 0, cancelled = 0;
    for (int i = 0; i < NFAILFAST; i++) {
        failed += FF.rc[i] == -EIO;
        cancelled += FF.rc[i] == -ECANCELED;
    }
    CHECK(failed + cancelled == NFAILFAST, "%d + %d children of %d", failed, cancelled, NFAILFAST);
    CHECK(failed >= NFAILFAST / 2, "only %d children failed", failed);
    size_t n = weft_scope_error_count(s);
    CHECK(n == (size_t)failed, "%zu failures recorded, %d children failed", n, failed);
    CHECK(weft_scope_error_count_code(s, -ECANCELED) == 0, "a cancelled child was recorded");
    for (size_t k = 0; k < n; k++) {
        const weft_error *e = weft_scope_error(s, k);
        int i = -1;
        if (sscanf(e->message, "f%d", &i) != 1 || i < 0 || i >= NFAILFAST) {
            CHECK(0, "unexpected message '%s'", e->message);
            continue;
        }
        FF.marks[i]++;
        CHECK(FF.rc[i] == -EIO && e->code == -EIO, "child %d recorded with %d", i, e->code);
    }
    for (int i = 0; i < NFAILFAST; i++)
        CHECK(FF.marks[i] == (FF.rc[i] == -EIO), "child %d recorded %d times", i, FF.marks[i]);
    CHECK(weft_scope_release(s) == 0, "release");
    barrier_destroy(&FF.bar);
    atomic_fetch_add(&stats.failfast_failed, failed);
    atomic_fetch_add(&stats.failfast_cancelled, cancelled);
}

/* ---- groups handed up concurrently ----------------------------------------------------------- */

static struct {
    barrier bar[NMID];
    uint64_t id[NMID][NLEAF];
    int marks[NMID][NLEAF];
    int mid_rc[NMID];
} N;

static int leaf_code(int j)
{
    return j % 3 == 0 ? -EAGAIN : j % 3 == 1 ? -EIO : -ENOENT;
}

static int nested_leaf(void *p)
{
    int m = (int)((intptr_t)p / NLEAF), j = (int)((intptr_t)p % NLEAF);
    N.id[m][j] = weft_task_id();
    int rc = barrier_wait(&N.bar[m]);
    CHECK(rc == 0, "leaf barrier %d", rc);
    return weft_fail(leaf_code(j), "m%d.l%d", m, j);
}

static int nested_mid(void *p)
{
    int m = (int)(intptr_t)p;
    char name[32];
    snprintf(name, sizeof(name), "inner-%d", m);
    weft_scope *s;
    weft_scope_opts o = {.policy = WEFT_COLLECT, .name = name};
    if (weft_scope_open(&s, &o) != 0) {
        CHECK(0, "open");
        return -1;
    }
    for (int j = 0; j < NLEAF; j++)
        CHECK(weft_spawn(s, nested_leaf, (void *)(intptr_t)(m * NLEAF + j)) == 0, "spawn");
    int jr = weft_scope_join(s);
    CHECK(weft_scope_error_count(s) == NLEAF, "inner %d: %zu failures", m,
          weft_scope_error_count(s));
    CHECK(jr == weft_scope_error(s, 0)->code, "inner join");
    const int handled[] = {-EAGAIN};
    int rc = weft_fail_group(s, handled, 1);
    CHECK(rc == -EIO || rc == -ENOENT, "fail_group returned %d", rc);
    N.mid_rc[m] = rc;
    CHECK(weft_scope_release(s) == 0, "release");
    return rc;
}

static void nested_burst(void)
{
    memset(&N, 0, sizeof(N));
    for (int m = 0; m < NMID; m++)
        barrier_init(&N.bar[m], NLEAF);
    weft_scope *s;
    weft_scope_opts o = {.policy = WEFT_COLLECT, .name = "outer"};
    if (weft_scope_open(&s, &o) != 0) {
        CHECK(0, "open");
        return;
    }
    for (int m = 0; m < NMID; m++)
        CHECK(weft_spawn(s, nested_mid, (void *)(intptr_t)m) == 0, "spawn");
    int jr = weft_scope_join(s);
    size_t n = weft_scope_error_count(s);
    int expect = 0;
    for (int j = 0; j < NLEAF; j++)
        expect += leaf_code(j) != -EAGAIN;
    expect *= NMID;
    CHECK(n == (size_t)expect, "%zu failures handed up, %d expected", n, expect);
    CHECK(n == 0 || jr == weft_scope_error(s, 0)->code, "outer join");
    CHECK(weft_scope_error_count_code(s, -EAGAIN) == 0, "a handled failure went up");
    for (size_t k = 0; k < n; k++) {
        const weft_error *e = weft_scope_error(s, k);
        int m = -1, j = -1;
        if (sscanf(e->message, "m%d.l%d", &m, &j) != 2 || m < 0 || m >= NMID || j < 0 ||
            j >= NLEAF) {
            CHECK(0, "unexpected message '%s'", e->message);
            continue;
        }
        N.marks[m][j]++;
        char name[32];
        snprintf(name, sizeof(name), "inner-%d", m);
        CHECK(strcmp(e->scope, name) == 0, "origin scope '%s', expected '%s'", e->scope, name);
        CHECK(e->task_id == N.id[m][j], "origin task id of m%d.l%d", m, j);
        CHECK(e->code == leaf_code(j), "code");
    }
    for (int m = 0; m < NMID; m++)
        for (int j = 0; j < NLEAF; j++)
            CHECK(N.marks[m][j] == (leaf_code(j) != -EAGAIN), "m%d.l%d recorded %d times", m, j,
                  N.marks[m][j]);
    CHECK(weft_scope_release(s) == 0, "release");
    for (int m = 0; m < NMID; m++)
        barrier_destroy(&N.bar[m]);
    atomic_fetch_add(&stats.handed_up, (long)n);
}

static int root(void *p)
{
    int rounds = *(int *)p;
    for (int r = 0; r < rounds && atomic_load(&failures) == 0; r++) {
        collect_burst();
        failfast_burst();
        nested_burst();
        atomic_fetch_add(&stats.rounds, 1);
    }
    return 0;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : DEFAULT_ROUNDS;
    weft_config cfg = {.workers = 4, .watchdog_ns = -1};
    int rc = weft_run(&cfg, root, &rounds);
    CHECK(rc == 0, "weft_run returned %d", rc);
    int bad = atomic_load(&failures);
    printf("error_stress: %s: %ld rounds; collect: %ld failures recorded; fail-fast bursts of %d: "
           "%ld failed, %ld cancelled; %ld failures handed up through groups; %d failed checks\n",
           bad ? "FAIL" : "ok", atomic_load(&stats.rounds), atomic_load(&stats.collected),
           NFAILFAST, atomic_load(&stats.failfast_failed), atomic_load(&stats.failfast_cancelled),
           atomic_load(&stats.handed_up), bad);
    return bad ? 1 : 0;
}
