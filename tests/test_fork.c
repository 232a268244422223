// SPDX-License-Identifier: MIT
/*
 * weft_fork_join: both functions run, each exactly once, and the call returns after both, whether
 * the forked one ran on the caller or was taken by another worker; a fork that nobody takes makes
 * no task; results, messages and the scopes a forked function leaves open come back to the
 * caller alike on both paths; a cancel reaches a forked function wherever it runs and never cuts
 * the wait short; a limited scope runs the two in turn; misuse gets its code and runs nothing.
 *
 * Tasks never call Criterion's assertions: they record what they saw (support_criterion.h), and
 * the test's thread asserts after the runtime has ended.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "support_criterion.h"
#include "weft.h"

/* ---- fib: every fork joined, every forked function run once ------------------------------ */

static atomic_long forks, forked_runs;

typedef struct fib_arg {
    int n;
    long result;
} fib_arg;

static int fib_here(void *p);

static int fib_forked(void *p)
{
    atomic_fetch_add_explicit(&forked_runs, 1, memory_order_relaxed);
    return fib_here(p);
}

static int fib_here(void *p)
{
    fib_arg *a = p;
    if (a->n < 2) {
        a->result = a->n;
        return 0;
    }
    fib_arg x = {.n = a->n - 1}, y = {.n = a->n - 2};
    atomic_fetch_add_explicit(&forks, 1, memory_order_relaxed);
    int rc = weft_fork_join(fib_forked, &x, fib_here, &y);
    CHECK_EQ(rc, 0);
    a->result = x.result + y.result;
    return 0;
}

typedef struct fib_root_arg {
    int n;
    long result;
    uint64_t spawned; /* tasks spawned while it ran (weft_runtime_metrics) */
    uint64_t stolen;
} fib_root_arg;

static int fib_root(void *p)
{
    fib_root_arg *r = p;
    weft_metrics before, after;
    REQUIRE_EQ(weft_runtime_metrics(NULL, &before, sizeof(before), NULL, 0), 0);
    fib_arg a = {.n = r->n};
    fib_here(&a);
    r->result = a.result;
    REQUIRE_EQ(weft_runtime_metrics(NULL, &after, sizeof(after), NULL, 0), 0);
    r->spawned = after.total.spawned - before.total.spawned;
    r->stolen = after.total.stolen - before.total.stolen;
    return 0;
}

static long fib_plain(int n)
{
    return n < 2 ? n : fib_plain(n - 1) + fib_plain(n - 2);
}

static fib_root_arg run_fib(unsigned workers, int n)
{
    atomic_store(&forks, 0);
    atomic_store(&forked_runs, 0);
    fib_root_arg r = {.n = n};
    cr_assert_eq(run_on(workers, fib_root, &r), 0);
    ASSERT_CHECKS();
    cr_assert_eq(r.result, fib_plain(n), "fib(%d) on %u workers: %ld", n, workers, r.result);
    cr_assert_eq(atomic_load(&forked_runs), atomic_load(&forks),
                 "on %u workers: %ld forks, %ld forked functions run", workers, atomic_load(&forks),
                 atomic_load(&forked_runs));
    return r;
}

Test(fork, fib_each_forked_function_runs_once, .timeout = 120)
{
    for (unsigned workers = 1; workers <= 4; workers++)
        for (int rep = 0; rep < 3; rep++)
            run_fib(workers, 20);
}

/* The point of the descriptor: at one worker nobody can take a fork, and none becomes a task.
 * (Chaos mode yields after a fork, and the worker's scheduler then takes it: a task.) */
Test(fork, a_fork_nobody_takes_makes_no_task, .timeout = 60)
{
    fib_root_arg r = run_fib(1, 18);
    if (!getenv("WEFT_CHAOS"))
        cr_assert_eq(r.spawned, 0, "%llu tasks were made for forks nobody took",
                     (unsigned long long)r.spawned);
    else
        cr_assert_gt(r.spawned, 0, "chaos mode yielded after no fork");
}

/* ---- a forked function that another worker takes ----------------------------------------- */

