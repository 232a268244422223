// SPDX-License-Identifier: MIT
/*
 * Blocking code and foreign threads: weft_blocking and its pool, cancellation of a blocking call,
 * long-lived runtimes fed by weft_submit from plain threads, handles (wait with a deadline,
 * cancel), shutdown with work pending, and the calls that are refused from inside a task.
 *
 * Foreign threads wait for events by polling atomics with sched_yield(), never by sleeping; a
 * blocking function that must wait for an event does so on a condition variable, with a generous
 * bound so that a broken runtime fails the test instead of hanging it.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "blocking.h"
#include "records.h"
#include "runtime.h"
#include "sched.h"
#include "support_criterion.h"
#include "weft.h"

/* The bound on waits that only a broken runtime would reach. */
#define SAFETY (60 * WEFT_SEC)

/* ---- weft_blocking returns fn's result ------------------------------------------------------- */

typedef struct result_case {
    int in_fn_worker_index;
    int in_fn_checkpoint;
    int in_fn_cancelled;
    int rc, result;
    int rc_null_result;
    int rc_negative, negative_result;
    int rc_null_fn;
    atomic_int calls;
} result_case;

static int answer_fn(void *p)
{
    result_case *c = p;
    atomic_fetch_add(&c->calls, 1);
    c->in_fn_worker_index = weft_worker_index();
    c->in_fn_checkpoint = weft_checkpoint();
    c->in_fn_cancelled = weft_blocking_cancelled();
    return 42;
}

static int failing_fn(void *p)
{
    atomic_fetch_add(&((result_case *)p)->calls, 1);
    return -EIO;
}

static int result_root(void *p)
{
    result_case *c = p;
    c->result = -1;
    c->rc = weft_blocking(answer_fn, c, &c->result);
    c->rc_null_result = weft_blocking(answer_fn, c, NULL);
    c->rc_negative = weft_blocking(failing_fn, c, &c->negative_result);
    c->rc_null_fn = weft_blocking(NULL, c, NULL);
    return 0;
}

Test(blocking, returns_the_function_result, .timeout = 60)
{
    static result_case c;
    cr_assert_eq(run_on(2, result_root, &c), 0);
    cr_assert_eq(c.rc, 0);
    cr_assert_eq(c.result, 42);
    cr_assert_eq(c.rc_null_result, 0);
    cr_assert_eq(c.rc_negative, 0, "fn's own failure is its result, not weft_blocking's");
    cr_assert_eq(c.negative_result, -EIO);
    cr_assert_eq(c.rc_null_fn, -EINVAL);
    cr_assert_eq(atomic_load(&c.calls), 3);
    cr_assert_eq(c.in_fn_worker_index, -1, "fn ran on a worker");
    cr_assert_eq(c.in_fn_checkpoint, -EPERM, "fn ran as a task");
    cr_assert_eq(c.in_fn_cancelled, 0);
}

Test(blocking, outside_a_task_is_eperm)
{
    int res = 5;
    cr_assert_eq(weft_blocking(failing_fn, NULL, &res), -EPERM);
    cr_assert_eq(res, 5);
    cr_assert_eq(weft_blocking_cancelled(), 0);
}

/* ---- the pool keeps the workers free --------------------------------------------------------- */

#define NBLOCKING 100
#define NCOUNTERS 10000

typedef struct pool_case {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int released;
    atomic_int entered;
    atomic_int counted;
    atomic_int blocking_done;
    int rc[NBLOCKING];
    int seen[NBLOCKING]; /* `counted` when the blocking call was let go, or -1 on timeout */
} pool_case;

static pool_case pool;

static int wait_for_counters(void *p)
{
    (void)p;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += SAFETY / WEFT_SEC;
    pthread_mutex_lock(&pool.mu);
    int rc = 0;
    while (!pool.released && rc == 0)
        rc = pthread_cond_timedwait(&pool.cv, &pool.mu, &until);
    int ok = pool.released;
    pthread_mutex_unlock(&pool.mu);
    return ok ? atomic_load(&pool.counted) : -1;
}

static int blocking_task(void *p)
{
    int i = (int)(intptr_t)p;
    atomic_fetch_add(&pool.entered, 1); /* no suspension point before the call parks */
    pool.rc[i] = weft_blocking(wait_for_counters, NULL, &pool.seen[i]);
    atomic_fetch_add(&pool.blocking_done, 1);
    return 0;
}

static int counter_task(void *p)
{
    (void)p;
    if (atomic_fetch_add(&pool.counted, 1) + 1 == NCOUNTERS) {
        pthread_mutex_lock(&pool.mu);
        pool.released = 1;
        pthread_cond_broadcast(&pool.cv);
        pthread_mutex_unlock(&pool.mu);
    }
    return 0;
}

static int pool_root(void *p)
{
    (void)p;
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    for (int i = 0; i < NBLOCKING; i++)
        CHECK_EQ(weft_spawn(s, blocking_task, (void *)(intptr_t)i), 0);
    /* One worker: every blocking task has handed its call to the pool and parked. */
    CHECK_EQ(yield_until(&pool.entered, NBLOCKING), 0);
    CHECK_EQ(atomic_load(&pool.blocking_done), 0);
    for (int i = 0; i < NCOUNTERS; i++)
        CHECK_EQ(weft_spawn(s, counter_task, NULL), 0);
    CHECK_EQ(weft_scope_join(s), 0);
    CHECK_EQ(weft_scope_release(s), 0);
    return 0;
}

Test(blocking, pool_keeps_the_only_worker_free, .timeout = 120)
{
    pthread_mutex_init(&pool.mu, NULL);
    pthread_cond_init(&pool.cv, NULL);
    cr_assert_eq(run_on(1, pool_root, NULL), 0);
    ASSERT_CHECKS();
    cr_assert_eq(atomic_load(&pool.counted), NCOUNTERS);
    cr_assert_eq(atomic_load(&pool.blocking_done), NBLOCKING);
    for (int i = 0; i < NBLOCKING; i++) {
        cr_assert_eq(pool.rc[i], 0, "blocking call %d: %d", i, pool.rc[i]);
        cr_assert_eq(pool.seen[i], NCOUNTERS,
                     "blocking call %d was let go after %d counters (-1: never)", i, pool.seen[i]);
    }
    pthread_cond_destroy(&pool.cv);
    pthread_mutex_destroy(&pool.mu);
}

/* ---- cancel during a blocking call ----------------------------------------------------------- */

typedef struct bcancel_case {
    atomic_int started;
    atomic_int fn_returned;
    int observed_cancel;
    int rc, result;
    int fn_returned_before;
    int join;
    int timeout; /* 1: a deadline, not an explicit cancel */
    atomic_int calls_after;
} bcancel_case;

static int poll_until_cancelled(void *p)
{
    bcancel_case *c = p;
    atomic_store(&c->started, 1);
    weft_time give_up = weft_now() + SAFETY;
    while (!weft_blocking_cancelled() && weft_now() < give_up)
        sched_yield();
    c->observed_cancel = weft_blocking_cancelled();
    atomic_store(&c->fn_returned, 1);
    return 7;
}

static int count_call(void *p)
{
    atomic_fetch_add((atomic_int *)p, 1);
    return 0;
}

static int bcancel_task(void *p)
{
    bcancel_case *c = p;
    c->result = -1;
    c->rc = weft_blocking(poll_until_cancelled, c, &c->result);
    c->fn_returned_before = atomic_load(&c->fn_returned);
    /* Level-triggered: the next call does not even start. */
    int again = weft_blocking(count_call, &c->calls_after, NULL);
    CHECK_EQ(again, c->rc);
    return c->rc;
}

