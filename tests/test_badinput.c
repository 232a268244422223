// SPDX-License-Identifier: MIT
/*
 * Bad input, function by function: every function of include/weft.h is called with NULL,
 * out-of-range, already-joined and already-released arguments, and from the wrong thread (a
 * plain thread, a foreign pthread, a thread of the blocking pool, a task that does not own the
 * scope), and must return the code weft.h documents for that case, never crash, and lose nothing
 * (a refused spawn never runs its function, a refused acquire takes no token).
 *
 * The first test is a table: one row per (function, bad input), with the result documented for
 * a caller outside any task and for a task of the runtime (a task that does not own the scope
 * the rows use). The table runs in four places: the test's own thread, a pthread started by a
 * task, a blocking-pool thread (inside weft_blocking) and a task. A second test reads weft.h and
 * fails if a function declared there has no row, so the table keeps walking every function.
 * The other tests check sequences one row cannot express: double join, join by a non-owner,
 * release before join, use after release, spawn after join, over-release of a semaphore, nested
 * runtimes, configuration and option ranges.
 *
 * Where weft.h documents no code for an input (NULL where only other errors are listed, a
 * stack size out of range), the rows expect include/weft.h's convention: -EINVAL for bad input,
 * a neutral value (0, NULL, WEFT_CANCEL_NONE) from functions that return no status.
 *
 * A released scope: weft.h promises -EINVAL from join, release, cancel and spawn for "a
 * released scope", so the tests pass a scope right after its release, before anything else can
 * reuse its record. Other released objects (semaphores, handles, runtimes) are freed; weft.h
 * promises nothing for them, and they are not passed again.
 *
 * Tasks never call Criterion's assertions (they run on worker threads): they record what they
 * saw, and the test's thread asserts after the runtime has ended.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sys/uio.h>

#include "weft.h"

/* ---- checks made off the test's thread ------------------------------------------------------ */

#define MAX_FAILED 64
static atomic_int check_failures;
static char check_msgs[MAX_FAILED][256];

static void check_fail(const char *file, int line, const char *fmt, ...)
{
    int i = atomic_fetch_add(&check_failures, 1);
    if (i >= MAX_FAILED)
        return;
    int n = snprintf(check_msgs[i], sizeof(check_msgs[i]), "%s:%d: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(check_msgs[i] + n, sizeof(check_msgs[i]) - (size_t)n, fmt, ap);
    va_end(ap);
}

#define CHECK_EQ(a, b)                                                                             \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_)                                                                              \
            check_fail(__FILE__, __LINE__, "%s returned %lld, documented %lld (%s)", #a, a_, b_,   \
                       #b);                                                                        \
    } while (0)
#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            check_fail(__FILE__, __LINE__, "CHECK(%s)", #c);                                       \
    } while (0)

static void assert_checks(void)
{
    int n = atomic_load(&check_failures);
    for (int i = 0; i < n && i < MAX_FAILED; i++)
        cr_expect(0, "%s", check_msgs[i]);
    cr_assert_eq(n, 0, "%d failed check(s)", n);
}

static int run_on(unsigned workers, weft_fn root, void *arg)
{
    weft_config cfg = {.workers = workers};
    return weft_run(&cfg, root, arg);
}

static atomic_int never_ran; /* bumped by functions that a refused call must not run */

static int must_not_run(void *arg)
{
    (void)arg;
    atomic_fetch_add(&never_ran, 1);
    return 0;
}

static int fail_with(void *arg)
{
    return (int)(intptr_t)arg;
}

static int sleep_ms(void *arg)
{
    weft_sleep_for((weft_time)(intptr_t)arg * WEFT_MSEC);
    return 0;
}

/* ================================================================================================
 * The table
 * ============================================================================================== */

enum { CTX_PLAIN, CTX_FOREIGN, CTX_POOL, CTX_TASK, NCTX };
static const char *const ctx_name[NCTX] = {"the test's thread", "a foreign pthread",
                                           "a blocking-pool thread", "a non-owner task"};

typedef struct fixture {
    weft_runtime *rt;       /* the long-lived runtime the host task runs in */
    weft_handle *handle;    /* the host's handle (the host has not ended while rows run) */
    weft_scope *scope;      /* open, owned by the host task */
    weft_scope *joined;     /* joined (not released), owned by the host task; one child failed */
    weft_scope *submission; /* the scope the runtime made for the host's submission: no owner */
    weft_sem *sem;          /* one token, free whenever a row runs */
    atomic_int ready, plain_done;
    atomic_int spawned_ran; /* children the rows started (only from a task) */
} fixture;

typedef long (*probe_fn)(fixture *f);

typedef struct row {
    const char *fn;    /* the function of weft.h the row calls */
    const char *input; /* what is wrong with the call */
    probe_fn call;
    long out; /* documented result outside any task, or SKIP */
    long in;  /* documented result in a task of the runtime that does not own f->scope, or SKIP */
} row;

#define SKIP LONG_MIN
#define ROWFN(id, expr)                                                                            \
    static long id(fixture *f)                                                                     \
    {                                                                                              \
        (void)f;                                                                                   \
        return (long)(expr);                                                                       \
    }

static int spawned_child(void *arg)
{
    fixture *f = arg;
    atomic_fetch_add(&f->spawned_ran, 1);
    return 0;
}

static int blocking_ok(void *arg)
{
    (void)arg;
    return 7;
}

/* -- time, runtime -- */
ROWFN(r_now, weft_now() > 0)
ROWFN(r_version, weft_version() == WEFT_VERSION)
ROWFN(r_strerror, weft_strerror(INT_MIN) != NULL && weft_strerror(-EINVAL)[0] != 0)
ROWFN(r_run_null_root, weft_run(NULL, NULL, NULL))
static long r_run_bad_cfg(fixture *f)
{
    (void)f;
    weft_config c = {.workers = 100000};
    return weft_run(&c, must_not_run, NULL);
}
ROWFN(r_run_nested, weft_run(NULL, must_not_run, NULL))
ROWFN(r_start_null_out, weft_runtime_start(NULL, NULL))
static long r_start_nested(fixture *f)
{
    (void)f;
    weft_runtime *rt = NULL;
    long rc = weft_runtime_start(&rt, NULL);
    if (rc == 0) /* only if the library wrongly accepted it */
        weft_runtime_shutdown(rt);
    return rc;
}
ROWFN(r_shutdown_null, weft_runtime_shutdown(NULL))
ROWFN(r_shutdown_own, weft_runtime_shutdown(f->rt))
ROWFN(r_workers, weft_workers())
ROWFN(r_worker_index, weft_worker_index() >= 0 ? 1 : weft_worker_index())
static long r_metrics_own(fixture *f)
{
    (void)f;
    weft_metrics m;
    return weft_runtime_metrics(NULL, &m, sizeof(m), NULL, 0);
}
ROWFN(r_metrics_null_out, weft_runtime_metrics(f->rt, NULL, sizeof(weft_metrics), NULL, 0))
static long r_metrics_size0(fixture *f)
{
    weft_metrics m;
    return weft_runtime_metrics(f->rt, &m, 0, NULL, 0);
}

/* -- scopes and tasks -- */
static long r_open(fixture *f)
{
    (void)f;
    weft_scope *s = NULL;
    long rc = weft_scope_open(&s, NULL);
    if (rc == 0)
        weft_scope_release(s);
    return rc;
}
ROWFN(r_open_null_out, weft_scope_open(NULL, NULL))
static long open_with(weft_scope_opts o)
{
    weft_scope *s = NULL;
    long rc = weft_scope_open(&s, &o);
    if (rc == 0)
        weft_scope_release(s);
    return rc;
}
ROWFN(r_open_neg_timeout, open_with((weft_scope_opts){.timeout_ns = -1}))
ROWFN(r_open_min_timeout, open_with((weft_scope_opts){.timeout_ns = INT64_MIN}))
ROWFN(r_open_bad_policy, open_with((weft_scope_opts){.policy = (weft_policy)2}))
ROWFN(r_open_neg_policy, open_with((weft_scope_opts){.policy = (weft_policy)-1}))
ROWFN(r_spawn_null_scope, weft_spawn(NULL, must_not_run, NULL))
ROWFN(r_spawn_null_fn, weft_spawn(f->scope, NULL, NULL))
ROWFN(r_spawn, weft_spawn(f->scope, spawned_child, f))
ROWFN(r_spawn_joined, weft_spawn(f->joined, must_not_run, NULL))
ROWFN(r_spawn_submission, weft_spawn(f->submission, must_not_run, NULL))
ROWFN(r_spawn_ex_null_fn, weft_spawn_ex(f->scope, NULL, NULL, NULL))
ROWFN(r_spawn_ex, weft_spawn_ex(f->scope, spawned_child, f, &(weft_spawn_opts){.name = "row"}))
ROWFN(r_spawn_ex_tiny_stack,
      weft_spawn_ex(f->scope, must_not_run, NULL, &(weft_spawn_opts){.stack_size = 1}))
ROWFN(r_spawn_ex_small_stack,
      weft_spawn_ex(f->scope, must_not_run, NULL, &(weft_spawn_opts){.stack_size = 16383}))
ROWFN(r_spawn_ex_huge_stack,
      weft_spawn_ex(f->scope, must_not_run, NULL, &(weft_spawn_opts){.stack_size = SIZE_MAX}))
