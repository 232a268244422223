// SPDX-License-Identifier: MIT
/*
 * Semaphores: FIFO service of waiters, try_acquire, release from foreign threads, over-release,
 * cancelled and timed-out waiters giving up their place (tokens conserved), destroy with waiters,
 * and a bound on concurrent holders under load.
 *
 * Where a test needs waiters queued in a known order it runs on one worker: a task that bumps a
 * counter right before weft_sem_acquire has queued by the time the root (polling the counter with
 * weft_yield) runs again.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alloc.h"
#include "support_criterion.h"
#include "weft.h"

/* ---- FIFO ------------------------------------------------------------------------------------ */

#define NFIFO 16

typedef struct fifo_case {
    weft_sem *sem;
    atomic_int queued, next;
    int order[NFIFO];
    int barged; /* try_acquire succeeded while waiters queued */
    unsigned available_after_release;
} fifo_case;

typedef struct fifo_arg {
    fifo_case *c;
    int id;
} fifo_arg;

static fifo_arg fifo_args[NFIFO];

static int fifo_waiter(void *p)
{
    fifo_arg *a = p;
    fifo_case *c = a->c;
    atomic_fetch_add(&c->queued, 1);
    REQUIRE_EQ(weft_sem_acquire(c->sem), 0);
    c->order[atomic_fetch_add(&c->next, 1)] = a->id;
    CHECK_EQ(weft_yield(), 0); /* hold the token across a switch */
    CHECK_EQ(weft_sem_release(c->sem), 0);
    return 0;
}

static int fifo_root(void *p)
{
    fifo_case *c = p;
    REQUIRE_EQ(weft_sem_try_acquire(c->sem), 0);
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    for (int i = 0; i < NFIFO; i++) {
        fifo_args[i] = (fifo_arg){.c = c, .id = i};
        CHECK_EQ(weft_spawn(s, fifo_waiter, &fifo_args[i]), 0);
        CHECK_EQ(yield_until(&c->queued, i + 1), 0); /* waiter i is queued before i+1 starts */
    }
    CHECK_EQ(weft_sem_release(c->sem), 0);
    /* The token went straight to the oldest waiter: nobody arriving now can overtake it. */
    c->available_after_release = weft_sem_available(c->sem);
    c->barged = weft_sem_try_acquire(c->sem) == 0;
    CHECK_EQ(weft_scope_join(s), 0);
    CHECK_EQ(weft_scope_release(s), 0);
    return 0;
}

Test(sem, waiters_served_in_fifo_order, .timeout = 60)
{
    static fifo_case c;
    cr_assert_eq(weft_sem_create(&c.sem, 1), 0);
    cr_assert_eq(run_on(1, fifo_root, &c), 0);
    ASSERT_CHECKS();
    cr_assert_eq(c.available_after_release, 0);
    cr_assert_eq(c.barged, 0, "try_acquire overtook queued waiters");
    cr_assert_eq(atomic_load(&c.next), NFIFO);
    for (int i = 0; i < NFIFO; i++)
        cr_assert_eq(c.order[i], i, "position %d went to waiter %d", i, c.order[i]);
    cr_assert_eq(weft_sem_available(c.sem), 1);
    cr_assert_eq(weft_sem_destroy(c.sem), 0);
}

/* ---- try_acquire, overflow, bad arguments ---------------------------------------------------- */

Test(sem, try_acquire_and_overflow_from_a_plain_thread)
{
    weft_sem *s;
    cr_assert_eq(weft_sem_create(&s, 2), 0);
    cr_assert_eq(weft_sem_available(s), 2);
    cr_assert_eq(weft_sem_release(s), -EOVERFLOW, "released more than it was created with");
    cr_assert_eq(weft_sem_available(s), 2);
    cr_assert_eq(weft_sem_try_acquire(s), 0);
    cr_assert_eq(weft_sem_try_acquire(s), 0);
    cr_assert_eq(weft_sem_try_acquire(s), -EAGAIN);
    cr_assert_eq(weft_sem_available(s), 0);
    cr_assert_eq(weft_sem_release(s), 0);
    cr_assert_eq(weft_sem_available(s), 1);
    cr_assert_eq(weft_sem_release(s), 0);
    cr_assert_eq(weft_sem_release(s), -EOVERFLOW);
    cr_assert_eq(weft_sem_available(s), 2);
    cr_assert_eq(weft_sem_destroy(s), 0);

    cr_assert_eq(weft_sem_create(&s, 0), 0);
    cr_assert_eq(weft_sem_try_acquire(s), -EAGAIN);
    cr_assert_eq(weft_sem_release(s), -EOVERFLOW);
    cr_assert_eq(weft_sem_available(s), 0);
    cr_assert_eq(weft_sem_destroy(s), 0);
}