static int bcancel_root(void *p)
{
    bcancel_case *c = p;
    weft_scope *s;
    weft_scope_opts o = {.timeout_ns = c->timeout ? 20 * WEFT_MSEC : 0};
    REQUIRE_EQ(weft_scope_open(&s, &o), 0);
    int sp = weft_spawn(s, bcancel_task, c);
    if (sp != 0) {
        CHECK(c->timeout && sp == -ETIMEDOUT); /* only a very slow machine gets here */
        CHECK_EQ(weft_scope_release(s), 0);
        return 0;
    }
    if (!c->timeout) {
        spin_until(&c->started, 1); /* the pool thread is in fn */
        CHECK_EQ(weft_scope_cancel(s), 0);
    }
    c->join = weft_scope_join(s);
    CHECK_EQ(weft_scope_release(s), 0);
    return 0;
}

static void check_bcancel(int timeout)
{
    static bcancel_case c;
    memset(&c, 0, sizeof(c));
    c.timeout = timeout;
    cr_assert_eq(run_on(2, bcancel_root, &c), 0);
    ASSERT_CHECKS();
    if (timeout && !atomic_load(&c.started))
        cr_skip_test("the deadline passed before the blocking call could start");
    int code = timeout ? -ETIMEDOUT : -ECANCELED;
    cr_assert_eq(c.rc, code, "weft_blocking returned %d", c.rc);
    cr_assert_eq(c.fn_returned_before, 1, "weft_blocking returned before fn did");
    cr_assert_eq(c.result, 7, "fn's result is still stored");
    cr_assert_eq(c.observed_cancel, 1, "weft_blocking_cancelled() never said 1 inside fn");
    cr_assert_eq(atomic_load(&c.calls_after), 0);
    cr_assert_eq(c.join, code);
}

Test(blocking, cancel_during_call_waits_for_it, .timeout = 120)
{
    check_bcancel(0);
}

Test(blocking, deadline_during_call_waits_for_it, .timeout = 120)
{
    check_bcancel(1);
}

/* ---- weft_submit from eight threads ---------------------------------------------------------- */

#define NSUBMITTERS 8
#define PER_SUBMITTER 200

typedef struct job {
    int value;
    atomic_int runs;
} job;

static job jobs[NSUBMITTERS][PER_SUBMITTER];

static int child_noop(void *p)
{
    (void)p;
    return weft_yield();
}

/* Returns a value the submitter can check; the odd ones also spawn and yield. */
static int job_fn(void *p)
{
    job *j = p;
    atomic_fetch_add(&j->runs, 1);
    if (j->value % 2) {
        weft_scope *s;
        if (weft_scope_open(&s, NULL) == 0) {
            weft_spawn(s, child_noop, NULL);
            weft_scope_join(s);
            weft_scope_release(s);
        }
        weft_yield();
    }
    return j->value % 5 ? -(j->value % 97) : 0;
}

typedef struct submitter {
    weft_runtime *rt;
    atomic_int *go;
    int index;
    int bad_submit, bad_wait, bad_status;
} submitter;

static void *submitter_main(void *p)
{
    submitter *s = p;
    weft_handle *h[PER_SUBMITTER];
    spin_until(s->go, 1);
    for (int i = 0; i < PER_SUBMITTER; i++) {
        job *j = &jobs[s->index][i];
        j->value = s->index * PER_SUBMITTER + i;
        h[i] = NULL;
        if (weft_submit(s->rt, job_fn, j, &h[i]) != 0)
            s->bad_submit++;
    }
    for (int i = 0; i < PER_SUBMITTER; i++) {
        if (!h[i])
            continue;
        int st = 12345;
        if (weft_handle_wait(h[i], WEFT_NEVER, &st) != 0)
            s->bad_wait++;
        int v = jobs[s->index][i].value;
        if (st != (v % 5 ? -(v % 97) : 0))
            s->bad_status++;
        weft_handle_release(h[i]);
    }
    return NULL;
}

Test(blocking, submit_from_eight_threads, .timeout = 120)
{
    weft_runtime *rt;
    weft_config cfg = {.workers = 4};
    cr_assert_eq(weft_runtime_start(&rt, &cfg), 0);
    static submitter subs[NSUBMITTERS];
    static atomic_int go;
    pthread_t th[NSUBMITTERS];
    for (int i = 0; i < NSUBMITTERS; i++) {
        subs[i] = (submitter){.rt = rt, .go = &go, .index = i};
        cr_assert_eq(pthread_create(&th[i], NULL, submitter_main, &subs[i]), 0);
    }
    atomic_store(&go, 1); /* all at once */
    for (int i = 0; i < NSUBMITTERS; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(weft_runtime_shutdown(rt), 0);
    for (int i = 0; i < NSUBMITTERS; i++) {
        cr_assert_eq(subs[i].bad_submit, 0, "submitter %d", i);
        cr_assert_eq(subs[i].bad_wait, 0, "submitter %d", i);
        cr_assert_eq(subs[i].bad_status, 0, "submitter %d", i);
        for (int k = 0; k < PER_SUBMITTER; k++)
            cr_assert_eq(atomic_load(&jobs[i][k].runs), 1, "job %d/%d ran %d times", i, k,
                         atomic_load(&jobs[i][k].runs));
    }
}

/* ---- submissions one after another keep their memory ---------------------------------------- */

/* Each submission takes a task record off the workers and its task ends on one; a plain thread
 * that feeds a runtime for as long as it lives must find the records of the ended ones again
 * instead of having new ones carved. */
#define STEADY_SUBMISSIONS 200000
#define STEADY_WARM_UP 10000

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

static int count_fn(void *p)
{
    atomic_fetch_add((atomic_int *)p, 1);
    return 0;
}

/* Resident pages of this process (/proc/self/statm), or -1. */
static long resident_pages(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size, resident = -1;
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &resident) != 2)
            resident = -1;
        fclose(f);
    }
    return resident;
}

Test(blocking, steady_submissions_keep_their_memory, .timeout = 180)
{
    weft_runtime *rt;
    weft_config cfg = {.workers = 4};
    cr_assert_eq(weft_runtime_start(&rt, &cfg), 0);
    static atomic_int ran;
    int bad_submit = 0, bad_wait = 0, bad_status = 0;
    long rss_warm = 0;
    for (int i = 0; i < STEADY_SUBMISSIONS; i++) {
        if (i == STEADY_WARM_UP)
            rss_warm = resident_pages();
        weft_handle *h;
        if (weft_submit(rt, count_fn, &ran, &h) != 0) {
            bad_submit++;
            continue;
        }
        int st = 12345;
        if (weft_handle_wait(h, WEFT_NEVER, &st) != 0)
            bad_wait++;
        if (st != 0)
            bad_status++;
        weft_handle_release(h);
    }
    long rss_end = resident_pages();
    size_t mapped = weft__records_mapped_bytes(rt);
    cr_assert_eq(weft_runtime_shutdown(rt), 0);
    cr_assert_eq(bad_submit, 0);
    cr_assert_eq(bad_wait, 0);
    cr_assert_eq(bad_status, 0);
    cr_assert_eq(atomic_load(&ran), STEADY_SUBMISSIONS);
    /* A worker keeps a few hundred free records at most (WEFT__TASK_CACHE_MAX) and one submission
     * is in flight at a time: 2 MiB holds about 8,000 records. Records carved anew for each
     * submission would take some 50 MiB. */
    cr_assert_leq(mapped, (size_t)2 << 20,
                  "%zu bytes of records for submissions made one at a time", mapped);
    /* The rest of what a submission holds (its handle, its scope record) comes back too. ASan
     * keeps freed memory in quarantine, so only other builds can tell by the resident size. */
#ifndef UNDER_ASAN
    cr_assert(rss_warm > 0 && rss_end > 0, "/proc/self/statm unreadable");
    long grown = (rss_end - rss_warm) * sysconf(_SC_PAGESIZE);
    cr_assert_lt(grown, 16L << 20, "resident size grew by %ld bytes over %d submissions", grown,
                 STEADY_SUBMISSIONS - STEADY_WARM_UP);
#else
    (void)rss_warm;
    (void)rss_end;
#endif
}