/* `here` waits (without a suspension point, so that the caller cannot pop its fork back) until
 * the forked function has started: on two workers only the other worker can have started it. */
typedef struct steal_case {
    atomic_int forked_started;
    atomic_int forked_runs, here_runs;
    uint64_t forked_task, here_task; /* weft_task_id() in each */
    int forked_rc, here_rc;          /* what each returns */
    int forked_fails_with_message;   /* weft_fail(forked_rc, ...) instead of a bare return */
    int rc;
} steal_case;

static int steal_forked(void *p)
{
    steal_case *c = p;
    c->forked_task = weft_task_id();
    atomic_fetch_add(&c->forked_runs, 1);
    atomic_store(&c->forked_started, 1);
    if (c->forked_fails_with_message)
        return weft_fail(c->forked_rc, "forked failed: %d", 7);
    return c->forked_rc;
}

static int steal_here(void *p)
{
    steal_case *c = p;
    c->here_task = weft_task_id();
    atomic_fetch_add(&c->here_runs, 1);
    spin_until(&c->forked_started, 1);
    return c->here_rc;
}

static int steal_root(void *p)
{
    steal_case *c = p;
    c->rc = weft_fork_join(steal_forked, c, steal_here, c);
    return 0;
}

Test(fork, a_taken_fork_runs_as_a_task_of_its_own_and_is_joined, .timeout = 60)
{
    for (int rep = 0; rep < 50; rep++) {
        steal_case c = {0};
        cr_assert_eq(run_on(2, steal_root, &c), 0);
        cr_assert_eq(c.rc, 0);
        cr_assert_eq(atomic_load(&c.forked_runs), 1);
        cr_assert_eq(atomic_load(&c.here_runs), 1);
        cr_assert_neq(c.forked_task, c.here_task, "the forked function ran as the caller");
    }
}

static void check_results(unsigned workers, int forked_rc, int here_rc, int want)
{
    /* On one worker the caller runs the forked function after `here`: `here` must not wait. */
    steal_case c = {.forked_rc = forked_rc, .here_rc = here_rc};
    if (workers == 1)
        atomic_store(&c.forked_started, 1);
    cr_assert_eq(run_on(workers, steal_root, &c), 0);
    cr_assert_eq(c.rc, want, "on %u workers, forked %d, here %d: returned %d", workers, forked_rc,
                 here_rc, c.rc);
    cr_assert_eq(atomic_load(&c.forked_runs), 1);
    cr_assert_eq(atomic_load(&c.here_runs), 1);
}

Test(fork, the_forked_result_first_then_here, .timeout = 60)
{
    for (unsigned workers = 1; workers <= 2; workers++) {
        check_results(workers, 0, 0, 0);
        check_results(workers, -EIO, 0, -EIO);
        check_results(workers, 0, -ENOENT, -ENOENT);
        check_results(workers, -EIO, -ENOENT, -EIO);
    }
}

/* A message recorded by the forked function comes back with its code, wherever it ran: the
 * caller fails with it, and the scope's error group names the caller. */
typedef struct message_case {
    steal_case c;
    unsigned workers;
    size_t errors;
    int code;
    char message[128];
    char task[64];
    char caller_name[64];
} message_case;

static int message_caller(void *p)
{
    message_case *m = p;
    strncpy(m->caller_name, weft_task_name(), sizeof(m->caller_name) - 1);
    return weft_fork_join(steal_forked, &m->c, steal_here, &m->c);
}

static int message_root(void *p)
{
    message_case *m = p;
    weft_scope_opts o = {.policy = WEFT_COLLECT};
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, &o), 0);
    REQUIRE_EQ(weft_spawn(s, message_caller, m), 0);
    m->code = weft_scope_join(s);
    m->errors = weft_scope_error_count(s);
    const weft_error *e = weft_scope_error(s, 0);
    if (e) {
        strncpy(m->message, e->message ? e->message : "", sizeof(m->message) - 1);
        strncpy(m->task, e->task ? e->task : "", sizeof(m->task) - 1);
    }
    weft_scope_release(s);
    return 0;
}