Test(sem, bad_arguments)
{
    weft_sem *s;
    cr_assert_eq(weft_sem_create(NULL, 1), -EINVAL);
    cr_assert_eq(weft_sem_destroy(NULL), -EINVAL);
    cr_assert_eq(weft_sem_try_acquire(NULL), -EINVAL);
    cr_assert_eq(weft_sem_release(NULL), -EINVAL);
    cr_assert_eq(weft_sem_available(NULL), 0);
    cr_assert_eq(weft_sem_create(&s, 1), 0);
    cr_assert_eq(weft_sem_acquire(s), -EPERM, "acquire is task-only");
    cr_assert_eq(weft_sem_available(s), 1);
    cr_assert_eq(weft_sem_destroy(s), 0);
}

typedef struct null_case {
    int rc;
} null_case;

static int acquire_null_root(void *p)
{
    ((null_case *)p)->rc = weft_sem_acquire(NULL);
    return 0;
}

Test(sem, acquire_null_in_a_task_is_einval)
{
    static null_case c;
    cr_assert_eq(run_on(1, acquire_null_root, &c), 0);
    cr_assert_eq(c.rc, -EINVAL);
}

/* ---- release from a foreign pthread ---------------------------------------------------------- */

typedef struct foreign_case {
    weft_sem *sem;
    atomic_int queued;
    int waiter_rc;
    int release_rc;
    unsigned available_in_root;
} foreign_case;

static int foreign_waiter(void *p)
{
    foreign_case *c = p;
    atomic_fetch_add(&c->queued, 1);
    c->waiter_rc = weft_sem_acquire(c->sem);
    if (c->waiter_rc == 0)
        CHECK_EQ(weft_sem_release(c->sem), 0);
    return 0;
}

static void *foreign_release(void *p)
{
    foreign_case *c = p;
    c->release_rc = weft_sem_release(c->sem);
    return NULL;
}

static int foreign_root(void *p)
{
    foreign_case *c = p;
    REQUIRE_EQ(weft_sem_try_acquire(c->sem), 0);
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    CHECK_EQ(weft_spawn(s, foreign_waiter, c), 0);
    CHECK_EQ(yield_until(&c->queued, 1), 0);
    pthread_t th;
    REQUIRE_EQ(pthread_create(&th, NULL, foreign_release, c), 0);
    /* Only the foreign release can end this join. */
    CHECK_EQ(weft_scope_join(s), 0);
    pthread_join(th, NULL);
    CHECK_EQ(weft_scope_release(s), 0);
    c->available_in_root = weft_sem_available(c->sem);
    return 0;
}

Test(sem, release_from_foreign_pthread_wakes_waiter, .timeout = 60)
{
    static foreign_case c;
    cr_assert_eq(weft_sem_create(&c.sem, 1), 0);
    cr_assert_eq(run_on(2, foreign_root, &c), 0);
    ASSERT_CHECKS();
    cr_assert_eq(c.release_rc, 0);
    cr_assert_eq(c.waiter_rc, 0);
    cr_assert_eq(c.available_in_root, 1);
    cr_assert_eq(weft_sem_destroy(c.sem), 0);
}

/* ---- a cancelled waiter gives up its place --------------------------------------------------- */

typedef struct place_case {
    weft_sem *sem;
    atomic_int queued, first_done;
    int first_rc, second_rc;
    int second_got_token;
    int release_first; /* 1: release, then cancel before the woken waiter runs */
    int join_first, join_second;
    unsigned available_end;
} place_case;