/* ---- handle: wait with a deadline, cancel ---------------------------------------------------- */

typedef struct sleepy {
    atomic_int started;
    int rc;
    weft_cancel_reason reason;
} sleepy;

static int sleepy_fn(void *p)
{
    sleepy *s = p;
    atomic_fetch_add(&s->started, 1);
    s->rc = weft_sleep_for(HOUR);
    s->reason = weft_cancel_reason_self();
    return s->rc;
}

Test(blocking, handle_wait_deadline_then_cancel, .timeout = 60)
{
    weft_runtime *rt;
    weft_config cfg = {.workers = 2};
    cr_assert_eq(weft_runtime_start(&rt, &cfg), 0);
    static sleepy s;
    weft_handle *h;
    cr_assert_eq(weft_submit(rt, sleepy_fn, &s, &h), 0);
    spin_until(&s.started, 1);
    int st = 12345;
    weft_time deadline = weft_now() + 20 * WEFT_MSEC;
    cr_assert_eq(weft_handle_wait(h, deadline, &st), -ETIMEDOUT);
    cr_assert_geq(weft_now(), deadline, "the wait gave up before its deadline");
    cr_assert_eq(st, 12345, "status written on a timed-out wait");
    cr_assert_eq(weft_handle_wait(h, 1, &st), -ETIMEDOUT, "a deadline long past");
    cr_assert_eq(weft_handle_cancel(h), 0);
    cr_assert_eq(weft_handle_wait(h, WEFT_NEVER, &st), 0);
    cr_assert_eq(st, -ECANCELED);
    cr_assert_eq(s.rc, -ECANCELED);
    cr_assert_eq(s.reason, WEFT_CANCEL_EXPLICIT);
    /* Ended: waiting again answers at once, cancelling again is harmless. */
    cr_assert_eq(weft_handle_wait(h, 1, &st), 0);
    cr_assert_eq(st, -ECANCELED);
    cr_assert_eq(weft_handle_cancel(h), 0);
    cr_assert_eq(weft_handle_release(h), 0);
    cr_assert_eq(weft_runtime_shutdown(rt), 0);
}

Test(blocking, foreign_api_bad_arguments)
{
    int st;
    weft_handle *h;
    cr_assert_eq(weft_submit(NULL, sleepy_fn, NULL, &h), -EINVAL);
    cr_assert_eq(weft_handle_wait(NULL, WEFT_NEVER, &st), -EINVAL);
    cr_assert_eq(weft_handle_cancel(NULL), -EINVAL);
    cr_assert_eq(weft_handle_release(NULL), -EINVAL);
    cr_assert_eq(weft_runtime_shutdown(NULL), -EINVAL);
    cr_assert_eq(weft_runtime_start(NULL, NULL), -EINVAL);
    weft_runtime *rt;
    cr_assert_eq(weft_runtime_start(&rt, NULL), 0);
    cr_assert_eq(weft_submit(rt, NULL, NULL, &h), -EINVAL);
    cr_assert_eq(weft_submit(rt, sleepy_fn, NULL, NULL), -EINVAL);
    cr_assert_eq(weft_runtime_shutdown(rt), 0);
}

/* ---- refused from inside a task -------------------------------------------------------------- */

typedef struct inside_case {
    weft_handle *other; /* a handle of another runtime */
    weft_runtime *other_rt;
    int wait_rc, run_rc, start_rc, shutdown_other_rc;
    int status_untouched;
} inside_case;

static int trivial(void *p)
{
    (void)p;
    return 0;
}

static int inside_root(void *p)
{
    inside_case *c = p;
    int st = 777;
    c->wait_rc = weft_handle_wait(c->other, WEFT_NEVER, &st);
    c->status_untouched = st == 777;
    c->run_rc = weft_run(NULL, trivial, NULL);
    weft_runtime *rt = NULL;
    c->start_rc = weft_runtime_start(&rt, NULL);
    return 0;
}

/* A task of a runtime may not shut down its own runtime. */
static int shutdown_own(void *p)
{
    inside_case *c = p;
    c->shutdown_other_rc = weft_runtime_shutdown(c->other_rt);
    return 0;
}

Test(blocking, calls_refused_inside_a_task_are_edeadlk, .timeout = 60)
{
    static inside_case c;
    cr_assert_eq(weft_runtime_start(&c.other_rt, NULL), 0);
    cr_assert_eq(weft_submit(c.other_rt, trivial, NULL, &c.other), 0);
    cr_assert_eq(run_on(1, inside_root, &c), 0);
    cr_assert_eq(c.wait_rc, -EDEADLK);
    cr_assert(c.status_untouched);
    cr_assert_eq(c.run_rc, -EDEADLK);
    cr_assert_eq(c.start_rc, -EDEADLK);

    weft_handle *h;
    cr_assert_eq(weft_submit(c.other_rt, shutdown_own, &c, &h), 0);
    int st = 1;
    cr_assert_eq(weft_handle_wait(h, WEFT_NEVER, &st), 0);
    cr_assert_eq(st, 0);
    cr_assert_eq(c.shutdown_other_rc, -EDEADLK);
    cr_assert_eq(weft_handle_release(h), 0);

    cr_assert_eq(weft_handle_wait(c.other, WEFT_NEVER, &st), 0);
    cr_assert_eq(st, 0);
    cr_assert_eq(weft_handle_release(c.other), 0);
    cr_assert_eq(weft_runtime_shutdown(c.other_rt), 0);
}

/* Shutdown of another runtime from a task would park no task: it would block the worker's
 * thread until every task of the other runtime ended, and a task there that waits for work of
 * the caller's runtime would never end. It is refused as weft_run and weft_handle_wait are; from
 * a function the caller's blocking pool runs (a thread made for blocking) it is allowed. */
typedef struct cross_case {
    weft_runtime *other;
    int from_task_rc, own_rc, from_pool_rc;
} cross_case;

static int shutdown_other_fn(void *p)
{
    return weft_runtime_shutdown(((cross_case *)p)->other);
}

static int shutdown_from_a_task(void *p)
{
    cross_case *c = p;
    c->from_task_rc = weft_runtime_shutdown(c->other);
    return 0;
}

static int shutdown_own_runtime(void *p)
{
    cross_case *c = p;
    c->own_rc = weft_runtime_shutdown(c->other);
    return 0;
}

static int shutdown_from_the_pool(void *p)
{
    cross_case *c = p;
    return weft_blocking(shutdown_other_fn, c, &c->from_pool_rc);
}

Test(blocking, shutdown_from_a_task_of_any_runtime_is_edeadlk, .timeout = 60)
{
    static cross_case c;
    c.from_task_rc = c.own_rc = c.from_pool_rc = 1;
    weft_config one = {.workers = 1};
    cr_assert_eq(weft_runtime_start(&c.other, &one), 0);
    static sleepy s;
    weft_handle *sleeper;
    cr_assert_eq(weft_submit(c.other, sleepy_fn, &s, &sleeper), 0);
    spin_until(&s.started, 1);

    /* From a task of another runtime: refused, and `other` goes on as before. */
    cr_assert_eq(run_on(1, shutdown_from_a_task, &c), 0);
    cr_assert_eq(c.from_task_rc, -EDEADLK);
    int st = 1;
    cr_assert_eq(weft_handle_wait(sleeper, weft_now() + WEFT_MSEC, &st), -ETIMEDOUT,
                 "the refused shutdown cancelled a task");

    /* From a task of the runtime itself: refused too. */
    weft_handle *h;
    cr_assert_eq(weft_submit(c.other, shutdown_own_runtime, &c, &h), 0);
    cr_assert_eq(weft_handle_wait(h, WEFT_NEVER, &st), 0);
    cr_assert_eq(st, 0);
    cr_assert_eq(c.own_rc, -EDEADLK);
    cr_assert_eq(weft_handle_release(h), 0);

    /* From another runtime's blocking pool: a plain thread that may block, so it shuts down. */
    cr_assert_eq(run_on(1, shutdown_from_the_pool, &c), 0);
    cr_assert_eq(c.from_pool_rc, 0);
    cr_assert_eq(weft_handle_wait(sleeper, WEFT_NEVER, &st), 0);
    cr_assert_eq(st, -ECANCELED);
    cr_assert_eq(s.rc, -ECANCELED);
    cr_assert_eq(weft_handle_release(sleeper), 0);
}