ROWFN(r_join_null, weft_scope_join(NULL))
ROWFN(r_join_not_owner, weft_scope_join(f->scope))
ROWFN(r_join_joined_not_owner, weft_scope_join(f->joined))
ROWFN(r_join_current, weft_scope_join(weft_current_scope()))
ROWFN(r_release_null, weft_scope_release(NULL))
ROWFN(r_release_not_owner, weft_scope_release(f->scope))
ROWFN(r_release_joined_not_owner, weft_scope_release(f->joined))
ROWFN(r_release_current, weft_scope_release(weft_current_scope()))
ROWFN(r_close_null, weft_scope_close(NULL))
ROWFN(r_close_not_owner, weft_scope_close(f->scope))
ROWFN(r_close_joined_not_owner, weft_scope_close(f->joined))
ROWFN(r_close_current, weft_scope_close(weft_current_scope()))
ROWFN(r_cancel_null, weft_scope_cancel(NULL))
ROWFN(r_current_scope, weft_current_scope() != NULL)
ROWFN(r_reason_self, weft_cancel_reason_self())
ROWFN(r_reason_null, weft_scope_cancel_reason(NULL))
ROWFN(r_reason_scope, weft_scope_cancel_reason(f->scope))
/* A closed channel, and an open one holding no item, made once for the rows. */
static weft_chan *closed_chan, *empty_chan;
static pthread_once_t chans_once = PTHREAD_ONCE_INIT;
static void make_chans(void)
{
    weft_chan_create(&closed_chan, sizeof(int), 1);
    weft_chan_close(closed_chan);
    weft_chan_create(&empty_chan, sizeof(int), 0);
}
static weft_chan *closed_channel(void)
{
    pthread_once(&chans_once, make_chans);
    return closed_chan;
}
static weft_chan *empty_channel(void)
{
    pthread_once(&chans_once, make_chans);
    return empty_chan;
}
static int row_item;
static long r_select_bad(weft_select_op *ops, int n, int flags)
{
    return weft_select(ops, n, flags);
}
ROWFN(r_sem_max_null, weft_sem_create_max(NULL, 0, 1))
static long r_sem_max_above(fixture *f)
{
    (void)f;
    weft_sem *s = NULL;
    long rc = weft_sem_create_max(&s, 2, 1);
    if (rc == 0)
        weft_sem_destroy(s);
    return rc;
}
static long r_sem_max_zero(fixture *f)
{
    (void)f;
    weft_sem *s = NULL;
    long rc = weft_sem_create_max(&s, 0, 0);
    if (rc == 0)
        weft_sem_destroy(s);
    return rc;
}
ROWFN(r_mutex_create_null, weft_mutex_create(NULL))
ROWFN(r_mutex_destroy_null, weft_mutex_destroy(NULL))
ROWFN(r_mutex_lock_null, weft_mutex_lock(NULL))
ROWFN(r_mutex_trylock_null, weft_mutex_trylock(NULL))
ROWFN(r_mutex_unlock_null, weft_mutex_unlock(NULL))
static long r_mutex_unlock_unheld(fixture *f)
{
    (void)f;
    weft_mutex *m = NULL;
    if (weft_mutex_create(&m) != 0)
        return LONG_MAX;
    long rc = weft_mutex_unlock(m);
    weft_mutex_destroy(m);
    return rc;
}
ROWFN(r_event_create_null, weft_event_create(NULL))
ROWFN(r_event_destroy_null, weft_event_destroy(NULL))
ROWFN(r_event_set_null, weft_event_set(NULL))
ROWFN(r_event_reset_null, weft_event_reset(NULL))
ROWFN(r_event_is_set_null, weft_event_is_set(NULL))
ROWFN(r_event_wait_null, weft_event_wait(NULL))
ROWFN(r_chan_create_null, weft_chan_create(NULL, 4, 1))
static long chan_create_with(size_t size, size_t cap)
{
    weft_chan *c = NULL;
    long rc = weft_chan_create(&c, size, cap);
    if (rc == 0)
        weft_chan_destroy(c);
    return rc;
}
ROWFN(r_chan_create_zero_size, chan_create_with(0, 1))
ROWFN(r_chan_create_huge_item, chan_create_with((size_t)1 << 20, 1))
ROWFN(r_chan_create_huge_cap, chan_create_with(8, SIZE_MAX))
ROWFN(r_chan_destroy_null, weft_chan_destroy(NULL))
ROWFN(r_chan_send_null, weft_chan_send(NULL, &row_item))
ROWFN(r_chan_send_closed, weft_chan_send(closed_channel(), &row_item))
ROWFN(r_chan_recv_null, weft_chan_recv(NULL, &row_item))
ROWFN(r_chan_recv_closed, weft_chan_recv(closed_channel(), &row_item))
ROWFN(r_chan_try_send_null, weft_chan_try_send(NULL, &row_item))
ROWFN(r_chan_try_send_null_item, weft_chan_try_send(empty_channel(), NULL))
ROWFN(r_chan_try_send_nobody, weft_chan_try_send(empty_channel(), &row_item))
ROWFN(r_chan_try_send_closed, weft_chan_try_send(closed_channel(), &row_item))
ROWFN(r_chan_try_recv_null, weft_chan_try_recv(NULL, &row_item))
ROWFN(r_chan_try_recv_empty, weft_chan_try_recv(empty_channel(), &row_item))
ROWFN(r_chan_try_recv_closed, weft_chan_try_recv(closed_channel(), &row_item))
ROWFN(r_chan_close_null, weft_chan_close(NULL))
ROWFN(r_chan_close_twice, weft_chan_close(closed_channel()))
ROWFN(r_chan_len_null, (long)weft_chan_len(NULL))
ROWFN(r_select_null, r_select_bad(NULL, 1, 0))
ROWFN(r_select_zero, r_select_bad(&(weft_select_op){.chan = empty_channel(),
                                                    .kind = WEFT_SELECT_RECV,
                                                    .item = &row_item},
                                  0, 0))
ROWFN(r_select_too_many, r_select_bad(&(weft_select_op){.chan = empty_channel(),
                                                        .kind = WEFT_SELECT_RECV,
                                                        .item = &row_item},
                                      65, 0))
ROWFN(r_select_no_chan,
      r_select_bad(&(weft_select_op){.kind = WEFT_SELECT_RECV, .item = &row_item}, 1, 0))
ROWFN(r_select_bad_kind, r_select_bad(&(weft_select_op){.chan = empty_channel(),
                                                        .kind = (weft_select_kind)7,
                                                        .item = &row_item},
                                      1, 0))
ROWFN(r_select_nowait, r_select_bad(&(weft_select_op){.chan = empty_channel(),
                                                      .kind = WEFT_SELECT_RECV,
                                                      .item = &row_item},
                                    1, WEFT_SELECT_NOWAIT))
ROWFN(r_select_unknown_flag, r_select_bad(&(weft_select_op){.chan = empty_channel(),
                                                            .kind = WEFT_SELECT_RECV,
                                                            .item = &row_item},
                                          1, WEFT_SELECT_NOWAIT | 2))
static char row_buf[8];
static struct iovec row_iov = {.iov_base = row_buf, .iov_len = sizeof(row_buf)};
ROWFN(r_fd_wait_bad_fd, weft_fd_wait(-1, WEFT_READABLE, WEFT_NEVER))
ROWFN(r_fd_wait_no_events, weft_fd_wait(0, 0, WEFT_NEVER))
ROWFN(r_fd_wait_bad_events, weft_fd_wait(0, 4, WEFT_NEVER))
/* poll(2)'s POLLIN | POLLOUT by mistake: the write half would be lost, and the wait with it. */
ROWFN(r_fd_wait_extra_bit, weft_fd_wait(0, WEFT_READABLE | 4, WEFT_NEVER))
static weft_fd_edges row_edges;
ROWFN(r_fd_mark_bad_fd, weft_fd_mark(-1, &row_edges))
ROWFN(r_fd_mark_null, weft_fd_mark(0, NULL))
ROWFN(r_fd_wait_since_bad_fd, weft_fd_wait_since(-1, WEFT_READABLE, &row_edges, WEFT_NEVER))
ROWFN(r_fd_wait_since_unmarked,
      weft_fd_wait_since((1 << 20) - 1, WEFT_READABLE, &row_edges, WEFT_NEVER))
ROWFN(r_fd_wait_since_null, weft_fd_wait_since(0, WEFT_READABLE, NULL, WEFT_NEVER))
ROWFN(r_fd_wait_since_no_events, weft_fd_wait_since(0, 0, &row_edges, WEFT_NEVER))
ROWFN(r_fd_wait_since_bad_events, weft_fd_wait_since(0, 4, &row_edges, WEFT_NEVER))
ROWFN(r_fd_wait_since_extra_bit, weft_fd_wait_since(0, WEFT_WRITABLE | 8, &row_edges, WEFT_NEVER))
ROWFN(r_fd_nonblock_bad_fd, weft_fd_nonblock(-1))
ROWFN(r_close_bad_fd, weft_close(-1))
ROWFN(r_close_unopened, weft_close(1 << 20))
ROWFN(r_accept_bad_fd, weft_accept(-1, NULL, NULL))
ROWFN(r_connect_bad_fd, weft_connect(-1, NULL, 0))
ROWFN(r_read_bad_fd, weft_read(-1, row_buf, sizeof(row_buf)))
ROWFN(r_write_bad_fd, weft_write(-1, row_buf, sizeof(row_buf)))
ROWFN(r_readv_bad_fd, weft_readv(-1, &row_iov, 1))
ROWFN(r_writev_bad_fd, weft_writev(-1, &row_iov, 1))
ROWFN(r_recv_bad_fd, weft_recv(-1, row_buf, sizeof(row_buf), 0))
ROWFN(r_send_bad_fd, weft_send(-1, row_buf, sizeof(row_buf), 0))
ROWFN(r_recvfrom_bad_fd, weft_recvfrom(-1, row_buf, sizeof(row_buf), 0, NULL, NULL))
ROWFN(r_sendto_bad_fd, weft_sendto(-1, row_buf, sizeof(row_buf), 0, NULL, 0))
ROWFN(r_write_all_bad_fd, weft_write_all(-1, row_buf, sizeof(row_buf), NULL))
ROWFN(r_write_all_nothing, weft_write_all(-1, row_buf, 0, NULL))
ROWFN(r_send_all_nothing, weft_send_all(-1, row_buf, 0, 0, NULL))
ROWFN(r_send_all_bad_fd, weft_send_all(-1, row_buf, sizeof(row_buf), 0, NULL))
ROWFN(r_writev_all_bad_fd, weft_writev_all(-1, &row_iov, 1, NULL))
ROWFN(r_writev_all_null_iov, weft_writev_all(1, NULL, 1, NULL))
ROWFN(r_writev_all_neg_count, weft_writev_all(1, &row_iov, -1, NULL))
ROWFN(r_deadline_null, weft_scope_deadline(NULL))
ROWFN(r_deadline_scope, weft_scope_deadline(f->scope))
ROWFN(r_eff_deadline_null, weft_scope_effective_deadline(NULL))
ROWFN(r_eff_deadline_scope, weft_scope_effective_deadline(f->scope))
ROWFN(r_set_deadline_null, weft_scope_set_deadline(NULL, WEFT_NEVER))
ROWFN(r_set_deadline_negative, weft_scope_set_deadline(f->scope, -1))
ROWFN(r_set_deadline_not_owner, weft_scope_set_deadline(f->scope, weft_now() + WEFT_SEC))
ROWFN(r_set_deadline_joined, weft_scope_set_deadline(f->joined, weft_now() + WEFT_SEC))
ROWFN(r_set_deadline_submission, weft_scope_set_deadline(f->submission, 1))
ROWFN(r_expired_null, weft_scope_expired(NULL))
ROWFN(r_expired_scope, weft_scope_expired(f->scope))
ROWFN(r_checkpoint, weft_checkpoint())
ROWFN(r_yield, weft_yield())
ROWFN(r_sleep_for, weft_sleep_for(WEFT_MSEC))
ROWFN(r_sleep_for_negative, weft_sleep_for(-WEFT_SEC))
ROWFN(r_sleep_for_min, weft_sleep_for(INT64_MIN))
ROWFN(r_sleep_until, weft_sleep_until(weft_now() + WEFT_MSEC))
ROWFN(r_sleep_until_past, weft_sleep_until(0))
ROWFN(r_sleep_until_min, weft_sleep_until(INT64_MIN))
static long r_task_name(fixture *f)
{
    (void)f;
    const char *n = weft_task_name();
    if (!n)
        return -1;
    return n[0] != 0; /* a task has a name; outside, the neutral "" */
}
ROWFN(r_task_id, weft_task_id() != 0)