static int place_first(void *p)
{
    place_case *c = p;
    atomic_fetch_add(&c->queued, 1);
    c->first_rc = weft_sem_acquire(c->sem);
    if (c->first_rc == 0)
        CHECK_EQ(weft_sem_release(c->sem), 0); /* not expected: fails below */
    atomic_store(&c->first_done, 1);
    return c->first_rc;
}

static int place_second(void *p)
{
    place_case *c = p;
    atomic_fetch_add(&c->queued, 1);
    c->second_rc = weft_sem_acquire(c->sem);
    if (c->second_rc == 0) {
        c->second_got_token = 1;
        CHECK_EQ(weft_sem_release(c->sem), 0);
    }
    return c->second_rc;
}

static int place_root(void *p)
{
    place_case *c = p;
    REQUIRE_EQ(weft_sem_try_acquire(c->sem), 0);
    weft_scope *second, *first;
    /* `first` is opened inside `second`: cancelling it leaves `second` alone. */
    REQUIRE_EQ(weft_scope_open(&second, NULL), 0);
    REQUIRE_EQ(weft_scope_open(&first, NULL), 0);
    CHECK_EQ(weft_spawn(first, place_first, c), 0);
    CHECK_EQ(yield_until(&c->queued, 1), 0);
    CHECK_EQ(weft_spawn(second, place_second, c), 0);
    CHECK_EQ(yield_until(&c->queued, 2), 0);
    /* The root's own suspension points are inside `first` too (its innermost open scope) until
     * it is joined; the join is the way to wait for the cancelled waiter. */
    if (c->release_first) {
        /* The release wakes the first waiter with the token; the cancel lands before it runs
         * (one worker, no suspension point in between): woken and cancelled at once. */
        CHECK_EQ(weft_sem_release(c->sem), 0);
        CHECK_EQ(weft_scope_cancel(first), 0);
        c->join_first = weft_scope_join(first);
    } else {
        CHECK_EQ(weft_scope_cancel(first), 0);
        c->join_first = weft_scope_join(first);
        CHECK_EQ(atomic_load(&c->first_done), 1);
        CHECK_EQ(weft_sem_available(c->sem), 0); /* the cancelled waiter took nothing */
        CHECK_EQ(weft_sem_release(c->sem), 0);
    }
    c->join_second = weft_scope_join(second);
    CHECK_EQ(weft_scope_release(first), 0);
    CHECK_EQ(weft_scope_release(second), 0);
    c->available_end = weft_sem_available(c->sem);
    return 0;
}

static void check_place(int release_first)
{
    static place_case c;
    memset(&c, 0, sizeof(c));
    c.release_first = release_first;
    cr_assert_eq(weft_sem_create(&c.sem, 1), 0);
    cr_assert_eq(run_on(1, place_root, &c), 0);
    ASSERT_CHECKS();
    cr_assert_eq(c.first_rc, -ECANCELED, "cancelled waiter: %d", c.first_rc);
    cr_assert_eq(c.join_first, -ECANCELED);
    cr_assert_eq(c.second_rc, 0, "the next waiter did not get the token: %d", c.second_rc);
    cr_assert_eq(c.second_got_token, 1);
    cr_assert_eq(c.join_second, 0);
    cr_assert_eq(c.available_end, 1, "a token was lost or invented");
    cr_assert_eq(weft_sem_destroy(c.sem), 0);
}

Test(sem, cancelled_waiter_gives_up_its_place, .timeout = 60)
{
    check_place(0);
}

Test(sem, waiter_woken_and_cancelled_at_once_passes_token_on, .timeout = 60)
{
    check_place(1);
}

/* A signal (0 of 2) whose waiter is handed a token and cancelled before it runs: the token
 * counts towards the two until the waiter gives it back, so of three releases the third is
 * refused, and the semaphore ends holding the two that were accepted and not taken. */