Test(fork, a_forked_message_comes_back_with_its_code, .timeout = 60)
{
    for (unsigned workers = 1; workers <= 2; workers++) {
        message_case m = {.workers = workers};
        m.c.forked_rc = -EPROTO;
        m.c.forked_fails_with_message = 1;
        if (workers == 1)
            atomic_store(&m.c.forked_started, 1);
        cr_assert_eq(run_on(workers, message_root, &m), 0);
        ASSERT_CHECKS();
        cr_assert_eq(m.code, -EPROTO, "on %u workers: %d", workers, m.code);
        cr_assert_eq(m.errors, 1);
        cr_assert_str_eq(m.message, "forked failed: 7", "on %u workers", workers);
        cr_assert_str_eq(m.task, m.caller_name, "on %u workers", workers);
    }
}

/* ---- cancels ------------------------------------------------------------------------------- */

/* The forked function parks in an hour's sleep; `here` cancels the caller's scope. The sleep
 * ends with the cancel wherever the forked function runs, and the call returns its code. */
typedef struct cancel_case {
    weft_scope *s;
    atomic_int forked_runs;
    atomic_int forked_parking;
    int sleep_rc, rc;
} cancel_case;

static int cancel_forked(void *p)
{
    cancel_case *c = p;
    atomic_fetch_add(&c->forked_runs, 1);
    atomic_store(&c->forked_parking, 1);
    c->sleep_rc = weft_sleep_for(HOUR);
    return c->sleep_rc;
}

static int cancel_here(void *p)
{
    cancel_case *c = p;
    /* On one worker the forked function has not started: cancel at once. On two, give the other
     * worker the chance to take it and park first (its start, not a time, is what we wait for;
     * yield so that the caller's worker can run it if the other does not take it). */
    if (weft_workers() > 1)
        while (!atomic_load(&c->forked_parking))
            weft_yield();
    weft_scope_cancel(c->s);
    return 0;
}

static int cancel_caller(void *p)
{
    cancel_case *c = p;
    c->rc = weft_fork_join(cancel_forked, c, cancel_here, c);
    return 0;
}

static int cancel_root(void *p)
{
    cancel_case *c = p;
    REQUIRE_EQ(weft_scope_open(&c->s, NULL), 0);
    REQUIRE_EQ(weft_spawn(c->s, cancel_caller, c), 0);
    weft_scope_close(c->s);
    return 0;
}

Test(fork, a_cancel_reaches_the_forked_function_and_the_wait_is_whole, .timeout = 60)
{
    for (unsigned workers = 1; workers <= 3; workers++)
        for (int rep = 0; rep < 20; rep++) {
            cancel_case c = {0};
            cr_assert_eq(run_on(workers, cancel_root, &c), 0);
            ASSERT_CHECKS();
            cr_assert_eq(atomic_load(&c.forked_runs), 1);
            cr_assert_eq(c.sleep_rc, -ECANCELED, "on %u workers: the sleep returned %d", workers,
                         c.sleep_rc);
            cr_assert_eq(c.rc, -ECANCELED);
        }
}

/* ---- scopes -------------------------------------------------------------------------------- */

/* The forked function opens a scope, spawns a child that fails, and returns 0 without closing
 * it: the scope ends with the forked function and its failure is the function's, whether the
 * caller ran it or another worker did. */
typedef struct left_open_case {
    atomic_int child_runs;
    atomic_int forked_started;
    int rc;
} left_open_case;

static int failing_child(void *p)
{
    left_open_case *c = p;
    atomic_fetch_add(&c->child_runs, 1);
    return -EDOM;
}

static int left_open_forked(void *p)
{
    left_open_case *c = p;
    atomic_store(&c->forked_started, 1);
    weft_scope *s;
    if (weft_scope_open(&s, NULL) == 0)
        weft_spawn(s, failing_child, c);
    return 0;
}

static int left_open_here(void *p)
{
    left_open_case *c = p;
    if (weft_workers() > 1)
        spin_until(&c->forked_started, 1);
    return 0;
}