/* -- error groups -- */
ROWFN(r_fail, weft_fail(-EIO, "row %d", 1))
ROWFN(r_fail_zero, weft_fail(0, "zero code %s", "is replaced"))
ROWFN(r_error_count_null, weft_scope_error_count(NULL))
ROWFN(r_error_count, weft_scope_error_count(f->joined))
ROWFN(r_error_null, weft_scope_error(NULL, 0) == NULL)
ROWFN(r_error_range, weft_scope_error(f->joined, 1) == NULL)
ROWFN(r_error_range_max, weft_scope_error(f->joined, SIZE_MAX) == NULL)
ROWFN(r_error_count_code_null, weft_scope_error_count_code(NULL, -EIO))
ROWFN(r_error_count_code, weft_scope_error_count_code(f->joined, -EIO))
ROWFN(r_fail_group_null, weft_fail_group(NULL, NULL, 0))
ROWFN(r_fail_group_open, weft_fail_group(f->scope, NULL, 0))
ROWFN(r_fail_group, weft_fail_group(f->joined, NULL, 0))
static long r_fail_group_handled(fixture *f)
{
    /* The failure is handled: nothing is handed up, 0 (also outside a task). */
    int handled[] = {-EIO};
    return weft_fail_group(f->joined, handled, 1);
}

/* -- semaphores -- */
ROWFN(r_sem_create_null, weft_sem_create(NULL, 1))
ROWFN(r_sem_destroy_null, weft_sem_destroy(NULL))
ROWFN(r_sem_acquire_null, weft_sem_acquire(NULL))
static long r_sem_acquire(fixture *f)
{
    long rc = weft_sem_acquire(f->sem);
    if (rc == 0)
        weft_sem_release(f->sem);
    return rc;
}
ROWFN(r_sem_try_null, weft_sem_try_acquire(NULL))
static long r_sem_try(fixture *f)
{
    long rc = weft_sem_try_acquire(f->sem); /* any thread */
    if (rc == 0)
        rc = weft_sem_try_acquire(f->sem); /* none left: -EAGAIN */
    weft_sem_release(f->sem);
    return rc;
}
ROWFN(r_sem_release_null, weft_sem_release(NULL))
ROWFN(r_sem_release_full, weft_sem_release(f->sem))
ROWFN(r_sem_available_null, weft_sem_available(NULL))
ROWFN(r_sem_available, weft_sem_available(f->sem))

/* -- parallel loops -- */
static int range_must_not_run(int64_t b, int64_t e, void *arg)
{
    (void)b;
    (void)e;
    (void)arg;
    atomic_fetch_add(&never_ran, 1);
    return 0;
}
static int range_sum(int64_t b, int64_t e, void *arg)
{
    for (int64_t i = b; i < e; i++)
        atomic_fetch_add((atomic_llong *)arg, i);
    return 0;
}
static int map_must_not_run(int64_t b, int64_t e, void *partial, void *arg)
{
    (void)partial;
    return range_must_not_run(b, e, arg);
}
static int map_sum(int64_t b, int64_t e, void *partial, void *arg)
{
    (void)arg;
    for (int64_t i = b; i < e; i++)
        *(long long *)partial += i;
    return 0;
}
static void combine_sum(void *acc, const void *partial, void *arg)
{
    (void)arg;
    *(long long *)acc += *(const long long *)partial;
}
static const long long zero_ll = 0;
/* A loop over [0, 100) that must sum to 4950 where it runs and run nothing where it is refused. */
static long r_pfor(fixture *f)
{
    (void)f;
    atomic_llong sum = 0;
    long rc = weft_parallel_for(0, 100, 0, range_sum, &sum);
    if (rc)
        return atomic_load(&sum) ? -1000 : rc;
    return atomic_load(&sum) == 4950 ? 0 : -1001;
}
ROWFN(r_pfor_null_fn, weft_parallel_for(0, 100, 0, NULL, NULL))
static int count_run(void *arg)
{
    atomic_fetch_add((atomic_int *)arg, 1);
    return 0;
}
/* Both functions run once where it is accepted, neither where it is refused. */
static long r_fork(fixture *f)
{
    (void)f;
    atomic_int runs = 0;
    long rc = weft_fork_join(count_run, &runs, count_run, &runs);
    if (rc)
        return atomic_load(&runs) ? -1000 : rc;
    return atomic_load(&runs) == 2 ? 0 : -1001;
}
ROWFN(r_fork_null_forked, weft_fork_join(NULL, NULL, must_not_run, NULL))
ROWFN(r_fork_null_here, weft_fork_join(must_not_run, NULL, NULL, NULL))
ROWFN(r_pfor_backwards, weft_parallel_for(1, 0, 0, range_must_not_run, NULL))
ROWFN(r_pfor_neg_grain, weft_parallel_for(0, 100, -1, range_must_not_run, NULL))
ROWFN(r_pfor_min_grain, weft_parallel_for(0, 100, INT64_MIN, range_must_not_run, NULL))
ROWFN(r_pfor_empty, weft_parallel_for(5, 5, 0, range_must_not_run, NULL))
/* weft_parallel_reduce with one argument changed; `result` must stay as it was unless it
 * returns 0. */
static long reduce_with(int64_t begin, int64_t end, int64_t grain, size_t size,
                        const void *identity, weft_map_fn map, weft_combine_fn combine,
                        int null_result)
{
    long long result = 77;
    long rc = weft_parallel_reduce(begin, end, grain, size, identity, map, combine, NULL,
                                   null_result ? NULL : &result);
    if (rc)
        return result == 77 ? rc : -1000;
    return result;
}
ROWFN(r_reduce, reduce_with(0, 100, 0, sizeof(long long), &zero_ll, map_sum, combine_sum, 0))
ROWFN(r_reduce_null_identity,
      reduce_with(0, 100, 0, sizeof(long long), NULL, map_must_not_run, combine_sum, 0))
ROWFN(r_reduce_null_map, reduce_with(0, 100, 0, sizeof(long long), &zero_ll, NULL, combine_sum, 0))
ROWFN(r_reduce_null_combine,
      reduce_with(0, 100, 0, sizeof(long long), &zero_ll, map_must_not_run, NULL, 0))
ROWFN(r_reduce_null_result,
      reduce_with(0, 100, 0, sizeof(long long), &zero_ll, map_must_not_run, combine_sum, 1))
ROWFN(r_reduce_size_0, reduce_with(0, 100, 0, 0, &zero_ll, map_must_not_run, combine_sum, 0))
ROWFN(r_reduce_size_4097, reduce_with(0, 100, 0, 4097, &zero_ll, map_must_not_run, combine_sum, 0))
ROWFN(r_reduce_size_max,
      reduce_with(0, 100, 0, SIZE_MAX, &zero_ll, map_must_not_run, combine_sum, 0))
ROWFN(r_reduce_backwards,
      reduce_with(1, 0, 0, sizeof(long long), &zero_ll, map_must_not_run, combine_sum, 0))
ROWFN(r_reduce_neg_grain,
      reduce_with(0, 100, -1, sizeof(long long), &zero_ll, map_must_not_run, combine_sum, 0))
/* The fold of nothing is the identity. */
static const long long nine_ll = 9;
ROWFN(r_reduce_empty,
      reduce_with(3, 3, 0, sizeof(long long), &nine_ll, map_must_not_run, combine_sum, 0))

/* -- blocking, foreign threads -- */
static long r_blocking(fixture *f)
{
    (void)f;
    int result = 0;
    long rc = weft_blocking(blocking_ok, NULL, &result);
    return rc ? rc : result;
}
ROWFN(r_blocking_null_fn, weft_blocking(NULL, NULL, NULL))
ROWFN(r_blocking_null_result, weft_blocking(blocking_ok, NULL, NULL))
ROWFN(r_blocking_cancelled, weft_blocking_cancelled())
static long r_submit_null_rt(fixture *f)
{
    (void)f;
    weft_handle *h = NULL;
    return weft_submit(NULL, must_not_run, NULL, &h);
}
static long r_submit_null_fn(fixture *f)
{
    weft_handle *h = NULL;
    return weft_submit(f->rt, NULL, NULL, &h);
}
ROWFN(r_submit_null_out, weft_submit(f->rt, must_not_run, NULL, NULL))
static long r_wait_null(fixture *f)
{
    (void)f;
    int st;
    return weft_handle_wait(NULL, WEFT_NEVER, &st);
}
static long r_wait_past(fixture *f)
{
    int st = 12345;
    long rc = weft_handle_wait(f->handle, 0, &st); /* the host has not ended */
    return rc == 0 || st != 12345 ? -1000 + rc : rc;
}
ROWFN(r_wait_past_null_status, weft_handle_wait(f->handle, weft_now() - 1, NULL))
ROWFN(r_handle_cancel_null, weft_handle_cancel(NULL))
ROWFN(r_handle_release_null, weft_handle_release(NULL))

/* weft_dump into /dev/null: 1 for any count of tasks, else the code. */
static long dump_to_null(weft_runtime *rt, int flags)
{
    int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    long rc = weft_dump(rt, fd, flags);
    close(fd);
    return rc >= 0 ? 1 : rc;
}
ROWFN(r_dump_own, dump_to_null(NULL, WEFT_DUMP_TEXT))
ROWFN(r_dump_rt, dump_to_null(f->rt, WEFT_DUMP_JSON))
ROWFN(r_dump_bad_flags, dump_to_null(f->rt, 4))
ROWFN(r_dump_bad_fd, weft_dump(f->rt, -1, WEFT_DUMP_TEXT))
static long r_dump_closed_fd(fixture *f)
{
    int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    close(fd);
    return weft_dump(f->rt, fd, WEFT_DUMP_JSON);
}