typedef struct handed_case {
    weft_sem *sem;
    atomic_int queued;
    int waiter_rc;
    int release_rc[3];
    unsigned available_end;
} handed_case;

static int handed_waiter(void *p)
{
    handed_case *c = p;
    atomic_store(&c->queued, 1);
    c->waiter_rc = weft_sem_acquire(c->sem);
    return 0;
}

static int handed_root(void *p)
{
    handed_case *c = p;
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    CHECK_EQ(weft_spawn(s, handed_waiter, c), 0);
    /* One worker: the waiter has parked in its acquire when the root runs again. No suspension
     * point from here to the join, so the waiter runs again only there. */
    CHECK_EQ(yield_until(&c->queued, 1), 0);
    c->release_rc[0] = weft_sem_release(c->sem);
    CHECK_EQ(weft_scope_cancel(s), 0);
    c->release_rc[1] = weft_sem_release(c->sem);
    c->release_rc[2] = weft_sem_release(c->sem);
    CHECK_EQ(weft_scope_close(s), -ECANCELED);
    c->available_end = weft_sem_available(c->sem);
    return 0;
}

Test(sem, a_token_handed_to_a_cancelled_waiter_is_not_lost, .timeout = 60)
{
    static handed_case c;
    memset(&c, 0, sizeof(c));
    cr_assert_eq(weft_sem_create_max(&c.sem, 0, 2), 0);
    cr_assert_eq(run_on(1, handed_root, &c), 0);
    ASSERT_CHECKS();
    cr_assert_eq(c.waiter_rc, -ECANCELED);
    cr_assert_eq(c.release_rc[0], 0);
    cr_assert_eq(c.release_rc[1], 0);
    cr_assert_eq(c.release_rc[2], -EOVERFLOW, "a third release fit: %d", c.release_rc[2]);
    cr_assert_eq(c.available_end, 2, "accepted releases and tokens held differ: %u",
                 c.available_end);
    cr_assert_eq(weft_sem_destroy(c.sem), 0);
}

/* A waiter whose scope times out leaves the queue without a token. */
typedef struct timeout_case {
    weft_sem *sem;
    int waiter_rc;
    int join;
    unsigned available_mid, available_end;
    int destroy_rc;
} timeout_case;

static int timeout_waiter(void *p)
{
    timeout_case *c = p;
    c->waiter_rc = weft_sem_acquire(c->sem);
    return c->waiter_rc;
}

static int timeout_root(void *p)
{
    timeout_case *c = p;
    REQUIRE_EQ(weft_sem_try_acquire(c->sem), 0);
    weft_scope *s;
    weft_scope_opts o = {.timeout_ns = 10 * WEFT_MSEC};
    REQUIRE_EQ(weft_scope_open(&s, &o), 0);
    int sp = weft_spawn(s, timeout_waiter, c);
    if (sp == -ETIMEDOUT) /* a machine too loaded to spawn within 10 ms */
        c->waiter_rc = weft_sem_acquire(c->sem);
    else
        CHECK_EQ(sp, 0);
    c->join = weft_scope_join(s);
    CHECK_EQ(weft_scope_release(s), 0);
    c->available_mid = weft_sem_available(c->sem);
    CHECK_EQ(weft_sem_release(c->sem), 0);
    c->available_end = weft_sem_available(c->sem);
    return 0;
}

Test(sem, timed_out_waiter_leaves_the_queue, .timeout = 60)
{
    static timeout_case c;
    cr_assert_eq(weft_sem_create(&c.sem, 1), 0);
    cr_assert_eq(run_on(2, timeout_root, &c), 0);
    ASSERT_CHECKS();
    cr_assert_eq(c.waiter_rc, -ETIMEDOUT);
    cr_assert_eq(c.join, -ETIMEDOUT);
    cr_assert_eq(c.available_mid, 0);
    cr_assert_eq(c.available_end, 1);
    cr_assert_eq(weft_sem_destroy(c.sem), 0, "the timed-out waiter is still queued");
}

/* ---- destroy with waiters -------------------------------------------------------------------- */

typedef struct destroy_case {
    weft_sem *sem;
    atomic_int queued;
    int busy_rc;
    int waiter_rc;
    unsigned available_end;
} destroy_case;