/* ---- shutdown with work pending -------------------------------------------------------------- */

#define NPENDING 20

Test(blocking, shutdown_cancels_pending_sleepers, .timeout = 60)
{
    weft_runtime *rt;
    weft_config cfg = {.workers = 2};
    cr_assert_eq(weft_runtime_start(&rt, &cfg), 0);
    static sleepy s[NPENDING];
    weft_handle *h[NPENDING];
    for (int i = 0; i < NPENDING; i++) {
        s[i].rc = 1;
        cr_assert_eq(weft_submit(rt, sleepy_fn, &s[i], &h[i]), 0);
    }
    for (int i = 0; i < NPENDING; i++)
        spin_until(&s[i].started, 1);
    cr_assert_eq(weft_runtime_shutdown(rt), 0);
    for (int i = 0; i < NPENDING; i++) {
        cr_assert_eq(s[i].rc, -ECANCELED, "sleeper %d: %d", i, s[i].rc);
        cr_assert_neq(s[i].reason, WEFT_CANCEL_NONE);
        /* Handles outlive the runtime until released. */
        int st = 1;
        cr_assert_eq(weft_handle_wait(h[i], WEFT_NEVER, &st), 0);
        cr_assert_eq(st, -ECANCELED);
        cr_assert_eq(weft_handle_release(h[i]), 0);
    }
}

/* Shutdown cancels every task, but a shielded scope's body is not cancelled from outside: the
 * shield is its owner's word that the body ends on its own (a cleanup), so shutdown waits for
 * it, and the cancel reaches the task once the shielded scope is joined. A shield whose body may
 * wait carries its own timeout, which bounds the shutdown as well. */
typedef struct shielded_case {
    weft_sem *sem;     /* no tokens until the test thread releases one */
    weft_time timeout; /* the shield's timeout_ns; 0 = none */
    atomic_int inside, unshielded_woken, shutdown_returned;
    int acquire_rc, join_rc, after_rc, unshielded_rc, before_rc;
} shielded_case;

static int shielded_waiter(void *p)
{
    shielded_case *c = p;
    if (c->timeout) {
        /* A bounded cleanup: the shutdown's cancel first, then the shield. A shield opened
         * before the cancel could run out its time before the shutdown on a loaded machine even
         * began, and the checkpoint after it would find nothing cancelled yet. */
        atomic_store(&c->inside, 1);
        c->before_rc = weft_sleep_for(HOUR);
    }
    weft_scope *sh;
    weft_scope_opts o = {.shield = 1, .timeout_ns = c->timeout, .name = "cleanup"};
    int rc = weft_scope_open(&sh, &o);
    CHECK_EQ(rc, 0);
    atomic_store(&c->inside, 1);
    if (rc)
        return rc;
    c->acquire_rc = weft_sem_acquire(c->sem);
    c->join_rc = weft_scope_close(sh);
    c->after_rc = weft_checkpoint();
    return 0;
}

static int unshielded_sleeper(void *p)
{
    shielded_case *c = p;
    c->unshielded_rc = weft_sleep_for(HOUR);
    atomic_store(&c->unshielded_woken, 1);
    return 0;
}

typedef struct shutter_arg {
    weft_runtime *rt;
    shielded_case *c;
    int rc;
} shutter_arg;

static void *shutter(void *p)
{
    shutter_arg *a = p;
    a->rc = weft_runtime_shutdown(a->rt);
    atomic_store(&a->c->shutdown_returned, 1);
    return NULL;
}

/* Starts a runtime with a task parked in a shielded scope and an unshielded sleeper, and shuts
 * it down from another thread. */
static void start_shielded(shielded_case *c, weft_runtime **rt, pthread_t *th, shutter_arg *a)
{
    cr_assert_eq(weft_sem_create(&c->sem, 0), 0);
    weft_config cfg = {.workers = 2};
    cr_assert_eq(weft_runtime_start(rt, &cfg), 0);
    weft_handle *h1, *h2;
    cr_assert_eq(weft_submit(*rt, shielded_waiter, c, &h1), 0);
    cr_assert_eq(weft_submit(*rt, unshielded_sleeper, c, &h2), 0);
    cr_assert_eq(weft_handle_release(h1), 0);
    cr_assert_eq(weft_handle_release(h2), 0);
    spin_until(&c->inside, 1);
    *a = (shutter_arg){.rt = *rt, .c = c, .rc = 1};
    cr_assert_eq(pthread_create(th, NULL, shutter, a), 0);
}

Test(blocking, shutdown_waits_for_a_shielded_scope, .timeout = 60)
{
    static shielded_case c;
    weft_runtime *rt;
    pthread_t th;
    static shutter_arg a;
    start_shielded(&c, &rt, &th, &a);
    /* The shutdown has cancelled what it could; it still waits for the shielded body. */
    spin_until(&c.unshielded_woken, 1);
    cr_assert_eq(c.unshielded_rc, -ECANCELED);
    cr_assert_eq(atomic_load(&c.shutdown_returned), 0, "shutdown did not wait for the shield");
    cr_assert_eq(weft_sem_release(c.sem), 0);
    pthread_join(th, NULL);
    ASSERT_CHECKS();
    cr_assert_eq(a.rc, 0);
    cr_assert_eq(c.acquire_rc, 0, "the shielded wait was cancelled: %d", c.acquire_rc);
    cr_assert_eq(c.join_rc, 0);
    cr_assert_eq(c.after_rc, -ECANCELED, "the cancel was not delivered after the shield");
    cr_assert_eq(weft_sem_destroy(c.sem), 0);
}

Test(blocking, shutdown_is_bounded_by_a_shield_timeout, .timeout = 60)
{
    static shielded_case c;
    c.timeout = 20 * WEFT_MSEC;
    weft_runtime *rt;
    pthread_t th;
    static shutter_arg a;
    weft_time t0 = weft_now();
    start_shielded(&c, &rt, &th, &a);
    /* The shutdown cancels the waiter, which opens its shield then; nobody releases a token: the
     * shield's own deadline ends the wait, and the shutdown. */
    pthread_join(th, NULL);
    ASSERT_CHECKS();
    cr_assert_eq(a.rc, 0);
    cr_assert_geq(weft_now() - t0, c.timeout);
    cr_assert_eq(c.unshielded_rc, -ECANCELED);
    cr_assert_eq(c.before_rc, -ECANCELED, "the wait before the shield ended with %d", c.before_rc);
    cr_assert_eq(c.acquire_rc, -ETIMEDOUT, "the shielded wait ended with %d", c.acquire_rc);
    cr_assert_eq(c.join_rc, -ETIMEDOUT);
    cr_assert_eq(c.after_rc, -ECANCELED);
    cr_assert_eq(weft_sem_destroy(c.sem), 0);
}

/* A submit made while shutdown is under way (the runtime is held open by a task that waits for the
 * submit to have happened) is refused with -ESHUTDOWN. */
typedef struct late_case {
    weft_runtime *rt;
    atomic_int gate_started, shutdown_seen, submit_tried;
    atomic_int late_ran;
    int gate_sleep;
    int late_rc;
} late_case;

static int late_fn(void *p)
{
    atomic_fetch_add(&((late_case *)p)->late_ran, 1);
    return 0;
}

static int gate_fn(void *p)
{
    late_case *c = p;
    atomic_store(&c->gate_started, 1);
    c->gate_sleep = weft_sleep_for(HOUR); /* ends when shutdown cancels everything */
    atomic_store(&c->shutdown_seen, 1);
    /* Holds the runtime open (shutdown waits for this task) until the late submit is done. */
    while (!atomic_load(&c->submit_tried))
        sched_yield();
    return 0;
}