static const row rows[] = {
    /* fn, input, call, outside a task, in a task */
    {"weft_now", "(any thread) is positive", r_now, 1, 1},
    {"weft_version", "(any thread) is WEFT_VERSION", r_version, 1, 1},
    {"weft_strerror", "(any thread) INT_MIN: a text, never NULL", r_strerror, 1, 1},
    {"weft_run", "NULL root", r_run_null_root, -EINVAL, SKIP},
    {"weft_run", "workers = 100000", r_run_bad_cfg, -EINVAL, SKIP},
    {"weft_run", "inside a task", r_run_nested, SKIP, -EDEADLK},
    {"weft_runtime_start", "NULL out", r_start_null_out, -EINVAL, SKIP},
    {"weft_runtime_start", "inside a task", r_start_nested, SKIP, -EDEADLK},
    {"weft_runtime_shutdown", "NULL", r_shutdown_null, -EINVAL, -EINVAL},
    {"weft_runtime_shutdown", "from a task of the runtime", r_shutdown_own, SKIP, -EDEADLK},
    {"weft_workers", "outside: 0", r_workers, 0, 2},
    {"weft_worker_index", "outside: -1", r_worker_index, -1, 1},
    {"weft_runtime_metrics", "NULL rt: the caller's", r_metrics_own, -EPERM, 0},
    {"weft_runtime_metrics", "NULL out", r_metrics_null_out, -EINVAL, -EINVAL},
    {"weft_runtime_metrics", "size 0", r_metrics_size0, -EINVAL, -EINVAL},
    {"weft_scope_open", "task-only", r_open, -EPERM, 0},
    {"weft_scope_open", "NULL out", r_open_null_out, SKIP, -EINVAL},
    {"weft_scope_open", "timeout_ns = -1", r_open_neg_timeout, SKIP, -EINVAL},
    {"weft_scope_open", "timeout_ns = INT64_MIN", r_open_min_timeout, SKIP, -EINVAL},
    {"weft_scope_open", "policy = 2", r_open_bad_policy, SKIP, -EINVAL},
    {"weft_scope_open", "policy = -1", r_open_neg_policy, SKIP, -EINVAL},
    {"weft_spawn", "NULL scope", r_spawn_null_scope, SKIP, -EINVAL},
    {"weft_spawn", "NULL fn", r_spawn_null_fn, SKIP, -EINVAL},
    {"weft_spawn", "task-only (any task may spawn)", r_spawn, -EPERM, 0},
    {"weft_spawn", "joined scope", r_spawn_joined, SKIP, -EINVAL},
    {"weft_spawn", "task-only, into a scope with no owner", r_spawn_submission, -EPERM, SKIP},
    {"weft_spawn_ex", "NULL fn", r_spawn_ex_null_fn, SKIP, -EINVAL},
    {"weft_spawn_ex", "task-only", r_spawn_ex, -EPERM, 0},
    {"weft_spawn_ex", "stack_size = 1", r_spawn_ex_tiny_stack, SKIP, -EINVAL},
    {"weft_spawn_ex", "stack_size = 16 KiB - 1", r_spawn_ex_small_stack, SKIP, -EINVAL},
    {"weft_spawn_ex", "stack_size = SIZE_MAX", r_spawn_ex_huge_stack, SKIP, -EINVAL},
    {"weft_scope_join", "NULL", r_join_null, SKIP, -EINVAL},
    {"weft_scope_join", "not the owner", r_join_not_owner, -EPERM, -EPERM},
    {"weft_scope_join", "joined scope, not the owner", r_join_joined_not_owner, -EPERM, -EPERM},
    {"weft_scope_join", "the task's own scope (its parent's)", r_join_current, SKIP, -EPERM},
    {"weft_scope_release", "NULL", r_release_null, SKIP, -EINVAL},
    {"weft_scope_release", "not the owner", r_release_not_owner, -EPERM, -EPERM},
    {"weft_scope_release", "joined scope, not the owner", r_release_joined_not_owner, -EPERM,
     -EPERM},
    {"weft_scope_release", "the task's own scope (its parent's)", r_release_current, SKIP, -EPERM},
    {"weft_scope_close", "NULL", r_close_null, SKIP, -EINVAL},
    {"weft_scope_close", "not the owner", r_close_not_owner, -EPERM, -EPERM},
    {"weft_scope_close", "joined scope, not the owner", r_close_joined_not_owner, -EPERM, -EPERM},
    {"weft_scope_close", "the task's own scope (its parent's)", r_close_current, SKIP, -EPERM},
    {"weft_scope_cancel", "NULL (any thread)", r_cancel_null, -EINVAL, -EINVAL},
    {"weft_current_scope", "outside: NULL", r_current_scope, 0, 1},
    {"weft_cancel_reason_self", "outside: NONE", r_reason_self, WEFT_CANCEL_NONE, WEFT_CANCEL_NONE},
    {"weft_scope_cancel_reason", "NULL", r_reason_null, WEFT_CANCEL_NONE, WEFT_CANCEL_NONE},
    {"weft_scope_cancel_reason", "(any thread) a live scope", r_reason_scope, WEFT_CANCEL_NONE,
     WEFT_CANCEL_NONE},
    {"weft_sem_create_max", "NULL out", r_sem_max_null, -EINVAL, -EINVAL},
    {"weft_sem_create_max", "initial above max", r_sem_max_above, -EINVAL, -EINVAL},
    {"weft_sem_create_max", "max 0", r_sem_max_zero, -EINVAL, -EINVAL},
    {"weft_mutex_create", "NULL out", r_mutex_create_null, -EINVAL, -EINVAL},
    {"weft_mutex_destroy", "NULL", r_mutex_destroy_null, -EINVAL, -EINVAL},
    {"weft_mutex_lock", "NULL", r_mutex_lock_null, -EPERM, -EINVAL},
    {"weft_mutex_trylock", "NULL", r_mutex_trylock_null, -EPERM, -EINVAL},
    {"weft_mutex_unlock", "NULL", r_mutex_unlock_null, -EPERM, -EINVAL},
    {"weft_mutex_unlock", "not held", r_mutex_unlock_unheld, -EPERM, -EPERM},
    {"weft_event_create", "NULL out", r_event_create_null, -EINVAL, -EINVAL},
    {"weft_event_destroy", "NULL", r_event_destroy_null, -EINVAL, -EINVAL},
    {"weft_event_set", "NULL", r_event_set_null, -EINVAL, -EINVAL},
    {"weft_event_reset", "NULL", r_event_reset_null, -EINVAL, -EINVAL},
    {"weft_event_is_set", "NULL", r_event_is_set_null, 0, 0},
    {"weft_event_wait", "NULL", r_event_wait_null, -EPERM, -EINVAL},
    {"weft_chan_create", "NULL out", r_chan_create_null, -EINVAL, -EINVAL},
    {"weft_chan_create", "item size 0", r_chan_create_zero_size, -EINVAL, -EINVAL},
    {"weft_chan_create", "item size 1 MiB", r_chan_create_huge_item, -EINVAL, -EINVAL},
    {"weft_chan_create", "capacity SIZE_MAX", r_chan_create_huge_cap, -EINVAL, -EINVAL},
    {"weft_chan_destroy", "NULL", r_chan_destroy_null, -EINVAL, -EINVAL},
    {"weft_chan_send", "NULL", r_chan_send_null, -EPERM, -EINVAL},
    {"weft_chan_send", "closed", r_chan_send_closed, -EPERM, -EPIPE},
    {"weft_chan_recv", "NULL", r_chan_recv_null, -EPERM, -EINVAL},
    {"weft_chan_recv", "closed and empty", r_chan_recv_closed, -EPERM, -EPIPE},
    {"weft_chan_try_send", "NULL", r_chan_try_send_null, -EINVAL, -EINVAL},
    {"weft_chan_try_send", "NULL item", r_chan_try_send_null_item, -EINVAL, -EINVAL},
    {"weft_chan_try_send", "rendezvous, nobody receiving", r_chan_try_send_nobody, -EAGAIN,
     -EAGAIN},
    {"weft_chan_try_send", "closed", r_chan_try_send_closed, -EPIPE, -EPIPE},
    {"weft_chan_try_recv", "NULL", r_chan_try_recv_null, -EINVAL, -EINVAL},
    {"weft_chan_try_recv", "empty", r_chan_try_recv_empty, -EAGAIN, -EAGAIN},
    {"weft_chan_try_recv", "closed and empty", r_chan_try_recv_closed, -EPIPE, -EPIPE},
    {"weft_chan_close", "NULL", r_chan_close_null, -EINVAL, -EINVAL},
    {"weft_chan_close", "closed already", r_chan_close_twice, -EALREADY, -EALREADY},
    {"weft_chan_len", "NULL", r_chan_len_null, 0, 0},
    {"weft_select", "NULL clauses", r_select_null, -EPERM, -EINVAL},
    {"weft_select", "no clause", r_select_zero, -EPERM, -EINVAL},
    {"weft_select", "65 clauses", r_select_too_many, -EPERM, -EINVAL},
    {"weft_select", "a clause without a channel", r_select_no_chan, -EPERM, -EINVAL},
    {"weft_select", "a clause of no kind", r_select_bad_kind, -EPERM, -EINVAL},
    {"weft_select", "NOWAIT, nothing ready", r_select_nowait, -EPERM, -EAGAIN},
    {"weft_select", "an unknown flag beside NOWAIT", r_select_unknown_flag, -EPERM, -EINVAL},
    {"weft_fd_wait", "fd -1", r_fd_wait_bad_fd, -EPERM, -EBADF},
    {"weft_fd_wait", "no event asked", r_fd_wait_no_events, -EPERM, -EINVAL},
    {"weft_fd_wait", "an unknown event bit only", r_fd_wait_bad_events, -EPERM, -EINVAL},
    {"weft_fd_wait", "an unknown event bit beside READABLE", r_fd_wait_extra_bit, -EPERM, -EINVAL},
    {"weft_fd_mark", "fd -1", r_fd_mark_bad_fd, -EPERM, -EBADF},
    {"weft_fd_mark", "NULL edges", r_fd_mark_null, -EPERM, -EINVAL},
    {"weft_fd_wait_since", "fd -1", r_fd_wait_since_bad_fd, -EPERM, -EBADF},
    {"weft_fd_wait_since", "a descriptor never marked", r_fd_wait_since_unmarked, -EPERM, -EBADF},
    {"weft_fd_wait_since", "NULL since", r_fd_wait_since_null, -EPERM, -EINVAL},
    {"weft_fd_wait_since", "no event asked", r_fd_wait_since_no_events, -EPERM, -EINVAL},
    {"weft_fd_wait_since", "an unknown event bit only", r_fd_wait_since_bad_events, -EPERM,
     -EINVAL},
    {"weft_fd_wait_since", "an unknown event bit beside WRITABLE", r_fd_wait_since_extra_bit,
     -EPERM, -EINVAL},
    {"weft_fd_nonblock", "(any thread) fd -1", r_fd_nonblock_bad_fd, -EBADF, -EBADF},
    {"weft_close", "(any thread) fd -1", r_close_bad_fd, -EBADF, -EBADF},
    {"weft_close", "(any thread) a descriptor never opened", r_close_unopened, -EBADF, -EBADF},
    {"weft_accept", "fd -1", r_accept_bad_fd, -EPERM, -EBADF},
    {"weft_connect", "fd -1", r_connect_bad_fd, -EPERM, -EBADF},
    {"weft_read", "fd -1", r_read_bad_fd, -EPERM, -EBADF},
    {"weft_write", "fd -1", r_write_bad_fd, -EPERM, -EBADF},
    {"weft_readv", "fd -1", r_readv_bad_fd, -EPERM, -EBADF},
    {"weft_writev", "fd -1", r_writev_bad_fd, -EPERM, -EBADF},
    {"weft_recv", "fd -1", r_recv_bad_fd, -EPERM, -EBADF},
    {"weft_send", "fd -1", r_send_bad_fd, -EPERM, -EBADF},
    {"weft_recvfrom", "fd -1", r_recvfrom_bad_fd, -EPERM, -EBADF},
    {"weft_sendto", "fd -1", r_sendto_bad_fd, -EPERM, -EBADF},
    {"weft_write_all", "fd -1", r_write_all_bad_fd, -EPERM, -EBADF},
    {"weft_write_all", "nothing to write", r_write_all_nothing, -EPERM, 0},
    {"weft_send_all", "nothing to send", r_send_all_nothing, -EPERM, 0},
    {"weft_send_all", "fd -1", r_send_all_bad_fd, -EPERM, -EBADF},
    {"weft_writev_all", "fd -1", r_writev_all_bad_fd, -EPERM, -EBADF},
    {"weft_writev_all", "NULL iov", r_writev_all_null_iov, -EPERM, -EINVAL},
    {"weft_writev_all", "negative count", r_writev_all_neg_count, -EPERM, -EINVAL},
    {"weft_scope_deadline", "NULL", r_deadline_null, WEFT_NEVER, WEFT_NEVER},
    {"weft_scope_deadline", "(any thread) a scope without one", r_deadline_scope, WEFT_NEVER,
     WEFT_NEVER},
    {"weft_scope_effective_deadline", "NULL", r_eff_deadline_null, WEFT_NEVER, WEFT_NEVER},
    {"weft_scope_effective_deadline", "(any thread) a scope without one", r_eff_deadline_scope,
     WEFT_NEVER, WEFT_NEVER},
    {"weft_scope_set_deadline", "NULL", r_set_deadline_null, -EPERM, -EINVAL},
    {"weft_scope_set_deadline", "negative", r_set_deadline_negative, -EPERM, -EINVAL},
    {"weft_scope_set_deadline", "not the owner", r_set_deadline_not_owner, -EPERM, -EPERM},
    {"weft_scope_set_deadline", "joined scope", r_set_deadline_joined, -EPERM, -EINVAL},
    {"weft_scope_set_deadline", "a scope with no owner", r_set_deadline_submission, -EPERM, -EPERM},
    {"weft_scope_expired", "NULL", r_expired_null, 0, 0},
    {"weft_scope_expired", "(any thread) a live scope", r_expired_scope, 0, 0},
    {"weft_checkpoint", "task-only", r_checkpoint, -EPERM, 0},
    {"weft_yield", "task-only", r_yield, -EPERM, 0},
    {"weft_sleep_for", "task-only", r_sleep_for, -EPERM, 0},
    {"weft_sleep_for", "negative", r_sleep_for_negative, -EPERM, 0},
    {"weft_sleep_for", "INT64_MIN", r_sleep_for_min, -EPERM, 0},
    {"weft_sleep_until", "task-only", r_sleep_until, -EPERM, 0},
    {"weft_sleep_until", "0 (passed)", r_sleep_until_past, -EPERM, 0},
    {"weft_sleep_until", "INT64_MIN", r_sleep_until_min, -EPERM, 0},
    {"weft_task_name", "outside: \"\"", r_task_name, 0, 1},
    {"weft_task_id", "outside: 0", r_task_id, 0, 1},
    {"weft_fail", "outside: returns the code", r_fail, -EIO, -EIO},
    {"weft_fail", "code 0", r_fail_zero, -EINVAL, -EINVAL},
    {"weft_scope_error_count", "NULL", r_error_count_null, 0, 0},
    {"weft_scope_error_count", "(any thread) joined scope", r_error_count, 1, 1},
    {"weft_scope_error", "NULL", r_error_null, 1, 1},
    {"weft_scope_error", "index 1 of 1", r_error_range, 1, 1},
    {"weft_scope_error", "index SIZE_MAX", r_error_range_max, 1, 1},
    {"weft_scope_error_count_code", "NULL", r_error_count_code_null, 0, 0},
    {"weft_scope_error_count_code", "(any thread) joined scope", r_error_count_code, 1, 1},
    {"weft_fail_group", "NULL scope", r_fail_group_null, -EINVAL, -EINVAL},
    {"weft_fail_group", "scope not joined", r_fail_group_open, -EINVAL, -EINVAL},
    {"weft_fail_group", "every failure handled", r_fail_group_handled, SKIP, 0},
    {"weft_fail_group", "(any task) a joined scope it does not own", r_fail_group, SKIP, -EIO},
    {"weft_sem_create", "NULL out", r_sem_create_null, -EINVAL, -EINVAL},
    {"weft_sem_destroy", "NULL", r_sem_destroy_null, -EINVAL, -EINVAL},
    {"weft_sem_acquire", "NULL", r_sem_acquire_null, SKIP, -EINVAL},
    {"weft_sem_acquire", "task-only", r_sem_acquire, -EPERM, 0},
    {"weft_sem_try_acquire", "NULL", r_sem_try_null, -EINVAL, -EINVAL},
    {"weft_sem_try_acquire", "(any thread) none left", r_sem_try, -EAGAIN, -EAGAIN},
    {"weft_sem_release", "NULL", r_sem_release_null, -EINVAL, -EINVAL},
    {"weft_sem_release", "(any thread) above its count", r_sem_release_full, -EOVERFLOW,
     -EOVERFLOW},
    {"weft_sem_available", "NULL", r_sem_available_null, 0, 0},
    {"weft_sem_available", "(any thread)", r_sem_available, 1, 1},
    {"weft_fork_join", "task-only (both run once)", r_fork, -EPERM, 0},
    {"weft_fork_join", "NULL forked", r_fork_null_forked, -EPERM, -EINVAL},
    {"weft_fork_join", "NULL here", r_fork_null_here, -EPERM, -EINVAL},
    {"weft_parallel_for", "task-only", r_pfor, -EPERM, 0},
    {"weft_parallel_for", "NULL fn", r_pfor_null_fn, -EPERM, -EINVAL},
    {"weft_parallel_for", "end < begin", r_pfor_backwards, -EPERM, -EINVAL},
    {"weft_parallel_for", "grain -1", r_pfor_neg_grain, -EPERM, -EINVAL},
    {"weft_parallel_for", "grain INT64_MIN", r_pfor_min_grain, -EPERM, -EINVAL},
    {"weft_parallel_for", "empty range", r_pfor_empty, -EPERM, 0},
    {"weft_parallel_reduce", "task-only (sums to 4950)", r_reduce, -EPERM, 4950},
    {"weft_parallel_reduce", "NULL identity", r_reduce_null_identity, -EPERM, -EINVAL},
    {"weft_parallel_reduce", "NULL map", r_reduce_null_map, -EPERM, -EINVAL},
    {"weft_parallel_reduce", "NULL combine", r_reduce_null_combine, -EPERM, -EINVAL},
    {"weft_parallel_reduce", "NULL result", r_reduce_null_result, -EPERM, -EINVAL},
    {"weft_parallel_reduce", "result_size 0", r_reduce_size_0, -EPERM, -EINVAL},
    {"weft_parallel_reduce", "result_size 4097", r_reduce_size_4097, -EPERM, -EINVAL},
    {"weft_parallel_reduce", "result_size SIZE_MAX", r_reduce_size_max, -EPERM, -EINVAL},
    {"weft_parallel_reduce", "end < begin", r_reduce_backwards, -EPERM, -EINVAL},
    {"weft_parallel_reduce", "grain -1", r_reduce_neg_grain, -EPERM, -EINVAL},
    {"weft_parallel_reduce", "empty range: the identity", r_reduce_empty, -EPERM, 9},
    {"weft_blocking", "task-only", r_blocking, -EPERM, 7},
    {"weft_blocking", "NULL fn", r_blocking_null_fn, SKIP, -EINVAL},
    {"weft_blocking", "NULL result", r_blocking_null_result, -EPERM, 0},
    {"weft_blocking_cancelled", "not cancelled: 0", r_blocking_cancelled, 0, 0},
    {"weft_dump", "NULL runtime: the caller's", r_dump_own, -EINVAL, 1},
    {"weft_dump", "a runtime, JSON", r_dump_rt, 1, 1},
    {"weft_dump", "unknown flags", r_dump_bad_flags, -EINVAL, -EINVAL},
    {"weft_dump", "fd -1", r_dump_bad_fd, -EBADF, -EBADF},
    {"weft_dump", "a closed fd", r_dump_closed_fd, -EBADF, -EBADF},
    {"weft_submit", "NULL runtime", r_submit_null_rt, -EINVAL, -EINVAL},
    {"weft_submit", "NULL fn", r_submit_null_fn, -EINVAL, -EINVAL},
    {"weft_submit", "NULL out", r_submit_null_out, -EINVAL, -EINVAL},
    {"weft_handle_wait", "NULL", r_wait_null, -EINVAL, SKIP},
    {"weft_handle_wait", "deadline passed (inside: a task)", r_wait_past, -ETIMEDOUT, -EDEADLK},
    {"weft_handle_wait", "NULL status", r_wait_past_null_status, -ETIMEDOUT, -EDEADLK},
    {"weft_handle_cancel", "NULL", r_handle_cancel_null, -EINVAL, -EINVAL},
    {"weft_handle_release", "NULL", r_handle_release_null, -EINVAL, -EINVAL},
};
#define NROWS (sizeof(rows) / sizeof(rows[0]))