static int destroy_waiter(void *p)
{
    destroy_case *c = p;
    atomic_fetch_add(&c->queued, 1);
    c->waiter_rc = weft_sem_acquire(c->sem);
    if (c->waiter_rc == 0)
        CHECK_EQ(weft_sem_release(c->sem), 0);
    return 0;
}

static int destroy_root(void *p)
{
    destroy_case *c = p;
    REQUIRE_EQ(weft_sem_try_acquire(c->sem), 0);
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    CHECK_EQ(weft_spawn(s, destroy_waiter, c), 0);
    CHECK_EQ(yield_until(&c->queued, 1), 0);
    c->busy_rc = weft_sem_destroy(c->sem);
    CHECK_EQ(weft_sem_release(c->sem), 0);
    CHECK_EQ(weft_scope_join(s), 0);
    CHECK_EQ(weft_scope_release(s), 0);
    c->available_end = weft_sem_available(c->sem);
    return 0;
}

Test(sem, destroy_with_waiters_is_ebusy, .timeout = 60)
{
    static destroy_case c;
    cr_assert_eq(weft_sem_create(&c.sem, 1), 0);
    cr_assert_eq(run_on(1, destroy_root, &c), 0);
    ASSERT_CHECKS();
    cr_assert_eq(c.busy_rc, -EBUSY);
    cr_assert_eq(c.waiter_rc, 0, "the semaphore stayed usable after the refused destroy");
    cr_assert_eq(c.available_end, 1);
    cr_assert_eq(weft_sem_destroy(c.sem), 0);
}

/* ---- out of memory while parking ------------------------------------------------------------- */

/* A waiter registers on its innermost scope, which first links that scope and its unlinked
 * ancestors into the tree (so that a cancel above reaches it): a chain deeper than the walk's
 * room on the stack needs an allocation. */
#define NESTED_SCOPES 24

typedef struct enomem_case {
    weft_sem *sem;
    int rc;
    long allocations;
    unsigned available_after;
    int retry_rc, release_rc, closes_failed;
} enomem_case;

static int enomem_root(void *p)
{
    enomem_case *c = p;
    REQUIRE_EQ(weft_sem_try_acquire(c->sem), 0);
    weft_scope *s[NESTED_SCOPES];
    for (int i = 0; i < NESTED_SCOPES; i++)
        REQUIRE_EQ(weft_scope_open(&s[i], NULL), 0);
    weft__alloc_fail_at(1);
    c->rc = weft_sem_acquire(c->sem);
    c->allocations = weft__alloc_count();
    weft__alloc_fail_at(0);
    c->available_after = weft_sem_available(c->sem);
    /* The failed wait left no trace: the token comes back and can be taken again. */
    c->release_rc = weft_sem_release(c->sem);
    c->retry_rc = weft_sem_acquire(c->sem);
    if (c->retry_rc == 0)
        CHECK_EQ(weft_sem_release(c->sem), 0);
    for (int i = NESTED_SCOPES - 1; i >= 0; i--)
        c->closes_failed += weft_scope_close(s[i]) != 0;
    return 0;
}

Test(sem, enomem_while_parking_is_enomem, .timeout = 60)
{
    static enomem_case c;
    cr_assert_eq(weft_sem_create(&c.sem, 1), 0);
    cr_assert_eq(run_on(1, enomem_root, &c), 0);
    ASSERT_CHECKS();
    cr_assert_geq(c.allocations, 1, "the wait made no allocation: nothing was injected");
    cr_assert_eq(c.rc, -ENOMEM, "acquire returned %d", c.rc);
    cr_assert_eq(c.available_after, 0);
    cr_assert_eq(c.release_rc, 0);
    cr_assert_eq(c.retry_rc, 0);
    cr_assert_eq(c.closes_failed, 0);
    cr_assert_eq(weft_sem_available(c.sem), 1);
    cr_assert_eq(weft_sem_destroy(c.sem), 0, "the failed waiter is still counted");
}