static void *late_submitter(void *p)
{
    late_case *c = p;
    spin_until(&c->shutdown_seen, 1);
    weft_handle *h = NULL;
    c->late_rc = weft_submit(c->rt, late_fn, c, &h);
    if (c->late_rc == 0)
        weft_handle_release(h);
    atomic_store(&c->submit_tried, 1);
    return NULL;
}

Test(blocking, submit_during_shutdown_is_eshutdown, .timeout = 60)
{
    static late_case c;
    weft_config cfg = {.workers = 2, .watchdog_ns = -1};
    cr_assert_eq(weft_runtime_start(&c.rt, &cfg), 0);
    weft_handle *gate;
    cr_assert_eq(weft_submit(c.rt, gate_fn, &c, &gate), 0);
    spin_until(&c.gate_started, 1);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, late_submitter, &c), 0);
    cr_assert_eq(weft_runtime_shutdown(c.rt), 0);
    pthread_join(th, NULL);
    cr_assert_eq(c.gate_sleep, -ECANCELED);
    cr_assert_eq(c.late_rc, -ESHUTDOWN);
    cr_assert_eq(atomic_load(&c.late_ran), 0);
    int st = 1;
    cr_assert_eq(weft_handle_wait(gate, WEFT_NEVER, &st), 0);
    cr_assert_eq(st, 0);
    cr_assert_eq(weft_handle_release(gate), 0);
}

/* ---- independent runtimes -------------------------------------------------------------------- */

Test(blocking, runtimes_are_independent, .timeout = 60)
{
    weft_runtime *a, *b;
    weft_config cfg = {.workers = 2};
    cr_assert_eq(weft_runtime_start(&a, &cfg), 0);
    cr_assert_eq(weft_runtime_start(&b, &cfg), 0);
    static sleepy sa;
    weft_handle *ha, *hb;
    cr_assert_eq(weft_submit(a, sleepy_fn, &sa, &ha), 0);
    spin_until(&sa.started, 1);
    cr_assert_eq(weft_submit(b, trivial, NULL, &hb), 0);
    int st = 1;
    cr_assert_eq(weft_handle_wait(hb, WEFT_NEVER, &st), 0);
    cr_assert_eq(st, 0);
    cr_assert_eq(weft_handle_release(hb), 0);
    cr_assert_eq(weft_runtime_shutdown(b), 0);
    /* A's task never noticed B's shutdown. */
    cr_assert_eq(weft_handle_wait(ha, weft_now() + 5 * WEFT_MSEC, &st), -ETIMEDOUT);
    cr_assert_eq(weft_run(&cfg, trivial, NULL), 0, "a third runtime meanwhile");
    cr_assert_eq(weft_runtime_shutdown(a), 0);
    cr_assert_eq(weft_handle_wait(ha, WEFT_NEVER, &st), 0);
    cr_assert_eq(st, -ECANCELED);
    cr_assert_eq(weft_handle_release(ha), 0);
}

/* ---- the pool grows on demand up to its maximum, and shrinks when idle ----------------------- */

#define GROW_MAX 4
#define GROW_CALLS 12

/* Pool calls that wait at a gate the test thread opens once GROW_MAX of them are inside. */
typedef struct gate_case {
    pthread_mutex_t mu;
    pthread_cond_t changed;
    int inside, most_inside, opened, calls;
    pthread_t threads[GROW_CALLS];
    int nthreads; /* distinct pool threads that ran a call */
} gate_case;

static gate_case gate = {.mu = PTHREAD_MUTEX_INITIALIZER, .changed = PTHREAD_COND_INITIALIZER};

static void gate_reset(void)
{
    pthread_mutex_lock(&gate.mu);
    gate.inside = gate.most_inside = gate.opened = gate.calls = gate.nthreads = 0;
    pthread_mutex_unlock(&gate.mu);
}

static void note_thread(void)
{
    for (int i = 0; i < gate.nthreads; i++)
        if (pthread_equal(gate.threads[i], pthread_self()))
            return;
    if (gate.nthreads < GROW_CALLS)
        gate.threads[gate.nthreads++] = pthread_self();
}

static int gated_call(void *p)
{
    (void)p;
    pthread_mutex_lock(&gate.mu);
    note_thread();
    gate.calls++;
    if (++gate.inside > gate.most_inside)
        gate.most_inside = gate.inside;
    pthread_cond_broadcast(&gate.changed);
    while (!gate.opened)
        pthread_cond_wait(&gate.changed, &gate.mu);
    gate.inside--;
    pthread_mutex_unlock(&gate.mu);
    return 0;
}

static int gated_task(void *p)
{
    (void)p;
    int result = -1;
    REQUIRE_EQ(weft_blocking(gated_call, NULL, &result), 0);
    REQUIRE_EQ(result, 0);
    return 0;
}

static int spawn_gated(void *p)
{
    int n = *(int *)p;
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    for (int i = 0; i < n; i++)
        CHECK_EQ(weft_spawn(s, gated_task, NULL), 0);
    return weft_scope_join(s);
}

/* Runs `n` gated calls on `rt`, opening the gate once `inside` calls wait at it. Returns the
 * pool's thread count seen while they waited. */
static unsigned gated_round(weft_runtime *rt, int n, int inside)
{
    gate_reset();
    weft_handle *h;
    cr_assert_eq(weft_submit(rt, spawn_gated, &n, &h), 0);
    pthread_mutex_lock(&gate.mu);
    while (gate.inside < inside)
        pthread_cond_wait(&gate.changed, &gate.mu);
    unsigned threads = weft__blocking_threads(rt);
    gate.opened = 1;
    pthread_cond_broadcast(&gate.changed);
    pthread_mutex_unlock(&gate.mu);
    int st = -1;
    cr_assert_eq(weft_handle_wait(h, WEFT_NEVER, &st), 0);
    cr_assert_eq(st, 0);
    cr_assert_eq(weft_handle_release(h), 0);
    ASSERT_CHECKS();
    cr_assert_eq(gate.calls, n);
    return threads;
}

static int sequential_calls(void *p)
{
    int n = *(int *)p;
    for (int i = 0; i < n; i++) {
        int result = -1;
        REQUIRE_EQ(weft_blocking(gated_call, NULL, &result), 0);
        REQUIRE_EQ(result, 0);
    }
    return 0;
}

Test(blocking, pool_grows_to_its_maximum_and_queues_beyond, .timeout = 120)
{
    weft_runtime *rt;
    weft_config cfg = {.workers = 2, .blocking_threads = GROW_MAX};
    cr_assert_eq(weft_runtime_start(&rt, &cfg), 0);
    cr_assert_eq(weft__blocking_threads(rt), 0, "no thread before the first call");

    /* One call at a time needs one thread, however many calls. */
    gate_reset();
    gate.opened = 1;
    int n = 200;
    weft_handle *h;
    cr_assert_eq(weft_submit(rt, sequential_calls, &n, &h), 0);
    cr_assert_eq(weft_handle_wait(h, WEFT_NEVER, NULL), 0);
    cr_assert_eq(weft_handle_release(h), 0);
    ASSERT_CHECKS();
    cr_assert_eq(gate.calls, n);
    cr_assert_eq(gate.nthreads, 1, "sequential calls ran on %d threads", gate.nthreads);
    cr_assert_eq(weft__blocking_threads(rt), 1);

    /* GROW_CALLS calls at once: GROW_MAX run together, the rest queue until one ends. */
    unsigned threads = gated_round(rt, GROW_CALLS, GROW_MAX);
    cr_assert_eq(threads, GROW_MAX);
    cr_assert_eq(gate.most_inside, GROW_MAX, "at most the maximum at once");
    cr_assert_eq(gate.nthreads, GROW_MAX);
    cr_assert_eq(weft__blocking_threads(rt), GROW_MAX);
    cr_assert_eq(weft_runtime_shutdown(rt), 0);
}