static long results[NCTX][NROWS];
static int ran[NCTX];

static void run_rows(fixture *f, int ctx)
{
    for (size_t i = 0; i < NROWS; i++) {
        long want = ctx == CTX_TASK ? rows[i].in : rows[i].out;
        if (want != SKIP)
            results[ctx][i] = rows[i].call(f);
    }
    ran[ctx] = 1;
}

static void *foreign_thread(void *arg)
{
    run_rows(arg, CTX_FOREIGN);
    return NULL;
}

static int join_thread(void *arg)
{
    return pthread_join(*(pthread_t *)arg, NULL);
}

static int pool_rows(void *arg)
{
    run_rows(arg, CTX_POOL);
    return 0;
}

static int task_rows(void *arg)
{
    run_rows(arg, CTX_TASK);
    return 0;
}

/* The host task: owns f->scope and f->joined while the rows run everywhere. */
static int host(void *arg)
{
    fixture *f = arg;
    int rc;
    f->submission = weft_current_scope();
    weft_scope_opts collect = {.policy = WEFT_COLLECT};
    if ((rc = weft_scope_open(&f->joined, &collect)))
        return rc;
    if ((rc = weft_spawn(f->joined, fail_with, (void *)(intptr_t)-EIO)))
        return rc;
    if ((rc = weft_scope_join(f->joined)) != -EIO)
        return -1000 + rc;
    if ((rc = weft_scope_open(&f->scope, &collect)))
        return rc;

    /* 1. The test's thread runs the rows while this task exists. */
    atomic_store(&f->ready, 1);
    while (!atomic_load(&f->plain_done))
        weft_sleep_for(WEFT_MSEC);

    /* 2. A pthread that is no part of weft, started from a task. */
    pthread_t th;
    if (pthread_create(&th, NULL, foreign_thread, f) != 0)
        return -2000;
    int jrc = -1;
    if ((rc = weft_blocking(join_thread, &th, &jrc)) || jrc)
        return -3000 + rc;

    /* 3. A blocking-pool thread, while this task is parked in weft_blocking. */
    if ((rc = weft_blocking(pool_rows, f, NULL)))
        return rc;

    /* 4. A task that does not own f->scope (nor f->joined). */
    weft_scope *s;
    if ((rc = weft_scope_open(&s, NULL)))
        return rc;
    if ((rc = weft_spawn(s, task_rows, f)))
        return rc;
    if ((rc = weft_scope_join(s)))
        return -4000 + rc;
    weft_scope_release(s);

    rc = weft_scope_release(f->scope); /* joins the children the rows started */
    if (rc == 0)
        rc = weft_scope_release(f->joined);
    return rc;
}