static int left_open_root(void *p)
{
    left_open_case *c = p;
    weft_scope *mine;
    REQUIRE_EQ(weft_scope_open(&mine, NULL), 0);
    c->rc = weft_fork_join(left_open_forked, c, left_open_here, c);
    /* The caller's own scope is still its innermost one, and closes with nothing in it. */
    CHECK_EQ(weft_scope_close(mine), 0);
    return 0;
}

Test(fork, scopes_a_forked_function_leaves_open_end_with_it, .timeout = 60)
{
    for (unsigned workers = 1; workers <= 2; workers++)
        for (int rep = 0; rep < 20; rep++) {
            left_open_case c = {0};
            cr_assert_eq(run_on(workers, left_open_root, &c), 0);
            ASSERT_CHECKS();
            cr_assert_eq(atomic_load(&c.child_runs), 1);
            cr_assert_eq(c.rc, -EDOM, "on %u workers: %d", workers, c.rc);
        }
}

/* `here` closes the caller's own scope while the fork waits in the queue: the close waits for
 * the forked function (a child of that scope now), which runs as a task since the caller cannot
 * take it back from inside the close; no hang, each runs once. */
typedef struct close_case {
    weft_scope *s;
    atomic_int forked_runs;
    int close_rc, rc;
} close_case;

static int close_forked(void *p)
{
    close_case *c = p;
    atomic_fetch_add(&c->forked_runs, 1);
    return 0;
}

static int close_here(void *p)
{
    close_case *c = p;
    c->close_rc = weft_scope_close(c->s);
    return 0;
}

static int close_root(void *p)
{
    close_case *c = p;
    REQUIRE_EQ(weft_scope_open(&c->s, NULL), 0);
    c->rc = weft_fork_join(close_forked, c, close_here, c);
    return 0;
}

Test(fork, here_closing_the_callers_scope_waits_for_the_fork, .timeout = 60)
{
    for (unsigned workers = 1; workers <= 2; workers++)
        for (int rep = 0; rep < 20; rep++) {
            close_case c = {0};
            cr_assert_eq(run_on(workers, close_root, &c), 0);
            ASSERT_CHECKS();
            cr_assert_eq(atomic_load(&c.forked_runs), 1, "on %u workers", workers);
            cr_assert_eq(c.close_rc, 0);
            cr_assert_eq(c.rc, 0);
        }
}

/* Under a max_concurrency scope the two run in turn on the caller, `here` first. */
typedef struct limited_case {
    atomic_int running, high;
    atomic_int order; /* 1: here ran first */
    atomic_int steps;
} limited_case;

static int limited_part(limited_case *c, int is_here)
{
    count_up_with_high(&c->running, &c->high);
    if (atomic_fetch_add(&c->steps, 1) == 0)
        atomic_store(&c->order, is_here);
    for (int i = 0; i < 50; i++)
        weft_yield();
    atomic_fetch_sub(&c->running, 1);
    return 0;
}

static int limited_forked(void *p)
{
    return limited_part(p, 0);
}

static int limited_here(void *p)
{
    return limited_part(p, 1);
}

static int limited_child(void *p)
{
    return weft_fork_join(limited_forked, p, limited_here, p);
}

static int limited_root(void *p)
{
    weft_scope_opts o = {.max_concurrency = 1};
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, &o), 0);
    /* The child's innermost open scope is the limited one it was spawned into. */
    REQUIRE_EQ(weft_spawn(s, limited_child, p), 0);
    CHECK_EQ(weft_scope_close(s), 0);
    return 0;
}

Test(fork, a_limited_scope_runs_the_two_in_turn, .timeout = 60)
{
    limited_case c = {0};
    cr_assert_eq(run_on(4, limited_root, &c), 0);
    ASSERT_CHECKS();
    cr_assert_eq(atomic_load(&c.steps), 2);
    cr_assert_eq(atomic_load(&c.high), 1, "both ran at once under max_concurrency = 1");
    cr_assert_eq(atomic_load(&c.order), 1, "the forked function ran before `here`");
}

/* ---- misuse -------------------------------------------------------------------------------- */