Test(blocking, idle_pool_threads_exit_and_come_back_on_demand, .timeout = 120)
{
    weft_runtime *rt;
    weft_config cfg = {
        .workers = 2, .blocking_threads = GROW_MAX, .blocking_idle_ns = 1 * WEFT_MSEC};
    cr_assert_eq(weft_runtime_start(&rt, &cfg), 0);
    for (int round = 0; round < 3; round++) {
        cr_assert_eq(gated_round(rt, GROW_MAX, GROW_MAX), GROW_MAX, "round %d", round);
        cr_assert_eq(weft__blocking_wait_threads(rt, 0, weft_now() + SAFETY), 0,
                     "round %d: idle threads never exited (%u left)", round,
                     weft__blocking_threads(rt));
    }
    cr_assert_eq(weft_runtime_shutdown(rt), 0);

    cr_assert_eq(weft_runtime_start(&rt, &(weft_config){.blocking_idle_ns = -1}), -EINVAL);
}

/* ---- blocking_idle_ns too large to add to the clock: threads stay, asleep -------------------- */

static int note_pool_thread(void *p)
{
    *(pthread_t *)p = pthread_self();
    return 0;
}

static int one_blocking_call(void *p)
{
    int result = -1;
    REQUIRE_EQ(weft_blocking(note_pool_thread, p, &result), 0);
    REQUIRE_EQ(result, 0);
    return 0;
}

static weft_time thread_cpu_ns(pthread_t th)
{
    clockid_t clock;
    cr_assert_eq(pthread_getcpuclockid(th, &clock), 0);
    struct timespec ts;
    cr_assert_eq(clock_gettime(clock, &ts), 0);
    return (weft_time)ts.tv_sec * WEFT_SEC + ts.tv_nsec;
}

#define NEVER_CASES 2
#define IDLE_WINDOW (300 * WEFT_MSEC)

/* An idle pool thread that sleeps uses next to no CPU over the window; one that spins uses about
 * the window's length, or on a loaded machine still far more than a sixth of it. */
Test(blocking, idle_ns_never_keeps_idle_threads_asleep, .timeout = 60)
{
    const weft_time idle[NEVER_CASES] = {WEFT_NEVER, WEFT_NEVER - 1};
    weft_runtime *rt[NEVER_CASES];
    pthread_t pool_thread[NEVER_CASES];
    for (int i = 0; i < NEVER_CASES; i++) {
        weft_config cfg = {.workers = 1, .blocking_idle_ns = idle[i]};
        cr_assert_eq(weft_runtime_start(&rt[i], &cfg), 0);
        weft_handle *h;
        cr_assert_eq(weft_submit(rt[i], one_blocking_call, &pool_thread[i], &h), 0);
        int st = -1;
        cr_assert_eq(weft_handle_wait(h, weft_now() + SAFETY, &st), 0);
        cr_assert_eq(st, 0);
        cr_assert_eq(weft_handle_release(h), 0);
        ASSERT_CHECKS();
    }
    weft_time cpu[NEVER_CASES];
    for (int i = 0; i < NEVER_CASES; i++)
        cpu[i] = thread_cpu_ns(pool_thread[i]);
    /* A span of wall time to measure over, not a wait for an event. */
    struct timespec window = {.tv_sec = 0, .tv_nsec = IDLE_WINDOW};
    while (nanosleep(&window, &window) != 0)
        cr_assert_eq(errno, EINTR);
    for (int i = 0; i < NEVER_CASES; i++) {
        weft_time used = thread_cpu_ns(pool_thread[i]) - cpu[i];
        cr_assert_lt(used, 50 * WEFT_MSEC,
                     "blocking_idle_ns %lld: the idle pool thread used %lld ms of CPU in %lld ms",
                     (long long)idle[i], (long long)(used / WEFT_MSEC),
                     (long long)(IDLE_WINDOW / WEFT_MSEC));
        cr_assert_eq(weft__blocking_threads(rt[i]), 1, "blocking_idle_ns %lld: it exited",
                     (long long)idle[i]);
    }
    for (int i = 0; i < NEVER_CASES; i++)
        cr_assert_eq(weft_runtime_shutdown(rt[i]), 0);
}

/* ---- the watchdog ---------------------------------------------------------------------------- */

/* stderr goes to a file for the test's duration; the report is read back from it. */
static int captured_fd = -1, saved_stderr = -1;

static void capture_stderr(void)
{
    char path[] = "/tmp/weft-watchdog-XXXXXX";
    captured_fd = mkstemp(path);
    cr_assert_geq(captured_fd, 0);
    unlink(path);
    fflush(stderr);
    saved_stderr = dup(2);
    cr_assert_eq(dup2(captured_fd, 2), 2);
}

static size_t captured(char *buf, size_t size)
{
    ssize_t n = pread(captured_fd, buf, size - 1, 0);
    buf[n > 0 ? n : 0] = 0;
    return n > 0 ? (size_t)n : 0;
}

static void restore_stderr(void)
{
    fflush(stderr);
    dup2(saved_stderr, 2);
    close(saved_stderr);
    close(captured_fd);
}

static size_t count_of(const char *text, const char *what)
{
    size_t n = 0;
    for (const char *at = strstr(text, what); at; at = strstr(at + 1, what))
        n++;
    return n;
}

#define WATCHDOG_NS (20 * WEFT_MSEC)

/* Runs without a suspension point until the report about it is on stderr, then another ten
 * watchdog periods, so a second report would have had its chance. */
static int hog(void *p)
{
    (void)p;
    char buf[4096];
    weft_time give_up = weft_now() + SAFETY;
    while (!strstr((captured(buf, sizeof buf), buf), "'hog'") && weft_now() < give_up)
        ;
    weft_time until = weft_now() + 10 * WATCHDOG_NS;
    while (weft_now() < until)
        ;
    return 0;
}

/* As long, but with a checkpoint in its loop: never reported. */
static int polite(void *p)
{
    (void)p;
    weft_time until = weft_now() + 10 * WATCHDOG_NS;
    while (weft_now() < until)
        CHECK_EQ(weft_checkpoint(), 0);
    return 0;
}

static int hog_then_polite(void *p)
{
    (void)p;
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    REQUIRE_EQ(weft_spawn_ex(s, polite, NULL, &(weft_spawn_opts){.name = "polite"}), 0);
    REQUIRE_EQ(weft_scope_join(s), 0);
    REQUIRE_EQ(weft_scope_release(s), 0);
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    REQUIRE_EQ(weft_spawn_ex(s, hog, NULL, &(weft_spawn_opts){.name = "hog"}), 0);
    return weft_scope_join(s);
}

Test(blocking, watchdog_reports_a_hog_once_on_stderr, .timeout = 120)
{
    capture_stderr();
    int rc =
        weft_run(&(weft_config){.workers = 2, .watchdog_ns = WATCHDOG_NS}, hog_then_polite, NULL);
    char text[4096];
    captured(text, sizeof text);
    restore_stderr();
    cr_assert_eq(rc, 0);
    ASSERT_CHECKS();
    cr_assert_eq(count_of(text, "weft: task 'hog' has run on worker"), 1, "stderr: %s", text);
    cr_assert_neq(strstr(text, "weft_blocking()"), NULL, "says what to do: %s", text);
    cr_assert_neq(strstr(text, "over 20 ms"), NULL, "names the threshold: %s", text);
    cr_assert_eq(strstr(text, "polite"), NULL, "a task reaching checkpoints: %s", text);
    cr_assert_eq(count_of(text, "\n"), 1, "one line: %s", text);
}

/* Runs without a suspension point until a report naming `p` (a quoted task name) is on stderr. */
static int hog_until_named(void *p)
{
    const char *quoted = p;
    char buf[4096];
    weft_time give_up = weft_now() + SAFETY;
    while (!strstr((captured(buf, sizeof buf), buf), quoted) && weft_now() < give_up)
        ;
    return 0;
}