Test(badinput, table_every_function)
{
    static fixture f;
    weft_config cfg = {.workers = 2};
    cr_assert_eq(weft_sem_create(&f.sem, 1), 0);
    cr_assert_eq(weft_runtime_start(&f.rt, &cfg), 0);
    cr_assert_eq(weft_submit(f.rt, host, &f, &f.handle), 0);
    while (!atomic_load(&f.ready)) {
        int st = 0;
        if (weft_handle_wait(f.handle, weft_now() + WEFT_MSEC, &st) == 0)
            cr_assert_fail("the host task ended early with %d", st);
    }
    run_rows(&f, CTX_PLAIN);
    atomic_store(&f.plain_done, 1);

    int st = -1;
    cr_assert_eq(weft_handle_wait(f.handle, WEFT_NEVER, &st), 0);
    cr_assert_eq(weft_handle_wait(f.handle, WEFT_NEVER, &st), 0, "a second wait");
    cr_assert_eq(st, 0, "the host task failed with %d", st);
    cr_assert_eq(weft_handle_cancel(f.handle), 0, "cancel of an ended submission");
    cr_assert_eq(weft_handle_release(f.handle), 0);
    cr_assert_eq(weft_runtime_shutdown(f.rt), 0);
    cr_assert_eq(weft_sem_available(f.sem), 1, "a token was lost or invented by the rows");
    cr_assert_eq(weft_sem_destroy(f.sem), 0);

    int bad = 0;
    for (int c = 0; c < NCTX; c++) {
        cr_assert(ran[c], "the rows did not run in %s", ctx_name[c]);
        for (size_t i = 0; i < NROWS; i++) {
            long want = c == CTX_TASK ? rows[i].in : rows[i].out;
            if (want == SKIP || results[c][i] == want)
                continue;
            bad++;
            cr_expect_eq(results[c][i], want, "%s, %s from %s: returned %ld, documented %ld",
                         rows[i].fn, rows[i].input, ctx_name[c], results[c][i], want);
        }
    }
    cr_assert_eq(bad, 0, "%d row(s) returned other than documented", bad);
    cr_assert_eq(atomic_load(&never_ran), 0, "a refused call ran its function %d time(s)",
                 atomic_load(&never_ran));
    /* Two spawning rows succeed in a task, none elsewhere. */
    cr_assert_eq(atomic_load(&f.spawned_ran), 2);
}

/* Every function declared in weft.h has a row (read from the header next to this file's
 * source folder), so the table keeps walking every function as the API grows. */
Test(badinput, table_covers_header)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s", __FILE__);
    char *slash = strrchr(path, '/');
    cr_assert_not_null(slash, "cannot locate the source folder from %s", __FILE__);
    snprintf(slash, sizeof(path) - (size_t)(slash - path), "/../include/weft.h");
    FILE *h = fopen(path, "r");
    cr_assert_not_null(h, "cannot open %s", path);
    char line[1024];
    int functions = 0;
    while (fgets(line, sizeof(line), h)) {
        char *api = strstr(line, "WEFT_API ");
        if (!api || strstr(line, "#define"))
            continue;
        char *paren = strchr(api, '(');
        if (!paren)
            continue;
        char *end = paren;
        while (end > api && end[-1] == ' ')
            end--;
        char *start = end;
        while (start > api &&
               (start[-1] == '_' || (start[-1] >= 'a' && start[-1] <= 'z') ||
                (start[-1] >= 'A' && start[-1] <= 'Z') || (start[-1] >= '0' && start[-1] <= '9')))
            start--;
        char name[128];
        snprintf(name, sizeof(name), "%.*s", (int)(end - start), start);
        functions++;
        int found = 0;
        for (size_t i = 0; i < NROWS && !found; i++)
            found = strcmp(rows[i].fn, name) == 0;
        cr_expect(found, "%s is declared in weft.h but has no row in the table", name);
    }
    fclose(h);
    cr_assert_geq(functions, 38, "read only %d functions from %s", functions, path);
}

/* ================================================================================================
 * Sequences
 * ============================================================================================== */

/* ---- joins --------------------------------------------------------------------------------------
 */

static int double_join_root(void *arg)
{
    (void)arg;
    weft_scope *s;
    /* Success. */
    CHECK_EQ(weft_scope_open(&s, NULL), 0);
    CHECK_EQ(weft_spawn(s, sleep_ms, (void *)(intptr_t)1), 0);
    CHECK_EQ(weft_scope_join(s), 0);
    CHECK_EQ(weft_scope_join(s), 0);
    CHECK_EQ(weft_scope_cancel(s), 0); /* cancel after the join changes nothing */
    CHECK_EQ(weft_scope_join(s), 0);
    CHECK_EQ(weft_scope_release(s), 0);

    /* A failure. */
    CHECK_EQ(weft_scope_open(&s, NULL), 0);
    CHECK_EQ(weft_spawn(s, fail_with, (void *)(intptr_t)-EIO), 0);
    CHECK_EQ(weft_scope_join(s), -EIO);
    CHECK_EQ(weft_scope_join(s), -EIO);
    CHECK_EQ(weft_scope_error_count(s), 1);
    CHECK_EQ(weft_scope_release(s), 0);

    /* An explicit cancel. */
    CHECK_EQ(weft_scope_open(&s, NULL), 0);
    CHECK_EQ(weft_spawn(s, sleep_ms, (void *)(intptr_t)10000), 0);
    CHECK_EQ(weft_scope_cancel(s), 0);
    CHECK_EQ(weft_scope_cancel(s), 0); /* any number of times */
    CHECK_EQ(weft_scope_join(s), -ECANCELED);
    CHECK_EQ(weft_scope_join(s), -ECANCELED);
    CHECK_EQ(weft_scope_release(s), 0);

    /* A deadline. */
    CHECK_EQ(weft_scope_open(&s, &(weft_scope_opts){.timeout_ns = 5 * WEFT_MSEC}), 0);
    CHECK_EQ(weft_spawn(s, sleep_ms, (void *)(intptr_t)10000), 0);
    CHECK_EQ(weft_scope_join(s), -ETIMEDOUT);
    CHECK_EQ(weft_scope_join(s), -ETIMEDOUT);
    CHECK_EQ(weft_scope_cancel(s), 0);
    CHECK_EQ(weft_scope_join(s), -ETIMEDOUT);
    CHECK_EQ(weft_scope_cancel_reason(s), WEFT_CANCEL_DEADLINE);
    CHECK_EQ(weft_scope_release(s), 0);
    return 0;
}

Test(badinput, double_join_same_result)
{
    cr_assert_eq(run_on(2, double_join_root, NULL), 0);
    assert_checks();
}

typedef struct owned {
    weft_scope *s;
    atomic_int children_done;
} owned;

static int non_owner(void *arg)
{
    owned *o = arg;
    CHECK_EQ(weft_scope_join(o->s), -EPERM);
    CHECK_EQ(weft_scope_release(o->s), -EPERM);
    CHECK_EQ(weft_scope_cancel_reason(o->s), WEFT_CANCEL_NONE); /* nothing happened to it */
    atomic_fetch_add(&o->children_done, 1);
    return 0;
}

static int non_owner_root(void *arg)
{
    owned *o = arg;
    CHECK_EQ(weft_scope_open(&o->s, NULL), 0);
    /* A child of the scope itself. */
    CHECK_EQ(weft_spawn(o->s, non_owner, o), 0);
    CHECK_EQ(weft_spawn(o->s, sleep_ms, (void *)(intptr_t)20), 0);
    /* A task of another scope (its own scope's owner, even). */
    weft_scope *other;
    CHECK_EQ(weft_scope_open(&other, NULL), 0);
    CHECK_EQ(weft_spawn(other, non_owner, o), 0);
    CHECK_EQ(weft_scope_join(other), 0);
    CHECK_EQ(weft_scope_release(other), 0);
    /* The owner still joins it, and the non-owners' calls changed nothing. */
    CHECK_EQ(weft_scope_join(o->s), 0);
    CHECK_EQ(atomic_load(&o->children_done), 2);
    CHECK_EQ(weft_scope_release(o->s), 0);
    return 0;
}

Test(badinput, join_by_non_owner_is_eperm)
{
    static owned o;
    cr_assert_eq(run_on(2, non_owner_root, &o), 0);
    assert_checks();
}

static atomic_int slow_done;

static int slow_child(void *arg)
{
    weft_sleep_for((weft_time)(intptr_t)arg * WEFT_MSEC);
    atomic_fetch_add(&slow_done, 1);
    return 0;
}

static int release_before_join_root(void *arg)
{
    (void)arg;
    weft_scope *s, *inner;
    CHECK_EQ(weft_scope_open(&s, NULL), 0);
    for (int i = 0; i < 8; i++)
        CHECK_EQ(weft_spawn(s, slow_child, (void *)(intptr_t)(5 + i)), 0);
    CHECK_EQ(weft_scope_open(&inner, NULL), 0); /* opened after s: nested in it */
    CHECK_EQ(weft_spawn(inner, slow_child, (void *)(intptr_t)10), 0);
    /* Refused while a scope nested in it lives: inner first (the first release joins it). */
    CHECK_EQ(weft_scope_release(s), -EBUSY);
    CHECK_EQ(weft_scope_release(inner), 0);
    CHECK_EQ(weft_scope_release(s), 0);
    CHECK_EQ(atomic_load(&slow_done), 9);

    /* A release with no join at all still waits for the children. */
    CHECK_EQ(weft_scope_open(&s, NULL), 0);
    CHECK_EQ(weft_spawn(s, slow_child, (void *)(intptr_t)5), 0);
    CHECK_EQ(weft_scope_release(s), 0);
    CHECK_EQ(atomic_load(&slow_done), 10);
    return 0;
}

Test(badinput, release_before_join_joins_first)
{
    cr_assert_eq(run_on(2, release_before_join_root, NULL), 0);
    assert_checks();
}

static int released_root(void *arg)
{
    (void)arg;
    weft_scope *s;
    CHECK_EQ(weft_scope_open(&s, NULL), 0);
    CHECK_EQ(weft_spawn(s, sleep_ms, (void *)(intptr_t)1), 0);
    CHECK_EQ(weft_scope_join(s), 0);
    CHECK_EQ(weft_scope_release(s), 0);
    /* Right after the release, before any other scope is opened (weft.h promises detection). */
    CHECK_EQ(weft_scope_release(s), -EINVAL);
    CHECK_EQ(weft_scope_join(s), -EINVAL);
    CHECK_EQ(weft_scope_cancel(s), -EINVAL);
    CHECK_EQ(weft_spawn(s, must_not_run, NULL), -EINVAL);
    CHECK_EQ(weft_spawn_ex(s, must_not_run, NULL, NULL), -EINVAL);
    /* Released without an explicit join. */
    CHECK_EQ(weft_scope_open(&s, NULL), 0);
    CHECK_EQ(weft_scope_release(s), 0);
    CHECK_EQ(weft_scope_join(s), -EINVAL);
    CHECK_EQ(weft_scope_release(s), -EINVAL);
    return 0;
}