static atomic_int misuse_runs;

static int misuse_fn(void *p)
{
    (void)p;
    atomic_fetch_add(&misuse_runs, 1);
    return 0;
}

static int misuse_root(void *p)
{
    int *rcs = p;
    rcs[0] = weft_fork_join(NULL, NULL, misuse_fn, NULL);
    rcs[1] = weft_fork_join(misuse_fn, NULL, NULL, NULL);
    rcs[2] = weft_fork_join(NULL, NULL, NULL, NULL);
    return 0;
}

Test(fork, misuse_gets_its_code_and_runs_nothing, .timeout = 60)
{
    atomic_store(&misuse_runs, 0);
    cr_assert_eq(weft_fork_join(misuse_fn, NULL, misuse_fn, NULL), -EPERM);
    cr_assert_eq(weft_fork_join(NULL, NULL, NULL, NULL), -EPERM);
    int rcs[3] = {0};
    cr_assert_eq(run_on(2, misuse_root, rcs), 0);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(rcs[i], -EINVAL, "case %d: %d", i, rcs[i]);
    cr_assert_eq(atomic_load(&misuse_runs), 0);
}

/* ---- forks inside forks, across a park ----------------------------------------------------- */

/* `here` yields, so that the caller may move to another worker before it pops: its fork is then
 * in another worker's queue, or taken, and the wait finds it there. */
typedef struct move_arg {
    int depth;
    atomic_long *runs;
} move_arg;

static int move_here(void *p);

static int move_forked(void *p)
{
    move_arg *a = p;
    atomic_fetch_add(a->runs, 1);
    return move_here(p);
}

static int move_here(void *p)
{
    move_arg *a = p;
    weft_yield();
    if (a->depth == 0)
        return 0;
    move_arg x = {.depth = a->depth - 1, .runs = a->runs};
    move_arg y = {.depth = a->depth - 1, .runs = a->runs};
    return weft_fork_join(move_forked, &x, move_here, &y);
}

static int move_root(void *p)
{
    move_arg a = {.depth = 12, .runs = p};
    return move_here(&a);
}

Test(fork, a_caller_that_moved_finds_its_fork, .timeout = 120)
{
    for (unsigned workers = 1; workers <= 4; workers++) {
        atomic_long runs = 0;
        cr_assert_eq(run_on(workers, move_root, &runs), 0);
        /* A tree of depth 12 forks 2^12 - 1 times. */
        cr_assert_eq(atomic_load(&runs), 4095, "on %u workers: %ld", workers, atomic_load(&runs));
    }
}

/* ---- the dump ------------------------------------------------------------------------------ */

/* A caller waiting for its fork, which another worker runs, shows as parked "on" "fork". The
 * forked function dumps the runtime until it sees that (a bounded number of times). */
typedef struct dump_case {
    atomic_int forked_started;
    int seen;
    int dumps;
} dump_case;

static int dump_forked(void *p)
{
    dump_case *c = p;
    atomic_store(&c->forked_started, 1);
    int fd = memfd_create("weft-dump", 0);
    if (fd < 0)
        return -errno;
    static char buf[1 << 16];
    for (c->dumps = 0; c->dumps < 2000 && !c->seen; c->dumps++) {
        if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0)
            break;
        if (weft_dump(NULL, fd, WEFT_DUMP_JSON) < 0)
            break;
        ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
        if (n <= 0)
            break;
        buf[n] = 0;
        c->seen = strstr(buf, "\"on\":\"fork\"") != NULL;
        weft_yield();
    }
    close(fd);
    return 0;
}

static int dump_here(void *p)
{
    dump_case *c = p;
    spin_until(&c->forked_started, 1);
    return 0;
}

static int dump_root(void *p)
{
    return weft_fork_join(dump_forked, p, dump_here, p);
}

Test(fork, a_caller_waiting_for_its_fork_shows_in_the_dump, .timeout = 60)
{
    dump_case c = {0};
    cr_assert_eq(run_on(2, dump_root, &c), 0);
    cr_assert(c.seen, "no dump of %d showed the caller parked on its fork", c.dumps);
}