/* On one worker the join runs its child inline, on the joiner's stack: the child hogs, then,
 * once the child is back, the joiner. */
static int inline_hog_then_joiner_hog(void *p)
{
    (void)p;
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    REQUIRE_EQ(
        weft_spawn_ex(s, hog_until_named, "'inline-hog'", &(weft_spawn_opts){.name = "inline-hog"}),
        0);
    REQUIRE_EQ(weft_scope_close(s), 0);
    return hog_until_named("'root'");
}

Test(blocking, watchdog_names_an_inline_child_and_then_its_joiner, .timeout = 120)
{
    capture_stderr();
    int rc = weft_run(&(weft_config){.workers = 1, .watchdog_ns = WATCHDOG_NS},
                      inline_hog_then_joiner_hog, NULL);
    char text[4096];
    captured(text, sizeof text);
    restore_stderr();
    cr_assert_eq(rc, 0);
    ASSERT_CHECKS();
    cr_assert_eq(count_of(text, "weft: task 'inline-hog' has run on worker 0"), 1, "stderr: %s",
                 text);
    cr_assert_eq(count_of(text, "weft: task 'root' has run on worker 0"), 1, "stderr: %s", text);
    cr_assert_eq(count_of(text, "\n"), 2, "two lines: %s", text);
}

/* A task blocked in a system call holds its worker all along: reported. The read ends once the
 * report is out (a plain thread watches stderr for it). */
static int blocked_pipe[2];

static void *unblock_when_reported(void *p)
{
    (void)p;
    char buf[4096];
    weft_time give_up = weft_now() + SAFETY;
    while (!strstr((captured(buf, sizeof buf), buf), "'root'") && weft_now() < give_up)
        sched_yield();
    (void)!write(blocked_pipe[1], "x", 1);
    return NULL;
}

static int read_blocked(void *p)
{
    (void)p;
    char c;
    return read(blocked_pipe[0], &c, 1) == 1 ? 0 : -EIO;
}

Test(blocking, watchdog_reports_a_task_blocked_in_a_system_call, .timeout = 120)
{
    cr_assert_eq(pipe(blocked_pipe), 0);
    capture_stderr();
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, unblock_when_reported, NULL), 0);
    int rc = weft_run(&(weft_config){.workers = 1, .watchdog_ns = WATCHDOG_NS}, read_blocked, NULL);
    pthread_join(th, NULL);
    char text[4096];
    captured(text, sizeof text);
    restore_stderr();
    close(blocked_pipe[0]);
    close(blocked_pipe[1]);
    cr_assert_eq(rc, 0);
    cr_assert_eq(count_of(text, "weft: task 'root' has run on worker 0"), 1, "stderr: %s", text);
}

/* A task that polls checkpoints while a real-time thread on its worker's CPU keeps the worker off
 * that CPU, again and again for three watchdog limits at a time: the worker stands still, but
 * the task never had the time, so it is not reported. (The kernel counts a wait on the run
 * queue only once it is over; the watchdog must not take the missing count for time held.) */
#define STARVE_ROUNDS 3

static struct starve {
    int cpu;
    int wake[2];            /* the poller tells the real-time thread it runs (again) */
    atomic_int rounds_done; /* rounds the real-time thread finished */
    weft_time longest_gap;  /* the longest the poller went without running */
} starve;

static void *starve_worker_cpu(void *p)
{
    (void)p;
    char c;
    if (read(starve.wake[0], &c, 1) != 1) /* until the poller runs */
        return NULL;
    for (int round = 1; round <= STARVE_ROUNDS; round++) {
        weft_time until = weft_now() + 3 * WATCHDOG_NS;
        while (weft_now() < until)
            ; /* the CPU is ours: the worker waits */
        atomic_store(&starve.rounds_done, round);
        if (read(starve.wake[0], &c, 1) != 1) /* until the poller ran again */
            break;
    }
    return NULL;
}

static int poll_through_starvation(void *p)
{
    (void)p;
    int seen = 0;
    weft_time last = weft_now(), give_up = last + SAFETY;
    (void)!write(starve.wake[1], "x", 1); /* the real-time thread may start */
    while (seen < STARVE_ROUNDS && weft_now() < give_up) {
        CHECK_EQ(weft_checkpoint(), 0);
        weft_time now = weft_now();
        if (now - last > starve.longest_gap)
            starve.longest_gap = now - last;
        last = now;
        int done = atomic_load(&starve.rounds_done);
        if (done > seen) {
            seen = done;
            (void)!write(starve.wake[1], "x", 1);
        }
    }
    return seen == STARVE_ROUNDS ? 0 : -ETIMEDOUT;
}

Test(blocking, watchdog_spares_a_task_whose_worker_is_kept_off_its_cpu, .timeout = 120)
{
    cpu_set_t allowed;
    cr_assert_eq(sched_getaffinity(0, sizeof allowed, &allowed), 0);
    if (CPU_COUNT(&allowed) < 2)
        cr_skip_test("needs a second CPU for the watchdog");
    starve.cpu = 0;
    while (!CPU_ISSET(starve.cpu, &allowed))
        starve.cpu++; /* where pin_workers puts worker 0 */
    cr_assert_eq(pipe(starve.wake), 0);

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(starve.cpu, &one);
    pthread_attr_setaffinity_np(&attr, sizeof one, &one);
    pthread_attr_setinheritsched(&attr, PTHREAD_EXPLICIT_SCHED);
    pthread_attr_setschedpolicy(&attr, SCHED_FIFO);
    pthread_attr_setschedparam(&attr, &(struct sched_param){.sched_priority = 1});
    pthread_t th;
    int made = pthread_create(&th, &attr, starve_worker_cpu, NULL);
    pthread_attr_destroy(&attr);
    if (made == EPERM)
        cr_skip_test("no permission for a real-time thread");
    cr_assert_eq(made, 0);

    capture_stderr();
    int rc = weft_run(&(weft_config){.workers = 1, .pin_workers = 1, .watchdog_ns = WATCHDOG_NS},
                      poll_through_starvation, NULL);
    char text[4096];
    captured(text, sizeof text);
    restore_stderr();
    (void)!write(starve.wake[1], "x", 1); /* in case the poller gave up */
    pthread_join(th, NULL);
    close(starve.wake[0]);
    close(starve.wake[1]);
    cr_assert_eq(rc, 0);
    ASSERT_CHECKS();
    cr_assert_geq(starve.longest_gap, 2 * WATCHDOG_NS, "the worker was never kept off its CPU");
    cr_assert_eq(strstr(text, "has run on worker"), NULL, "stderr: %s", text);
}

/* An allocation of the runtime's own that waits in the kernel for ten limits, as malloc waits for
 * its arena's lock (or mprotect for the address space's) while the thread holding it waits for a
 * CPU, on a machine with far more workers than CPUs: the wait is the runtime's, and the task
 * that only asked to sleep is not reported. The wait ends early once a report is out. */
static atomic_int stalls, stalled_on_worker = -1;

static void stall_allocation(void)
{
    atomic_fetch_add(&stalls, 1);
    atomic_store(&stalled_on_worker, weft_worker_index());
    char buf[4096];
    weft_time until = weft_now() + 10 * WATCHDOG_NS;
    while (!strstr((captured(buf, sizeof buf), buf), "has run on worker") && weft_now() < until)
        nanosleep(&(struct timespec){.tv_nsec = WEFT_MSEC}, NULL);
}

static int sleep_through_a_stalled_allocation(void *p)
{
    (void)p;
    weft__alloc_stall_at(1, stall_allocation); /* the first timer of the worker: a heap to make */
    int rc = weft_sleep_for(WEFT_MSEC);
    weft__alloc_stall_at(0, NULL);
    return rc;
}