Test(badinput, released_scope_is_einval)
{
    cr_assert_eq(run_on(1, released_root, NULL), 0);
    assert_checks();
    cr_assert_eq(atomic_load(&never_ran), 0);
}

typedef struct after_join {
    weft_scope *s;
} after_join;

static int spawn_into_joined(void *arg)
{
    after_join *a = arg;
    CHECK_EQ(weft_spawn(a->s, must_not_run, NULL), -EINVAL);
    return 0;
}

static int spawn_after_join_root(void *arg)
{
    after_join *a = arg;
    CHECK_EQ(weft_scope_open(&a->s, NULL), 0);
    CHECK_EQ(weft_spawn(a->s, sleep_ms, (void *)(intptr_t)1), 0);
    CHECK_EQ(weft_scope_join(a->s), 0);
    /* By the owner, and by a task that is not the owner (the other path of the count). */
    CHECK_EQ(weft_spawn(a->s, must_not_run, NULL), -EINVAL);
    CHECK_EQ(weft_spawn_ex(a->s, must_not_run, NULL, &(weft_spawn_opts){.name = "late"}), -EINVAL);
    weft_scope *other;
    CHECK_EQ(weft_scope_open(&other, NULL), 0);
    CHECK_EQ(weft_spawn(other, spawn_into_joined, a), 0);
    CHECK_EQ(weft_scope_join(other), 0);
    CHECK_EQ(weft_scope_release(other), 0);
    CHECK_EQ(weft_scope_join(a->s), 0); /* still the first result */
    CHECK_EQ(weft_scope_release(a->s), 0);

    /* A cancelled scope refuses with the cancel code; a timed-out one with -ETIMEDOUT. */
    weft_scope *s;
    CHECK_EQ(weft_scope_open(&s, NULL), 0);
    CHECK_EQ(weft_scope_cancel(s), 0);
    CHECK_EQ(weft_spawn(s, must_not_run, NULL), -ECANCELED);
    CHECK_EQ(weft_scope_release(s), 0);
    CHECK_EQ(weft_scope_open(&s, &(weft_scope_opts){.timeout_ns = 1}), 0);
    weft_sleep_for(2 * WEFT_MSEC);
    CHECK_EQ(weft_spawn(s, must_not_run, NULL), -ETIMEDOUT);
    CHECK_EQ(weft_scope_release(s), 0);
    return 0;
}

Test(badinput, spawn_after_join_is_einval)
{
    static after_join a;
    cr_assert_eq(run_on(2, spawn_after_join_root, &a), 0);
    assert_checks();
    cr_assert_eq(atomic_load(&never_ran), 0, "a refused spawn ran its function");
}

/* ---- scope options and spawn options --------------------------------------------------------- */

static int bad_options_root(void *arg)
{
    (void)arg;
    weft_scope *before = weft_current_scope();
    weft_scope *s = (weft_scope *)&s; /* not NULL: a refused open must not matter */
    CHECK_EQ(weft_scope_open(&s, &(weft_scope_opts){.timeout_ns = -1}), -EINVAL);
    CHECK_EQ(weft_scope_open(&s, &(weft_scope_opts){.timeout_ns = -WEFT_SEC}), -EINVAL);
    CHECK_EQ(weft_scope_open(&s, &(weft_scope_opts){.policy = (weft_policy)2}), -EINVAL);
    CHECK_EQ(weft_scope_open(&s, &(weft_scope_opts){.policy = (weft_policy)-1}), -EINVAL);
    CHECK_EQ(weft_scope_open(&s, &(weft_scope_opts){.policy = (weft_policy)INT_MAX}), -EINVAL);
    CHECK_EQ(weft_scope_open(NULL, &(weft_scope_opts){.name = "x"}), -EINVAL);
    CHECK(weft_current_scope() == before);
    /* Nothing half-opened is left behind: the task still opens, spawns, joins and releases. */
    CHECK_EQ(weft_scope_open(&s, &(weft_scope_opts){.policy = WEFT_COLLECT}), 0);
    CHECK_EQ(weft_checkpoint(), 0);

    /* Spawn options: out of range stack sizes are refused without running the function. */
    size_t bad[] = {1, 4096, 16 * 1024 - 1, SIZE_MAX, SIZE_MAX / 2};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK_EQ(weft_spawn_ex(s, must_not_run, NULL, &(weft_spawn_opts){.stack_size = bad[i]}),
                 -EINVAL);
    /* In range: accepted. A long name is truncated, not refused. */
    CHECK_EQ(weft_spawn_ex(s, sleep_ms, (void *)(intptr_t)1,
                           &(weft_spawn_opts){.stack_size = 64 * 1024}),
             0);
    char longname[200];
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = 0;
    CHECK_EQ(
        weft_spawn_ex(s, fail_with, (void *)(intptr_t)-EIO, &(weft_spawn_opts){.name = longname}),
        0);
    CHECK_EQ(weft_scope_join(s), -EIO);
    const weft_error *e = weft_scope_error(s, 0);
    CHECK(e != NULL);
    if (e)
        CHECK_EQ(strlen(e->task), 31);
    CHECK_EQ(weft_scope_release(s), 0);
    return 0;
}

Test(badinput, bad_scope_and_spawn_options)
{
    cr_assert_eq(run_on(2, bad_options_root, NULL), 0);
    assert_checks();
    cr_assert_eq(atomic_load(&never_ran), 0, "a refused spawn ran its function");
}

/* ---- configuration ----------------------------------------------------------------------------
 */

Test(badinput, config_out_of_range)
{
    weft_config bad[] = {
        {.workers = 257},
        {.workers = 1000},
        {.workers = UINT_MAX},
        {.stack_size = 1},
        {.stack_size = 4096},
        {.stack_size = 16 * 1024 - 1},
        {.workers = 1, .stack_size = 16 * 1024 - 1},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_expect_eq(weft_run(&bad[i], must_not_run, NULL), -EINVAL,
                     "weft_run: workers %u, stack_size %zu", bad[i].workers, bad[i].stack_size);
        weft_runtime *rt = NULL;
        int rc = weft_runtime_start(&rt, &bad[i]);
        cr_expect_eq(rc, -EINVAL, "weft_runtime_start: workers %u, stack_size %zu", bad[i].workers,
                     bad[i].stack_size);
        if (rc == 0)
            weft_runtime_shutdown(rt);
    }
    cr_assert_eq(atomic_load(&never_ran), 0, "a refused run ran its root");
    /* NULL root with a good configuration, and a NULL configuration (the defaults). */
    cr_assert_eq(weft_run(&(weft_config){.workers = 1}, NULL, NULL), -EINVAL);
    cr_assert_eq(weft_run(NULL, fail_with, (void *)(intptr_t)0), 0);
}

Test(badinput, config_bounds_accepted)
{
    /* The largest worker count and the smallest stack are in range. */
    cr_assert_eq(weft_run(&(weft_config){.workers = 256}, fail_with, (void *)(intptr_t)-ENOTSUP),
                 -ENOTSUP);
    cr_assert_eq(weft_run(&(weft_config){.workers = 1, .stack_size = 16 * 1024}, fail_with,
                          (void *)(intptr_t)-ENOTSUP),
                 -ENOTSUP);
}

/* ---- semaphores --------------------------------------------------------------------------------
 */

static atomic_int sem_queued;

static int sem_waiter(void *arg)
{
    atomic_store(&sem_queued, 1); /* no suspension point until it is queued in the acquire */
    return weft_sem_acquire(arg);
}

/* One worker: once the root runs again after the waiter set `sem_queued`, the waiter is parked
 * in the semaphore's queue. */
static int sem_root(void *arg)
{
    weft_sem *sem = arg; /* one token */
    CHECK_EQ(weft_sem_release(sem), -EOVERFLOW);
    CHECK_EQ(weft_sem_available(sem), 1);
    CHECK_EQ(weft_sem_acquire(sem), 0);
    CHECK_EQ(weft_sem_try_acquire(sem), -EAGAIN);
    CHECK_EQ(weft_sem_release(sem), 0);
    CHECK_EQ(weft_sem_release(sem), -EOVERFLOW);
    CHECK_EQ(weft_sem_available(sem), 1);

    /* Destroy while a task waits: -EBUSY, and the semaphore still works. */
    CHECK_EQ(weft_sem_acquire(sem), 0);
    weft_scope *s;
    CHECK_EQ(weft_scope_open(&s, NULL), 0);
    CHECK_EQ(weft_spawn(s, sem_waiter, sem), 0);
    for (int i = 0; i < 100000 && !atomic_load(&sem_queued); i++)
        weft_yield();
    CHECK_EQ(atomic_load(&sem_queued), 1);
    CHECK_EQ(weft_sem_destroy(sem), -EBUSY);
    CHECK_EQ(weft_sem_release(sem), 0); /* to the waiter */
    CHECK_EQ(weft_scope_join(s), 0);
    CHECK_EQ(weft_scope_release(s), 0);
    CHECK_EQ(weft_sem_available(sem), 0); /* the waiter ended holding it */
    CHECK_EQ(weft_sem_release(sem), 0);
    CHECK_EQ(weft_sem_release(sem), -EOVERFLOW);
    return 0;
}

static void *sem_overflow_thread(void *arg)
{
    return (void *)(intptr_t)weft_sem_release(arg);
}

Test(badinput, sem_release_above_count_is_eoverflow)
{
    weft_sem *zero, *one;
    cr_assert_eq(weft_sem_create(&zero, 0), 0);
    cr_assert_eq(weft_sem_release(zero), -EOVERFLOW);
    cr_assert_eq(weft_sem_try_acquire(zero), -EAGAIN);
    cr_assert_eq(weft_sem_available(zero), 0);
    cr_assert_eq(weft_sem_destroy(zero), 0);

    cr_assert_eq(weft_sem_create(&one, 1), 0);
    unsetenv("WEFT_CHAOS"); /* sem_root counts on the unperturbed one-worker order */
    pthread_t th;
    void *ret;
    cr_assert_eq(pthread_create(&th, NULL, sem_overflow_thread, one), 0);
    cr_assert_eq(pthread_join(th, &ret), 0);
    cr_assert_eq((int)(intptr_t)ret, -EOVERFLOW, "from a foreign thread");
    cr_assert_eq(run_on(1, sem_root, one), 0);
    assert_checks();
    cr_assert_eq(weft_sem_available(one), 1);
    cr_assert_eq(weft_sem_destroy(one), 0);

    /* The largest count: one more is an overflow, not a wrap to 0. */
    weft_sem *big;
    cr_assert_eq(weft_sem_create(&big, UINT_MAX), 0);
    cr_assert_eq(weft_sem_release(big), -EOVERFLOW);
    cr_assert_eq(weft_sem_available(big), UINT_MAX);
    cr_assert_eq(weft_sem_destroy(big), 0);
}