/* ---- what a hostile round found ------------------------------------------------------------ */

/* A caller that forks again and again, each fork taken: its queue's idea of `top` goes stale
 * (the owner's pops find nothing), and a fork must still be offered, the ring looked at again,
 * rather than run in turn; here, run in turn, the caller's `here` would wait for ever. */
static int many_root(void *p)
{
    steal_case *c = p;
    for (int i = 0; i < 1000 && c->rc == 0; i++) {
        atomic_store(&c->forked_started, 0);
        c->rc = weft_fork_join(steal_forked, c, steal_here, c);
    }
    return 0;
}

Test(fork, a_caller_whose_forks_are_all_taken_keeps_offering_them, .timeout = 60)
{
    steal_case c = {0};
    cr_assert_eq(run_on(2, many_root, &c), 0);
    cr_assert_eq(c.rc, 0);
    cr_assert_eq(atomic_load(&c.forked_runs), 1000);
}

/* Scopes the forked function leaves open end with it also where the two run in turn: under a
 * limited scope, and behind a queue of 300 unstarted children. */
typedef struct turn_case {
    left_open_case c;
    unsigned limit;
    int queued;
} turn_case;

static int noop(void *p)
{
    (void)p;
    return 0;
}

static int turn_root(void *p)
{
    turn_case *k = p;
    weft_scope *mine;
    REQUIRE_EQ(weft_scope_open(&mine, &(weft_scope_opts){.max_concurrency = k->limit}), 0);
    for (int i = 0; i < k->queued; i++)
        REQUIRE_EQ(weft_spawn(mine, noop, NULL), 0);
    k->c.rc = weft_fork_join(left_open_forked, &k->c, left_open_here, &k->c);
    CHECK_EQ(weft_scope_close(mine), 0);
    return 0;
}

Test(fork, scopes_left_open_end_with_the_forked_function_run_in_turn, .timeout = 60)
{
    turn_case cases[] = {{.limit = 1}, {.limit = 3, .queued = 2}, {.queued = 300}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        turn_case *k = &cases[i];
        cr_assert_eq(run_on(1, turn_root, k), 0);
        ASSERT_CHECKS();
        cr_assert_eq(atomic_load(&k->c.child_runs), 1);
        cr_assert_eq(k->c.rc, -EDOM, "limit %u, %d queued: %d", k->limit, k->queued, k->c.rc);
    }
}

/* A taken fork runs on a stack of its caller's size: a task of 4 MiB forks a function that needs
 * 512 KiB, which the runtime's default stack would not hold. */
typedef struct deep_case {
    atomic_int forked_started;
    uint64_t forked_task, caller_task;
    long sum;
} deep_case;

static __attribute__((noinline)) long use_stack(int depth)
{
    volatile char frame[8192];
    frame[0] = (char)depth;
    frame[sizeof(frame) - 1] = (char)depth;
    return depth == 0 ? frame[0] : use_stack(depth - 1) + frame[sizeof(frame) - 1];
}

static int deep_forked(void *p)
{
    deep_case *c = p;
    c->forked_task = weft_task_id();
    atomic_store(&c->forked_started, 1);
    c->sum = use_stack(64); /* 64 frames of 8 KiB */
    return 0;
}

static int deep_here(void *p)
{
    deep_case *c = p;
    spin_until(&c->forked_started, 1);
    return 0;
}

static int deep_caller(void *p)
{
    deep_case *c = p;
    c->caller_task = weft_task_id();
    return weft_fork_join(deep_forked, c, deep_here, c);
}

static int deep_root(void *p)
{
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    REQUIRE_EQ(weft_spawn_ex(s, deep_caller, p, &(weft_spawn_opts){.stack_size = 4 << 20}), 0);
    CHECK_EQ(weft_scope_close(s), 0);
    return 0;
}