/* ---- 64 tokens, 10,000 tasks ----------------------------------------------------------------- */

#define NTOKENS 64
#define NTASKS 10000

typedef struct bound_case {
    weft_sem *sem;
    atomic_int held, max_held, done;
    atomic_int failed_acquires;
    unsigned available_end;
} bound_case;

static int bound_task(void *p)
{
    bound_case *c = p;
    if (weft_sem_acquire(c->sem) != 0) {
        atomic_fetch_add(&c->failed_acquires, 1);
        return 0;
    }
    count_up_with_high(&c->held, &c->max_held);
    weft_yield(); /* hold the token while others run */
    atomic_fetch_sub(&c->held, 1);
    CHECK_EQ(weft_sem_release(c->sem), 0);
    atomic_fetch_add(&c->done, 1);
    return 0;
}

static int bound_root(void *p)
{
    bound_case *c = p;
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    for (int i = 0; i < NTASKS; i++)
        CHECK_EQ(weft_spawn(s, bound_task, c), 0);
    CHECK_EQ(weft_scope_join(s), 0);
    CHECK_EQ(weft_scope_release(s), 0);
    c->available_end = weft_sem_available(c->sem);
    return 0;
}

Test(sem, sixty_four_tokens_ten_thousand_tasks, .timeout = 120)
{
    static bound_case c;
    cr_assert_eq(weft_sem_create(&c.sem, NTOKENS), 0);
    cr_assert_eq(run_on(4, bound_root, &c), 0);
    ASSERT_CHECKS();
    cr_assert_eq(atomic_load(&c.failed_acquires), 0);
    cr_assert_eq(atomic_load(&c.done), NTASKS);
    cr_assert_leq(atomic_load(&c.max_held), NTOKENS, "%d tasks held a token at once",
                  atomic_load(&c.max_held));
    cr_assert_geq(atomic_load(&c.max_held), 1);
    cr_assert_eq(atomic_load(&c.held), 0);
    cr_assert_eq(c.available_end, NTOKENS);
    cr_assert_eq(weft_sem_destroy(c.sem), 0);
}

/* ---- debug builds report a task that ends holding tokens ----------------------------------- */

#ifndef NDEBUG
static weft_sem *leaky_sem;
static weft_sem *signal_sem; /* 0 of 1: a signal, whose taker keeps the token by design */

static int keeps_token(void *arg)
{
    (void)arg;
    return weft_sem_acquire(leaky_sem);
}

static int takes_signal(void *arg)
{
    (void)arg;
    return weft_sem_acquire(signal_sem);
}

static int spawn_keeper(void *arg)
{
    (void)arg;
    weft_scope *s;
    if (weft_scope_open(&s, NULL) != 0)
        return 1;
    weft_spawn_opts o = {.name = "keeper"}, w = {.name = "waiter"};
    weft_spawn_ex(s, keeps_token, NULL, &o);
    weft_spawn_ex(s, takes_signal, NULL, &w);
    return weft_scope_join(s);
}

/* The report names the task that kept a lent token, and not one that took a signal. */
Test(sem, debug_build_reports_a_task_ending_with_tokens)
{
    int pfd[2];
    cr_assert_eq(pipe(pfd), 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pfd[1], STDERR_FILENO);
        close(pfd[0]);
        weft_sem_create(&leaky_sem, 3);
        weft_sem_create_max(&signal_sem, 0, 1);
        weft_sem_release(signal_sem); /* given by a plain thread, taken by the task */
        _exit(run_on(1, spawn_keeper, NULL) == 0 ? 0 : 1);
    }
    close(pfd[1]);
    char err[1024];
    size_t n = 0;
    ssize_t k;
    while (n < sizeof(err) - 1 && (k = read(pfd[0], err + n, sizeof(err) - 1 - n)) > 0)
        n += (size_t)k;
    err[n] = 0;
    close(pfd[0]);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    cr_assert_not_null(strstr(err, "'keeper' ended holding 1 semaphore token"), "stderr: %s", err);
    cr_assert_null(strstr(err, "'waiter'"), "stderr: %s", err);
}
#endif