/* ---- runtimes inside tasks, handles -------------------------------------------------------------
 */

typedef struct nested {
    weft_runtime *rt;
    weft_handle *h; /* a submission to rt */
} nested;

static int nested_root(void *arg)
{
    nested *n = arg;
    weft_runtime *rt = (weft_runtime *)&rt;
    CHECK_EQ(weft_run(NULL, must_not_run, NULL), -EDEADLK);
    CHECK_EQ(weft_run(&(weft_config){.workers = 1}, must_not_run, NULL), -EDEADLK);
    CHECK_EQ(weft_runtime_start(&rt, NULL), -EDEADLK);
    int st = 4242;
    /* A handle of another runtime (n->rt) and a handle of this one's own: both would block a
     * worker. */
    CHECK_EQ(weft_handle_wait(n->h, WEFT_NEVER, &st), -EDEADLK);
    CHECK_EQ(weft_handle_wait(n->h, 0, &st), -EDEADLK);
    CHECK_EQ(st, 4242);
    return 0;
}

static int own_shutdown(void *arg)
{
    nested *n = arg;
    CHECK_EQ(weft_runtime_shutdown(n->rt), -EDEADLK);
    int st;
    weft_handle *h = n->h;
    CHECK_EQ(weft_handle_wait(h, WEFT_NEVER, &st), -EDEADLK);
    return 0;
}

static int wait_for_flag(void *arg)
{
    atomic_int *flag = arg;
    while (!atomic_load(flag))
        if (weft_sleep_for(WEFT_MSEC))
            return -ECANCELED;
    return 0;
}

Test(badinput, nested_run_and_wait_are_edeadlk)
{
    static nested n;
    static atomic_int flag;
    cr_assert_eq(weft_runtime_start(&n.rt, &(weft_config){.workers = 1}), 0);
    cr_assert_eq(weft_submit(n.rt, wait_for_flag, &flag, &n.h), 0);
    cr_assert_eq(run_on(2, nested_root, &n), 0);
    assert_checks();
    cr_assert_eq(atomic_load(&never_ran), 0, "a nested run ran its root");

    /* From a task of n.rt itself. */
    weft_handle *h2;
    cr_assert_eq(weft_submit(n.rt, own_shutdown, &n, &h2), 0);
    int st = -1;
    cr_assert_eq(weft_handle_wait(h2, WEFT_NEVER, &st), 0);
    cr_assert_eq(st, 0);
    assert_checks();

    cr_assert_eq(weft_handle_wait(n.h, weft_now() + WEFT_MSEC, &st), -ETIMEDOUT);
    atomic_store(&flag, 1);
    cr_assert_eq(weft_handle_wait(n.h, WEFT_NEVER, &st), 0);
    cr_assert_eq(st, 0);
    cr_assert_eq(weft_handle_wait(n.h, 0, &st), 0, "a second wait, deadline passed");
    cr_assert_eq(st, 0);
    cr_assert_eq(weft_handle_release(n.h), 0);
    cr_assert_eq(weft_handle_release(h2), 0);
    cr_assert_eq(weft_runtime_shutdown(n.rt), 0);
    cr_assert_eq(weft_runtime_shutdown(NULL), -EINVAL);
}

/* Submissions racing a shutdown: each is either refused with -ESHUTDOWN or accepted and ended
 * (run, or cancelled), and a handle stays valid after its runtime is gone. */
typedef struct racing {
    weft_runtime *rt;
    atomic_int saw_shutdown;
    atomic_int started;
} racing;

/* Holds the shutdown open until the submitting thread has seen -ESHUTDOWN: it ignores the cancel
 * (a cancelled task may go on with work that does not suspend), blocking one of the two workers;
 * the other runs the accepted submissions. */
static int hold_open(void *arg)
{
    racing *r = arg;
    atomic_store(&r->started, 1);
    while (!atomic_load(&r->saw_shutdown)) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

/* Submits, waits and releases, over and over, until a submission is refused. */
static void *submitter(void *arg)
{
    racing *r = arg;
    int rc;
    for (;;) {
        weft_handle *h;
        rc = weft_submit(r->rt, fail_with, (void *)(intptr_t)0, &h);
        if (rc != 0)
            break;
        int st = 1;
        /* Accepted: it runs, or is cancelled by the shutdown before it starts. */
        if (weft_handle_wait(h, WEFT_NEVER, &st) != 0 || (st != 0 && st != -ECANCELED))
            rc = -1000;
        weft_handle_release(h);
        if (rc)
            break;
    }
    atomic_store(&r->saw_shutdown, 1);
    return (void *)(intptr_t)rc;
}

Test(badinput, submit_during_shutdown_is_eshutdown)
{
    static racing r;
    /* The holding task never reaches a suspension point: no watchdog report. */
    cr_assert_eq(weft_runtime_start(&r.rt, &(weft_config){.workers = 2, .watchdog_ns = -1}), 0);
    weft_handle *h;
    cr_assert_eq(weft_submit(r.rt, hold_open, &r, &h), 0);
    while (!atomic_load(&r.started))
        sched_yield();
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, submitter, &r), 0);
    struct timespec ts = {0, 5000000};
    nanosleep(&ts, NULL);
    cr_assert_eq(weft_runtime_shutdown(r.rt), 0);
    void *ret;
    cr_assert_eq(pthread_join(th, &ret), 0);
    cr_assert_eq((int)(intptr_t)ret, -ESHUTDOWN,
                 "the submitter stopped with %d (-1000: a handle misbehaved)", (int)(intptr_t)ret);
    int st = 1;
    cr_assert_eq(weft_handle_wait(h, WEFT_NEVER, &st), 0, "a handle outlives its runtime");
    cr_assert_eq(weft_handle_release(h), 0);
}

/* ---- cancel from anywhere; a scope of another runtime -----------------------------------------
 */

typedef struct cross {
    weft_runtime *rt2;
    weft_scope *foreign_scope; /* owned by a task of rt2 */
    atomic_int published, done;
} cross;

static void *cancel_thread(void *arg)
{
    return (void *)(intptr_t)weft_scope_cancel(arg);
}

static int cancel_from_thread_root(void *arg)
{
    (void)arg;
    weft_scope *s;
    CHECK_EQ(weft_scope_open(&s, NULL), 0);
    CHECK_EQ(weft_spawn(s, sleep_ms, (void *)(intptr_t)100000), 0);
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, cancel_thread, s), 0);
    CHECK_EQ(weft_scope_join(s), -ECANCELED);
    void *ret = (void *)1;
    pthread_join(th, &ret); /* the thread has ended: the join saw its cancel */
    CHECK_EQ((int)(intptr_t)ret, 0);
    CHECK_EQ(weft_scope_cancel_reason(s), WEFT_CANCEL_EXPLICIT);
    CHECK_EQ(weft_scope_release(s), 0);
    return 0;
}

Test(badinput, cancel_from_foreign_thread)
{
    cr_assert_eq(run_on(2, cancel_from_thread_root, NULL), 0);
    assert_checks();
}

static int foreign_owner(void *arg)
{
    cross *c = arg;
    CHECK_EQ(weft_scope_open(&c->foreign_scope, NULL), 0);
    atomic_store(&c->published, 1);
    while (!atomic_load(&c->done))
        weft_sleep_for(WEFT_MSEC);
    CHECK_EQ(weft_scope_join(c->foreign_scope), 0);
    CHECK_EQ(weft_scope_release(c->foreign_scope), 0);
    return 0;
}

static int cross_root(void *arg)
{
    cross *c = arg;
    /* weft.h: spawn is callable from any task *of the runtime*; a task of another runtime is
     * bad input (no code is documented for it: any error, and the function must not run). */
    int rc = weft_spawn(c->foreign_scope, must_not_run, NULL);
    CHECK(rc < 0);
    CHECK_EQ(weft_scope_join(c->foreign_scope), -EPERM);
    CHECK_EQ(weft_scope_release(c->foreign_scope), -EPERM);
    atomic_store(&c->done, 1);
    return 0;
}

Test(badinput, scope_of_another_runtime)
{
    static cross c;
    cr_assert_eq(weft_runtime_start(&c.rt2, &(weft_config){.workers = 1}), 0);
    weft_handle *h;
    cr_assert_eq(weft_submit(c.rt2, foreign_owner, &c, &h), 0);
    while (!atomic_load(&c.published))
        sched_yield();
    cr_assert_eq(run_on(1, cross_root, &c), 0);
    int st = -1;
    cr_assert_eq(weft_handle_wait(h, WEFT_NEVER, &st), 0);
    cr_assert_eq(st, 0);
    cr_assert_eq(weft_handle_release(h), 0);
    cr_assert_eq(weft_runtime_shutdown(c.rt2), 0);
    assert_checks();
    cr_assert_eq(atomic_load(&never_ran), 0);
}

/* ---- error groups, messages
 * ------------------------------------------------------------------------ */

static int long_message(void *arg)
{
    (void)arg;
    char big[3 * WEFT_ERROR_MESSAGE_MAX];
    memset(big, 'm', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    return weft_fail(0, "%s", big); /* code 0 becomes -EINVAL */
}

static int errors_root(void *arg)
{
    (void)arg;
    weft_scope *s;
    CHECK_EQ(weft_scope_open(&s, &(weft_scope_opts){.policy = WEFT_COLLECT}), 0);
    CHECK_EQ(weft_spawn(s, long_message, NULL), 0);
    CHECK_EQ(weft_spawn(s, fail_with, (void *)(intptr_t)-EIO), 0);
    CHECK_EQ(weft_fail_group(s, NULL, 0), -EINVAL); /* not joined yet */
    CHECK_EQ(weft_scope_join(s), weft_scope_error(s, 0) ? weft_scope_error(s, 0)->code : 1);
    CHECK_EQ(weft_scope_error_count(s), 2);
    CHECK_EQ(weft_scope_error_count_code(s, -EINVAL), 1);
    CHECK(weft_scope_error(s, 2) == NULL);
    for (size_t i = 0; i < 2; i++) {
        const weft_error *e = weft_scope_error(s, i);
        if (e && e->code == -EINVAL)
            CHECK_EQ(strlen(e->message), WEFT_ERROR_MESSAGE_MAX - 1);
    }
    /* handled may be NULL whatever n_handled says: nothing is handled. */
    int first = weft_fail_group(s, NULL, 5);
    CHECK(first == -EIO || first == -EINVAL);
    CHECK_EQ(weft_scope_release(s), 0);
    return 0; /* the group handed up is dropped: this task succeeds after all */
}

Test(badinput, error_group_ranges)
{
    cr_assert_eq(run_on(2, errors_root, NULL), 0);
    assert_checks();
}