Test(fork, a_taken_fork_gets_a_stack_of_its_callers_size, .timeout = 60)
{
    deep_case c = {0};
    weft_config cfg = {.workers = 2, .stack_size = 64 * 1024};
    cr_assert_eq(weft_run(&cfg, deep_root, &c), 0);
    ASSERT_CHECKS();
    cr_assert_neq(c.forked_task, c.caller_task, "the fork was not taken");
    cr_assert_eq(c.sum, 64 * 64 / 2 + 32); /* sum of (char)depth for depth 0..64 */
}

/* A message the forked function recorded goes with its code also where `here`'s result carries
 * that code and the forked function, taken, returned 0. */
static int msg_forked(void *p)
{
    steal_case *c = p;
    atomic_store(&c->forked_started, 1);
    weft_fail(-EIO, "recorded by forked");
    return 0;
}

static int msg_here(void *p)
{
    steal_case *c = p;
    spin_until(&c->forked_started, 1);
    return -EIO;
}

typedef struct msg_case {
    steal_case c;
    char message[64];
    int code;
} msg_case;

static int msg_caller(void *p)
{
    msg_case *m = p;
    return weft_fork_join(msg_forked, &m->c, msg_here, &m->c);
}

static int msg_root(void *p)
{
    msg_case *m = p;
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, &(weft_scope_opts){.policy = WEFT_COLLECT}), 0);
    REQUIRE_EQ(weft_spawn(s, msg_caller, m), 0);
    m->code = weft_scope_join(s);
    const weft_error *e = weft_scope_error(s, 0);
    if (e && e->message)
        strncpy(m->message, e->message, sizeof(m->message) - 1);
    weft_scope_release(s);
    return 0;
}

Test(fork, a_message_goes_with_its_code_whichever_result_carries_it, .timeout = 60)
{
    for (unsigned workers = 1; workers <= 2; workers++) {
        msg_case m = {0};
        if (workers == 1)
            atomic_store(&m.c.forked_started, 1);
        cr_assert_eq(run_on(workers, msg_root, &m), 0);
        ASSERT_CHECKS();
        cr_assert_eq(m.code, -EIO);
        cr_assert_str_eq(m.message, "recorded by forked", "on %u workers", workers);
    }
}

/* A fork that can get no stack where it was taken goes back to its caller; where the caller is
 * then in a join of its own scope (its `here` closes it), that join must not wait for the fork
 * the caller will run only after it: the fork's count comes off as it goes back. One worker: the
 * close puts the fork back, the worker takes it while the close waits, and no stack of the
 * caller's size (3 MiB, never mapped before) can be had. */
void weft__alloc_fail_all(int on);

typedef struct back_case {
    weft_scope *s;
    atomic_int forked_runs;
    int close_rc, rc;
    uint64_t forked_task, caller_task;
} back_case;

static int back_forked(void *p)
{
    back_case *c = p;
    c->forked_task = weft_task_id();
    atomic_fetch_add(&c->forked_runs, 1);
    return 0;
}

static int back_here(void *p)
{
    back_case *c = p;
    weft__alloc_fail_all(1);
    c->close_rc = weft_scope_close(c->s);
    weft__alloc_fail_all(0);
    return 0;
}

static int back_caller(void *p)
{
    back_case *c = p;
    c->caller_task = weft_task_id();
    REQUIRE_EQ(weft_scope_open(&c->s, NULL), 0);
    c->rc = weft_fork_join(back_forked, c, back_here, c);
    return 0;
}

static int back_root(void *p)
{
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    REQUIRE_EQ(weft_spawn_ex(s, back_caller, p, &(weft_spawn_opts){.stack_size = 3 << 20}), 0);
    CHECK_EQ(weft_scope_close(s), 0);
    return 0;
}

Test(fork, a_fork_handed_back_during_a_join_of_the_callers_scope, .timeout = 60)
{
    back_case c = {0};
    cr_assert_eq(run_on(1, back_root, &c), 0);
    ASSERT_CHECKS();
    cr_assert_eq(c.close_rc, 0);
    cr_assert_eq(c.rc, 0);
    cr_assert_eq(atomic_load(&c.forked_runs), 1);
    cr_assert_eq(c.forked_task, c.caller_task, "the fork ran elsewhere: nothing was handed back");
}