Test(blocking, watchdog_spares_a_task_whose_runtime_allocation_waits, .timeout = 120)
{
    capture_stderr();
    int rc = weft_run(&(weft_config){.workers = 1, .watchdog_ns = WATCHDOG_NS},
                      sleep_through_a_stalled_allocation, NULL);
    char text[4096];
    captured(text, sizeof text);
    restore_stderr();
    cr_assert_eq(rc, 0);
    cr_assert_eq(atomic_load(&stalls), 1, "no allocation of the runtime's stalled");
    cr_assert_eq(atomic_load(&stalled_on_worker), 0, "the stall was not on the worker");
    cr_assert_eq(strstr(text, "has run on worker"), NULL, "stderr: %s", text);
}

/* A spinlock of the runtime's that its holder keeps while it waits (here a plain thread holds the
 * worker's timer heap, as a worker holds it across malloc or while the kernel runs others): the
 * task that arms a timer spins on it, on a CPU, for five limits of CPU time, and is not
 * reported, since it only asked to sleep. The lock goes once a report is out. */
static struct held_lock {
    atomic_int task_runs, locked;
    weft_time spun; /* CPU time the worker's thread took while the lock was held */
} held;

static weft_time thread_cpu(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (weft_time)ts.tv_sec * WEFT_SEC + ts.tv_nsec;
}

static int sleep_behind_a_held_lock(void *p)
{
    (void)p;
    atomic_store(&held.task_runs, 1);
    weft_time give_up = weft_now() + SAFETY;
    while (!atomic_load(&held.locked) && weft_now() < give_up)
        CHECK_EQ(weft_checkpoint(), 0);
    return weft_sleep_for(WEFT_MSEC);
}

Test(blocking, watchdog_spares_a_task_spinning_on_a_runtime_lock, .timeout = 120)
{
    weft_runtime *rt;
    cr_assert_eq(weft_runtime_start(&rt, &(weft_config){.workers = 1, .watchdog_ns = WATCHDOG_NS}),
                 0);
    clockid_t worker_clock;
    cr_assert_eq(pthread_getcpuclockid(rt->workers[0].thread, &worker_clock), 0);
    capture_stderr();
    weft_handle *h;
    cr_assert_eq(weft_submit(rt, sleep_behind_a_held_lock, NULL, &h), 0);
    weft_time give_up = weft_now() + SAFETY;
    while (!atomic_load(&held.task_runs) && weft_now() < give_up)
        sched_yield();
    weft__lock_acquire(&rt->workers[0].timers.lock);
    weft_time from = thread_cpu(worker_clock);
    atomic_store(&held.locked, 1);
    char text[4096];
    while (thread_cpu(worker_clock) - from < 5 * WATCHDOG_NS &&
           !strstr((captured(text, sizeof text), text), "has run on worker") &&
           weft_now() < give_up)
        nanosleep(&(struct timespec){.tv_nsec = WEFT_MSEC}, NULL);
    held.spun = thread_cpu(worker_clock) - from;
    weft__lock_release(&rt->workers[0].timers.lock);
    int st = -1;
    cr_assert_eq(weft_handle_wait(h, WEFT_NEVER, &st), 0);
    weft_handle_release(h);
    cr_assert_eq(weft_runtime_shutdown(rt), 0);
    captured(text, sizeof text);
    restore_stderr();
    cr_assert_eq(st, 0);
    ASSERT_CHECKS();
    cr_assert_eq(strstr(text, "has run on worker"), NULL, "stderr: %s", text);
    cr_assert_geq(held.spun, 5 * WATCHDOG_NS, "the worker spun for %lld ns only",
                  (long long)held.spun);
}

/* Far more workers than CPUs, each task sleeping in a loop: the workers make their timer heaps,
 * deques and stacks at once and wait for malloc's locks, for the address space's and for the
 * CPUs, all while a task that did nothing but sleep is theirs. Nothing is reported at the default
 * limit. (Where the machine has the CPUs for 256 workers this proves little, and passes.) */
#define CROWD_TASKS 2000
#define CROWD_SLEEPS 5

static int crowd_sleeper(void *p)
{
    (void)p;
    for (int i = 0; i < CROWD_SLEEPS; i++)
        CHECK_EQ(weft_sleep_for(WEFT_MSEC), 0);
    return 0;
}

static int crowd_root(void *p)
{
    (void)p;
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    for (int i = 0; i < CROWD_TASKS; i++)
        REQUIRE_EQ(weft_spawn_ex(s, crowd_sleeper, NULL, &(weft_spawn_opts){.name = "sleeper"}), 0);
    REQUIRE_EQ(weft_scope_join(s), 0);
    return weft_scope_release(s);
}

Test(blocking, watchdog_spares_sleepers_on_far_more_workers_than_cpus, .timeout = 120)
{
    capture_stderr();
    int rc = weft_run(&(weft_config){.workers = 256}, crowd_root, NULL);
    char text[4096];
    captured(text, sizeof text);
    restore_stderr();
    cr_assert_eq(rc, 0);
    ASSERT_CHECKS();
    cr_assert_eq(strstr(text, "has run on worker"), NULL, "stderr: %s", text);
}

static int quiet_hog(void *p)
{
    (void)p;
    weft_time until = weft_now() + 10 * WATCHDOG_NS;
    while (weft_now() < until)
        ;
    return 0;
}

Test(blocking, watchdog_off_reports_nothing, .timeout = 60)
{
    capture_stderr();
    int rc = weft_run(&(weft_config){.workers = 1, .watchdog_ns = -1}, quiet_hog, NULL);
    char text[4096];
    size_t n = captured(text, sizeof text);
    restore_stderr();
    cr_assert_eq(rc, 0);
    cr_assert_eq(n, 0, "stderr: %s", text);
}

/* ---- a pool thread whose exit takes long ---- */

/* The thread-local data of a pool thread, whose destructor (the program's code, run as the
 * thread exits) waits for the pipe: the thread has left the pool but has not ended. */
typedef struct {
    pthread_key_t key;
    int pipe[2];
    atomic_int exiting; /* the destructor began */
    atomic_int calls;
} slow_exit;

static slow_exit *slow;

static void slow_destructor(void *value)
{
    (void)value;
    atomic_store(&slow->exiting, 1);
    char c;
    while (read(slow->pipe[0], &c, 1) < 0 && errno == EINTR) {
    }
}

static int set_key(void *arg)
{
    slow_exit *s = arg;
    pthread_setspecific(s->key, s);
    atomic_fetch_add(&s->calls, 1);
    return 0;
}

static int count_slow_call(void *arg)
{
    slow_exit *s = arg;
    atomic_fetch_add(&s->calls, 1);
    return 0;
}

static int slow_exit_root(void *arg)
{
    slow_exit *s = arg;
    int result;
    REQUIRE_EQ(weft_blocking(set_key, s, &result), 0);
    /* Its thread leaves the pool after 1 ms idle and blocks in the destructor. */
    REQUIRE_EQ(yield_until(&s->exiting, 1), 0);
    /* The next call must not wait for that thread's end: the destructor waits for this task,
     * which writes the pipe only once the call returned. The only worker would wait for ever. */
    CHECK_EQ(weft_blocking(count_slow_call, s, &result), 0);
    CHECK_EQ(write(s->pipe[1], "x", 1), 1);
    return 0;
}

Test(blocking, a_pool_thread_slow_to_end_holds_no_worker, .timeout = 60)
{
    static slow_exit s;
    slow = &s;
    cr_assert_eq(pthread_key_create(&s.key, slow_destructor), 0);
    cr_assert_eq(pipe(s.pipe), 0);
    weft_config cfg = {.workers = 1, .blocking_idle_ns = WEFT_MSEC, .watchdog_ns = -1};
    cr_assert_eq(weft_run(&cfg, slow_exit_root, &s), 0);
    ASSERT_CHECKS();
    cr_assert_eq(atomic_load(&s.calls), 2);
    close(s.pipe[0]);
    close(s.pipe[1]);
    pthread_key_delete(s.key);
}
