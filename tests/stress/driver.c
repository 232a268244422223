// SPDX-License-Identifier: MIT
/*
 * Randomized stress driver: builds random programs out of the whole public API and checks
 * invariants after each one.
 *
 * Every iteration draws a runtime (1..4 workers; for some iterations WEFT_CHAOS=<seed> in the
 * environment, which makes the library perturb its scheduling; weft_run, or a long-lived runtime
 * fed by weft_submit from foreign threads and shut down while they submit) and a random program:
 * tasks open scopes nested to a random depth and width (fail-fast or collect, max_concurrency,
 * shielded, timeouts of 0.1-5 ms, absolute deadlines), spawn into them, into their own scope and
 * into enclosing ones, join or release them or leave them to the implicit join, cancel their own
 * scopes and their ancestors', fail (plain codes, weft_fail, long messages), hand error groups up
 * with weft_fail_group, take semaphore tokens, send and receive on channels (buffered and
 * rendezvous; plain, try and select of several clauses; closed now and then), lock a mutex, wait
 * for and set an event, call weft_blocking, sleep, yield and spin. Waits on channels, the mutex
 * and the event run in a scope of their own with a short timeout, so that none waits for ever.
 * A foreign thread cancels random live scopes, takes tokens with weft_sem_try_acquire, and sends
 * and receives with the channels' try calls.
 *
 * Invariants:
 *   - every spawn (and submission) was refused with a documented error and its function never
 *     ran, or the function ran exactly once;
 *   - every join returns 0, a failure code of a child, -ECANCELED or -ETIMEDOUT, consistent with
 *     what happened: with failures recorded, the first one's code; without, 0 only if no cancel
 *     reached the scope before the join began, -ETIMEDOUT only once a deadline of the scope or of
 *     an ancestor (up to a shield) has passed, -ECANCELED only after a cancel or a fail-fast
 *     failure there; a second join returns the same;
 *   - every failure appears in exactly one error group, the scope of the task that failed, with
 *     its code, message (truncated to WEFT_ERROR_MESSAGE_MAX), task name and scope name, or in the
 *     group of the scope above, when weft_fail_group handed it up or its task left the scope
 *     open (after the task's own failure, or as its result where it had none); a child that
 *     ended with a cancel code is left out only when the scope was cancelled; a fail-fast scope
 *     with a failure is cancelled;
 *   - suspension points return 0 or a cancel code that some cancel, failure or deadline explains,
 *     with a matching weft_cancel_reason_self(), and keep returning it (level-triggered);
 *   - every item sent on a channel (weft_chan_send, weft_chan_try_send, a send clause of
 *     weft_select, from tasks and from the foreign thread) whose send returned 0 is received
 *     exactly once (by a task, the foreign thread, or the drain after the runtime ends), and one
 *     whose send returned anything else is never received: nothing lost, nothing doubled, the
 *     count received from a closed channel equal to its successful sends; a select returns one
 *     clause, and only that clause moved an item;
 *   - a mutex is held by one task at a time, an unlock by a task that does not hold it is -EPERM
 *     and changes nothing, and it is free at the end; an event wait returns 0 only once the event
 *     was set;
 *   - never more than N semaphore tokens held at once, and all N back at the end; weft_blocking
 *     never returns while its function still runs; sleeps never end early; max_concurrency
 *     scopes never run more children at once, and with max_concurrency 1 start them in order;
 *   - weft_run returns the root task's status, a handle the submitted task's status;
 *   - a scope is released only after the scopes nested in it (else -EBUSY, nothing released);
 *   - weft_spawn, weft_scope_open, weft_run and friends refuse misuse with the documented codes;
 *   - nothing leaks (the asan stage runs this under LeakSanitizer).
 *
 * Iterations are sized per build: up to 10,000 tasks (ASan 4,000; TSan 400, since every live
 * task is a TSan fiber and TSan dies past ~8,000 threads and fibers). WEFT_CHAOS is set or unset
 * for every iteration, whatever the environment held. A hang (an iteration running for over
 * 30 s, 120 s under sanitizers) aborts with the iteration's seed and the tasks not ended.
 *
 * Usage:
 *   driver [--seed S] [--iterations N] [--seconds T] [--tasks N] [--soak] [--iteration-seed X]
 *          [--verbose]
 *     --seed S            master seed (default: from the clock); printed at the start and on a
 *                         failure, with the iteration and its own seed
 *     --iterations N      stop after N iterations
 *     --seconds T         stop after T seconds
 *     --tasks N           stop once N tasks were spawned (the first of the limits wins)
 *     --soak              long runs: until killed (or --seconds), a progress line every 10 s:
 *                           driver --soak                  # for hours, until ^C
 *                           driver --soak --seconds 14400  # four hours
 *     --iteration-seed X  run only the iteration with seed X (from a failure report), again and
 *                         again with --iterations
 *     --verbose           one line per iteration
 * Exits 0 when every invariant held; 1 with the seed, the iteration and the broken invariant.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "weft.h"

#if defined(__SANITIZE_THREAD__)
#define DRV_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define DRV_TSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define DRV_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DRV_ASAN 1
#endif
#endif

/* TSan gives every live green thread a fiber and dies past ~8000 threads and fibers: keep the
 * tasks of one iteration (all of which may be alive at once) well below that. Creating a fiber
 * costs milliseconds once many are alive (fresh memory for each), so keep them few. */
#if defined(DRV_TSAN)
#define NODE_CAP 400
#elif defined(DRV_ASAN)
#define NODE_CAP 4000
#else
#define NODE_CAP 10000
#endif
#define SREC_CAP (2 * NODE_CAP)
#define MAX_OWNED 6
#define MAX_SUBMITTERS 3
#define MAX_CHANS 3
#define ITEM_CAP (1u << 18)
#define MAX_SUBMITS 6

#if defined(DRV_TSAN)
#define SLOW_BUILD 1
#define HANG_LIMIT_S 120
#define TIMER_SLACK (30 * WEFT_SEC) /* a worker may spend seconds creating TSan fibers */
#elif defined(DRV_ASAN)
#define SLOW_BUILD 1
#define HANG_LIMIT_S 120
#define TIMER_SLACK (2 * WEFT_SEC)
#else
#define SLOW_BUILD 0
#define HANG_LIMIT_S 30
#define TIMER_SLACK (1 * WEFT_SEC)
#endif

/* ------------------------------------------------------------------------------------------ */
/* Random numbers                                                                              */
/* ------------------------------------------------------------------------------------------ */

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t next_rand(rng *r)
{
    return mix64(r->s += 0x9E3779B97F4A7C15ull);
}

static unsigned below(rng *r, unsigned n)
{
    return n ? (unsigned)(next_rand(r) % n) : 0;
}

static int chance(rng *r, unsigned pct)
{
    return below(r, 100) < pct;
}

/* ------------------------------------------------------------------------------------------ */
/* The records of one iteration                                                                */
/* ------------------------------------------------------------------------------------------ */

#define SPAWN_PENDING 1 /* spawn_rc until the spawn returned (codes are 0 or negative) */

/* One failure of a handed-up group, as the task that handed it up saw it. */
typedef struct gitem {
    int code;
    uint64_t task_id;
    char *msg, *task, *scope;
} gitem;

struct srec;

/* One spawn (or submission) and the task it started. */
typedef struct node {
    struct srec *home;     /* the scope it was spawned into */
    struct node *sib_next; /* in home->kids */
    uint64_t seed;
    unsigned idx;
    int depth;
    int root;     /* weft_run's root task */
    int sentinel; /* holds a racing shutdown open until the submitters are done */
    int named;
    unsigned ord; /* spawn ordinal in an ordered scope (max_concurrency 1), 0 if none */
    char want_name[32];
    _Atomic int spawn_rc;
    atomic_int runs, done;
    _Atomic(const char *) where; /* the call it is in, for a hang report */
    /* Written by the task before it returns; read by the joiner after the join. */
    uint64_t task_id;
    char tname[32];
    int rc;
    char *msg; /* the last message given to weft_fail, as the group must keep it */
    gitem *group;
    size_t ngroup;
    struct srec *forgot[MAX_OWNED]; /* scopes it returned with open: the runtime joins them */
    int nforgot;
} node;

enum { D_OPEN = 1, D_JOINED = 2 };

/* One scope: opened by a task, or the scope of weft_run's root / of a submission. */
typedef struct srec {
    weft_scope *s;
    struct srec *parent; /* the scope whose cancel reaches this one (unless shielded) */
    node *owner;         /* NULL for the external scopes */
    unsigned idx;
    int shield, policy, ordered, external;
    unsigned maxc;
    weft_time dl_lo, dl_hi;     /* bounds of its own deadline; WEFT_NEVER if none */
    weft_time open_t0, open_t1; /* weft_scope_open ran within these */
    char name[32];
    /* owner only */
    int dstate, join_rc, nerrors;
    unsigned next_ord;
    /* shared */
    atomic_int cancel_started, cancel_done, fail_started;
    _Atomic weft_time cancel_t0, cancel_t1; /* the first explicit cancel ran within these */
    atomic_int running;
    atomic_uint last_ord;
    _Atomic(node *) kids;
    int live; /* under G.reg_mu: s may be cancelled by the foreign thread */
} srec;

typedef struct semrec {
    weft_sem *sem;
    unsigned tokens;
    atomic_int held;
} semrec;

enum { MODE_RUN = 0, MODE_SUBMIT = 1 };

/* Items sent on channels are ids into the table below, each sent at most once; the table
 * says what became of the send and how often the id was received. */
enum { ITEM_FREE = 0, ITEM_SENDING, ITEM_SENT, ITEM_NOT_SENT };

typedef struct chanrec {
    weft_chan *chan;
    unsigned capacity;
    atomic_long sent, received;
} chanrec;

typedef struct params {
    uint64_t seed;
    unsigned workers;
    int chaos;
    int mode;
    int submit_race;
    unsigned nsubmitters;
    unsigned max_nodes;
    unsigned rounds; /* the root goes on with more rounds of work until the nodes run out */
    unsigned max_depth;
    unsigned width;
    unsigned leaf_pct;
    unsigned max_steps;
    unsigned open_pct;
    unsigned deadline_pct;
    unsigned shield_pct;
    unsigned maxc_pct;
    unsigned collect_pct;
    unsigned cancel_pct;
    unsigned fail_pct;
    unsigned sleep_pct;
    unsigned blocking_pct;
    unsigned sem_pct;
    unsigned foreign_gap_us; /* 0: the foreign thread cancels nothing */
    unsigned nsems;
    unsigned tokens[4];
    unsigned chan_pct;
    unsigned nchans;
    unsigned capacity[MAX_CHANS];
    unsigned close_pct; /* of channel operations: close the channel instead */
    unsigned kit_pct;   /* the mutex and the event */
    size_t stack_size;
    unsigned blocking_threads;
    weft_time watchdog_ns;
} params;

static struct {
    params p;
    long index;
    node nodes[NODE_CAP];
    atomic_uint nodes_used;
    unsigned nodes_cap;
    srec srecs[SREC_CAP];
    atomic_uint srecs_used;
    srec *top; /* weft_run's root scope, or the runtime's root in submit mode */
    semrec sems[4];
    chanrec chans[MAX_CHANS];
    atomic_uchar item_state[ITEM_CAP];
    atomic_uchar item_received[ITEM_CAP];
    atomic_uint items_used;
    weft_mutex *mutex;
    atomic_int mutex_held;
    weft_event *event;
    atomic_int event_sets;
    pthread_mutex_t reg_mu;
    pthread_mutex_t print_mu;
    atomic_int stop_foreign;
    atomic_int shutdown_begun;
    atomic_int release_sentinel;
    atomic_int failures;
    atomic_int blocking_inflight;
    _Atomic int64_t iter_started; /* for the hang detector; 0 between iterations */
} G;

/* Totals over all iterations. */
static struct {
    atomic_long spawned, refused, scopes, joins, cancels, foreign_cancels, failures, groups,
        sem_acquires, chan_sent, chan_received, chan_closes, selects, mutex_locks, event_waits,
        blocking, submits, sleeps, chaos_iters, submit_iters, deadline_joins, cancelled_joins,
        failed_joins;
} T;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            check_failed(__LINE__, #cond, __VA_ARGS__);                                            \
    } while (0)

static void check_failed(int line, const char *cond, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void check_failed(int line, const char *cond, const char *fmt, ...)
{
    if (atomic_fetch_add(&G.failures, 1) >= 12)
        return;
    pthread_mutex_lock(&G.print_mu);
    fprintf(stderr,
            "driver: iteration %ld (iteration seed 0x%016" PRIx64 "): driver.c:%d: %s: ", G.index,
            G.p.seed, line, cond);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    pthread_mutex_unlock(&G.print_mu);
}

static const int fail_codes[] = {-EIO, -EPROTO, -EBADMSG, -ENODATA, 42};
#define NCODES (sizeof(fail_codes) / sizeof(fail_codes[0]))

static int is_cancel_code(int rc)
{
    return rc == -ECANCELED || rc == -ETIMEDOUT;
}

static void copy_trunc(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = 0;
}

static node *node_alloc(void)
{
    unsigned i = atomic_fetch_add_explicit(&G.nodes_used, 1, memory_order_relaxed);
    if (i >= G.nodes_cap)
        return NULL;
    node *n = &G.nodes[i];
    n->idx = i;
    atomic_store_explicit(&n->spawn_rc, SPAWN_PENDING, memory_order_relaxed);
    return n;
}

static srec *srec_alloc(void)
{
    unsigned i = atomic_fetch_add_explicit(&G.srecs_used, 1, memory_order_relaxed);
    if (i >= SREC_CAP)
        return NULL;
    srec *r = &G.srecs[i];
    r->idx = i;
    r->dl_lo = r->dl_hi = WEFT_NEVER;
    return r;
}

static void set_live(srec *r, int live)
{
    pthread_mutex_lock(&G.reg_mu);
    r->live = live;
    pthread_mutex_unlock(&G.reg_mu);
}

static int forgotten_code(const node *k, int code);

/* weft_run and a handle report the status of the task they started (`first`), whichever task of
 * its scope ends last: what it returned, or, where that was no failure (0, or perhaps a cancel
 * code), the first failure of a scope it left open. */
static int status_ok(const node *first, int status)
{
    if (status == first->rc)
        return 1;
    return (first->rc == 0 || is_cancel_code(first->rc)) && forgotten_code(first, status);
}

static void sleep_us(unsigned us)
{
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (long)(us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------------------------------------ */
/* What explains a cancellation                                                                */
/* ------------------------------------------------------------------------------------------ */

/* The chain of `x`: x, and its parents up to and including the first shielded scope. */
#define FOR_CHAIN(v, x) for (const srec *v = (x); v; v = v->shield ? NULL : v->parent)

/* 1 if something in the chain of `x` explains seeing `code` at time `now`. */
static int explain(const srec *x, int code, weft_time now)
{
    FOR_CHAIN(y, x)
    {
        if (code == -ECANCELED) {
            if (atomic_load(&y->cancel_started))
                return 1;
            if (y->policy == WEFT_FAIL_FAST && atomic_load(&y->fail_started))
                return 1;
        } else if (code == -ETIMEDOUT) {
            if (y->dl_lo <= now)
                return 1;
        }
    }
    return 0;
}

/* 1 if an explicit cancel of the chain of `x` has completed. */
static int chain_cancel_done(const srec *x)
{
    FOR_CHAIN(y, x)
    if (atomic_load(&y->cancel_done))
        return 1;
    return 0;
}

/* The latest moment by which the chain of `x` must be past a deadline, WEFT_NEVER if none. */
static weft_time chain_deadline_hi(const srec *x)
{
    weft_time d = WEFT_NEVER;
    FOR_CHAIN(y, x)
    if (y->dl_hi < d)
        d = y->dl_hi;
    return d;
}

/* For a report: the chain of `x`, with its cancels and opens in microseconds relative to `t`. */
static void describe_chain(const srec *x, weft_time t, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = 0;
    FOR_CHAIN(y, x)
    {
        weft_time c0 = atomic_load(&y->cancel_t0), c1 = atomic_load(&y->cancel_t1);
        int k = snprintf(buf + n, cap - n, "%s%u%s%s", n ? " < " : "", y->idx,
                         y->external ? "(ext)" : "", y->shield ? "(shield)" : "");
        if (k < 0 || (size_t)k >= cap - n)
            break;
        n += (size_t)k;
        if (y->open_t0) {
            k = snprintf(buf + n, cap - n, " open[%lld,%lld]", (long long)(y->open_t0 - t) / 1000,
                         (long long)(y->open_t1 - t) / 1000);
            if (k < 0 || (size_t)k >= cap - n)
                break;
            n += (size_t)k;
        }
        if (c0) {
            k = snprintf(buf + n, cap - n, " cancel[%lld,%lld]", (long long)(c0 - t) / 1000,
                         c1 ? (long long)(c1 - t) / 1000 : 0LL);
            if (k < 0 || (size_t)k >= cap - n)
                break;
            n += (size_t)k;
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Tasks                                                                                       */
/* ------------------------------------------------------------------------------------------ */

typedef struct tctx {
    node *n;
    rng r;
    srec *owned[MAX_OWNED]; /* oldest first; released ones are removed */
    int nowned;
    srec *cur;       /* innermost open scope, else the home scope */
    srec *obs_scope; /* where a cancel code was seen last */
    int obs_code;
    int leaf;
} tctx;

static int task_fn(void *arg);

static void recompute_cur(tctx *c)
{
    c->cur = c->n->home;
    for (int i = c->nowned - 1; i >= 0; i--)
        if (c->owned[i]->dstate == D_OPEN) {
            c->cur = c->owned[i];
            break;
        }
}

static int known_code(tctx *c)
{
    return c->obs_scope == c->cur ? c->obs_code : 0;
}

/* Notes the call a task is in, for the hang report. */
#define IN(c, what) atomic_store_explicit(&(c)->n->where, (what), memory_order_relaxed)

/* 1 if `why` goes with the cancel code `code`: DEADLINE with -ETIMEDOUT, the others with
 * -ECANCELED (a scope's first cause sticks, and its reason is stored before its code). */
static int reason_ok(int code, weft_cancel_reason why)
{
    return why != WEFT_CANCEL_NONE && (code == -ETIMEDOUT) == (why == WEFT_CANCEL_DEADLINE);
}

/* A suspension point in c->cur returned rc (already known: `known`). */
static void observed(tctx *c, int rc, int known, const char *what)
{
    weft_time now = weft_now();
    CHECK(!known || rc == known,
          "%s returned %d after %d was seen in the same scope (level-triggered)", what, rc, known);
    if (rc == 0)
        return;
    CHECK(is_cancel_code(rc), "%s returned %d", what, rc);
    if (!is_cancel_code(rc))
        return;
    CHECK(explain(c->cur, rc, now), "%s returned %d in scope %u, which nothing cancelled", what, rc,
          c->cur->idx);
    weft_cancel_reason why = weft_cancel_reason_self();
    CHECK(reason_ok(rc, why), "%s returned %d with cancel reason %d", what, rc, why);
    int again = weft_checkpoint();
    CHECK(again == rc, "weft_checkpoint says %d after %s returned %d", again, what, rc);
    c->obs_scope = c->cur;
    c->obs_code = again ? again : rc;
}

/* ---- suspension points -------------------------------------------------------------------- */

/* Sleeps: mostly short, now and then up to 300 us. */
static weft_time short_delay(tctx *c)
{
    return (weft_time)(chance(&c->r, 80) ? below(&c->r, 40) : below(&c->r, 300)) * WEFT_USEC;
}

static void op_suspend(tctx *c, int may_sleep)
{
    int known = known_code(c);
    int rc;
    unsigned pick = below(&c->r, 6);
    if (!may_sleep && pick >= 2 && pick <= 4)
        pick = below(&c->r, 2) ? 0 : 5;
    switch (pick) {
    case 0:
        IN(c, "weft_yield");
        rc = weft_yield();
        observed(c, rc, known, "weft_yield");
        break;
    case 1:
        rc = weft_checkpoint();
        observed(c, rc, known, "weft_checkpoint");
        break;
    case 2:
    case 3: {
        weft_time d = short_delay(c);
        weft_time t0 = weft_now();
        IN(c, "weft_sleep_for");
        rc = weft_sleep_for(d);
        weft_time t1 = weft_now();
        atomic_fetch_add_explicit(&T.sleeps, 1, memory_order_relaxed);
        if (rc == 0)
            CHECK(t1 - t0 >= d, "weft_sleep_for(%lld ns) returned 0 after %lld ns", (long long)d,
                  (long long)(t1 - t0));
        observed(c, rc, known, "weft_sleep_for");
        break;
    }
    case 4: {
        weft_time until = weft_now() + short_delay(c);
        IN(c, "weft_sleep_until");
        rc = weft_sleep_until(until);
        weft_time t1 = weft_now();
        atomic_fetch_add_explicit(&T.sleeps, 1, memory_order_relaxed);
        if (rc == 0)
            CHECK(t1 >= until, "weft_sleep_until returned 0 %lld ns early",
                  (long long)(until - t1));
        observed(c, rc, known, "weft_sleep_until");
        break;
    }
    default: {
        /* A little work between two checkpoints. */
        volatile unsigned x = 0;
        unsigned n = below(&c->r, 3000);
        for (unsigned i = 0; i < n; i++)
            x += i;
        rc = weft_checkpoint();
        observed(c, rc, known, "weft_checkpoint");
        break;
    }
    }
}

/* A loop without suspension points that polls weft_checkpoint(), in a scope whose deadline is
 * near: the deadline must reach it (its timer may wait on this very worker's heap). */
static void op_poll(tctx *c)
{
    weft_time dl = chain_deadline_hi(c->cur), now = weft_now();
    if (dl == WEFT_NEVER || dl > now + 5 * WEFT_MSEC || known_code(c))
        return;
    weft_time bound = dl + TIMER_SLACK / 10;
    int rc;
    IN(c, "weft_checkpoint loop");
    while ((rc = weft_checkpoint()) == 0 && weft_now() < bound)
        ;
    /* A checkpoint looks at the clock every few calls (weft.h): a thread descheduled past the
     * bound on a loaded machine gets those few calls before the verdict. */
    for (int i = 0; i < 64 && rc == 0; i++)
        rc = weft_checkpoint();
    CHECK(rc != 0, "a weft_checkpoint loop in scope %u did not see its deadline %lld ms after it",
          c->cur->idx, (long long)((weft_now() - dl) / WEFT_MSEC));
    observed(c, rc, 0, "weft_checkpoint");
}

/* ---- blocking ----------------------------------------------------------------------------- */

typedef struct bjob {
    atomic_int started, finished, saw_cancel;
    int value;
    unsigned us;
    int stop_on_cancel;
} bjob;

static int blocking_fn(void *arg)
{
    bjob *j = arg;
    atomic_store(&j->started, 1);
    for (unsigned t = 0; t < j->us; t += 50) {
        if (weft_blocking_cancelled()) {
            atomic_store(&j->saw_cancel, 1);
            if (j->stop_on_cancel)
                break;
        }
        sleep_us(50);
    }
    int v = j->value;
    atomic_store(&j->finished, 1);
    return v;
}

static void op_blocking(tctx *c)
{
    bjob j; /* on the task's stack: weft_blocking must not return before blocking_fn does */
    atomic_init(&j.started, 0);
    atomic_init(&j.finished, 0);
    atomic_init(&j.saw_cancel, 0);
    j.value = (int)below(&c->r, 1000000);
    j.us = chance(&c->r, 70) ? below(&c->r, 60) : below(&c->r, 400);
    j.stop_on_cancel = chance(&c->r, 70);
    int known = known_code(c);
    int result = -1;
    atomic_fetch_add(&G.blocking_inflight, 1);
    IN(c, "weft_blocking");
    int rc = weft_blocking(blocking_fn, &j, &result);
    atomic_fetch_sub(&G.blocking_inflight, 1);
    atomic_fetch_add_explicit(&T.blocking, 1, memory_order_relaxed);
    int started = atomic_load(&j.started), finished = atomic_load(&j.finished);
    CHECK(!started || finished, "weft_blocking returned %d while its function still ran", rc);
    if (rc == 0) {
        CHECK(started && result == j.value, "weft_blocking returned 0, fn %s, result %d of %d",
              started ? "ran" : "did not run", result, j.value);
        CHECK(!atomic_load(&j.saw_cancel),
              "weft_blocking returned 0 though weft_blocking_cancelled() said 1");
    } else if (known) {
        CHECK(!started, "weft_blocking ran its function in a task known to be cancelled (%d)",
              known);
    }
    observed(c, rc, known, "weft_blocking");
    CHECK(weft_blocking_cancelled() == 0, "weft_blocking_cancelled() is 1 outside a blocking fn");
}

/* ---- semaphores --------------------------------------------------------------------------- */

static void sem_took(semrec *s)
{
    int h = atomic_fetch_add(&s->held, 1) + 1;
    CHECK(h <= (int)s->tokens, "%d tokens of a semaphore of %u held at once", h, s->tokens);
    unsigned avail = weft_sem_available(s->sem);
    CHECK(avail <= s->tokens, "weft_sem_available says %u of %u", avail, s->tokens);
}

static void sem_give(semrec *s)
{
    atomic_fetch_sub(&s->held, 1);
    int rc = weft_sem_release(s->sem);
    CHECK(rc == 0, "weft_sem_release returned %d with a token held", rc);
}

static void op_sem(tctx *c)
{
    if (!G.p.nsems)
        return;
    semrec *s = &G.sems[below(&c->r, G.p.nsems)];
    int known = known_code(c);
    int rc;
    if (chance(&c->r, 25)) {
        rc = weft_sem_try_acquire(s->sem);
        CHECK(rc == 0 || rc == -EAGAIN, "weft_sem_try_acquire returned %d", rc);
    } else {
        IN(c, "weft_sem_acquire");
        rc = weft_sem_acquire(s->sem);
        observed(c, rc, known, "weft_sem_acquire");
    }
    if (rc)
        return;
    atomic_fetch_add_explicit(&T.sem_acquires, 1, memory_order_relaxed);
    sem_took(s);
    /* Hold it across a few suspension points; never across a join (the children might wait
     * for the same token). */
    unsigned k = below(&c->r, 3);
    for (unsigned i = 0; i < k; i++) {
        if (chance(&c->r, 10))
            op_blocking(c);
        else
            op_suspend(c, 1);
    }
    sem_give(s);
}

/* ---- channels, the mutex and the event ------------------------------------------------------ */

/* A fresh item id, its send about to be tried; UINT64_MAX once the table is used up. */
static uint64_t item_new(void)
{
    unsigned id = atomic_fetch_add_explicit(&G.items_used, 1, memory_order_relaxed);
    if (id >= ITEM_CAP)
        return UINT64_MAX;
    atomic_store_explicit(&G.item_state[id], ITEM_SENDING, memory_order_relaxed);
    return id;
}

/* What the send of `id` on `ch` returned. */
static void item_sent(chanrec *ch, uint64_t id, int rc)
{
    atomic_store_explicit(&G.item_state[id], rc == 0 ? ITEM_SENT : ITEM_NOT_SENT,
                          memory_order_relaxed);
    if (rc == 0) {
        atomic_fetch_add_explicit(&ch->sent, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&T.chan_sent, 1, memory_order_relaxed);
    }
}

static void item_received(chanrec *ch, uint64_t id)
{
    CHECK(id < ITEM_CAP && id < atomic_load(&G.items_used),
          "received item %" PRIu64 ", which nobody sent", id);
    if (id >= ITEM_CAP)
        return;
    int before = atomic_fetch_add_explicit(&G.item_received[id], 1, memory_order_relaxed);
    CHECK(before == 0, "item %" PRIu64 " received twice", id);
    atomic_fetch_add_explicit(&ch->received, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&T.chan_received, 1, memory_order_relaxed);
}

/* Opens a scope of its own with a short timeout around one wait on a channel, the mutex or the
 * event, so that the wait ends even when no other task will ever answer it. NULL if the scope
 * could not be opened (a documented refusal: the caller skips the wait). */
static weft_scope *timed_open(tctx *c)
{
    weft_scope_opts o = {.name = "timed wait",
                         .timeout_ns = (weft_time)(20 + below(&c->r, 500)) * WEFT_USEC};
    weft_scope *s = NULL;
    int rc = weft_scope_open(&s, &o);
    CHECK(rc == 0 || rc == -ENOMEM || is_cancel_code(rc),
          "weft_scope_open of a timed wait returned %d", rc);
    return rc == 0 ? s : NULL;
}

static void timed_close(weft_scope *s)
{
    int rc = weft_scope_join(s);
    CHECK(rc == 0 || is_cancel_code(rc), "join of a timed wait returned %d", rc);
    rc = weft_scope_release(s);
    CHECK(rc == 0, "release of a timed wait returned %d", rc);
}

/* A channel call's code: 0, -EPIPE (closed), -EAGAIN from the try calls, or a cancel code. */
static int chan_code_ok(int rc)
{
    return rc == 0 || rc == -EPIPE || rc == -EAGAIN || is_cancel_code(rc);
}

static void op_select(tctx *c)
{
    weft_select_op ops[3];
    uint64_t items[3];
    int n = 1 + (int)below(&c->r, 3);
    for (int i = 0; i < n; i++) {
        ops[i].chan = G.chans[below(&c->r, G.p.nchans)].chan;
        ops[i].kind = chance(&c->r, 50) ? WEFT_SELECT_SEND : WEFT_SELECT_RECV;
        ops[i].result = 12345;
        items[i] = ops[i].kind == WEFT_SELECT_SEND ? item_new() : UINT64_MAX;
        if (ops[i].kind == WEFT_SELECT_SEND && items[i] == UINT64_MAX)
            ops[i].kind = WEFT_SELECT_RECV; /* the table is used up: only receive */
        ops[i].item = &items[i];
    }
    int flags = chance(&c->r, 30) ? WEFT_SELECT_NOWAIT : 0;
    weft_scope *s = flags ? NULL : timed_open(c);
    if (!flags && !s) {
        for (int i = 0; i < n; i++)
            if (ops[i].kind == WEFT_SELECT_SEND)
                item_sent(NULL, items[i], -1);
        return;
    }
    IN(c, "weft_select");
    int rc = weft_select(ops, n, flags);
    atomic_fetch_add_explicit(&T.selects, 1, memory_order_relaxed);
    CHECK(rc >= 0 ? rc < n : (rc == -EAGAIN ? flags != 0 : is_cancel_code(rc)),
          "weft_select of %d clauses (flags %d) returned %d", n, flags, rc);
    for (int i = 0; i < n; i++) {
        if (i != rc)
            CHECK(ops[i].result == 12345, "clause %d of a select that returned %d has result %d", i,
                  rc, ops[i].result);
        else
            CHECK(ops[i].result == 0 || ops[i].result == -EPIPE,
                  "the clause a select returned has result %d", ops[i].result);
        chanrec *ch = NULL;
        for (unsigned k = 0; k < G.p.nchans; k++)
            if (G.chans[k].chan == ops[i].chan)
                ch = &G.chans[k];
        int moved = i == rc && ops[i].result == 0;
        if (ops[i].kind == WEFT_SELECT_SEND)
            item_sent(ch, *(uint64_t *)ops[i].item, moved ? 0 : -1);
        else if (moved)
            item_received(ch, items[i]);
    }
    if (s)
        timed_close(s);
}

static void op_chan(tctx *c)
{
    if (!G.p.nchans)
        return;
    if (chance(&c->r, 25)) {
        op_select(c);
        return;
    }
    chanrec *ch = &G.chans[below(&c->r, G.p.nchans)];
    if (chance(&c->r, G.p.close_pct)) {
        int rc = weft_chan_close(ch->chan);
        CHECK(rc == 0 || rc == -EALREADY, "weft_chan_close returned %d", rc);
        if (rc == 0)
            atomic_fetch_add_explicit(&T.chan_closes, 1, memory_order_relaxed);
        return;
    }
    int try = chance(&c->r, 30);
    weft_scope *s = try ? NULL : timed_open(c);
    if (!try && !s)
        return;
    if (chance(&c->r, 50)) {
        uint64_t id = item_new();
        if (id != UINT64_MAX) {
            IN(c, "weft_chan_send");
            int rc = try ? weft_chan_try_send(ch->chan, &id) : weft_chan_send(ch->chan, &id);
            CHECK(chan_code_ok(rc) && (rc != -EAGAIN || try), "weft_chan_%ssend returned %d",
                  try ? "try_" : "", rc);
            item_sent(ch, id, rc);
        }
    } else {
        uint64_t id = UINT64_MAX;
        IN(c, "weft_chan_recv");
        int rc = try ? weft_chan_try_recv(ch->chan, &id) : weft_chan_recv(ch->chan, &id);
        CHECK(chan_code_ok(rc) && (rc != -EAGAIN || try), "weft_chan_%srecv returned %d",
              try ? "try_" : "", rc);
        if (rc == 0)
            item_received(ch, id);
    }
    if (s)
        timed_close(s);
}

static void op_kit(tctx *c)
{
    if (chance(&c->r, 50)) {
        if (chance(&c->r, 20)) {
            int rc = weft_mutex_unlock(G.mutex);
            CHECK(rc == -EPERM, "unlock of a mutex this task does not hold returned %d", rc);
            return;
        }
        weft_scope *s = timed_open(c);
        if (!s)
            return;
        IN(c, "weft_mutex_lock");
        int rc = chance(&c->r, 20) ? weft_mutex_trylock(G.mutex) : weft_mutex_lock(G.mutex);
        CHECK(rc == 0 || rc == -EBUSY || is_cancel_code(rc), "weft_mutex_lock returned %d", rc);
        timed_close(s);
        if (rc == 0) {
            /* Held across suspension points of the task's own scope (after the timed scope,
             * whose codes the driver's bookkeeping of c->cur does not know). */
            atomic_fetch_add_explicit(&T.mutex_locks, 1, memory_order_relaxed);
            int h = atomic_fetch_add(&G.mutex_held, 1);
            CHECK(h == 0, "a mutex held by %d tasks at once", h + 1);
            CHECK(weft_mutex_lock(G.mutex) == -EDEADLK, "a second lock by the holder");
            unsigned k = below(&c->r, 3);
            for (unsigned i = 0; i < k; i++)
                op_suspend(c, 1);
            atomic_fetch_sub(&G.mutex_held, 1);
            rc = weft_mutex_unlock(G.mutex);
            CHECK(rc == 0, "weft_mutex_unlock by its holder returned %d", rc);
        }
        return;
    }
    if (chance(&c->r, 30)) {
        atomic_fetch_add(&G.event_sets, 1);
        CHECK(weft_event_set(G.event) == 0, "weft_event_set failed");
        return;
    }
    weft_scope *s = timed_open(c);
    if (!s)
        return;
    IN(c, "weft_event_wait");
    int rc = weft_event_wait(G.event);
    atomic_fetch_add_explicit(&T.event_waits, 1, memory_order_relaxed);
    CHECK(rc == 0 || is_cancel_code(rc), "weft_event_wait returned %d", rc);
    if (rc == 0)
        CHECK(atomic_load(&G.event_sets) > 0, "weft_event_wait returned 0, nobody set it");
    timed_close(s);
}

/* ---- spawning ----------------------------------------------------------------------------- */

static void push_kid(srec *r, node *m)
{
    node *head = atomic_load_explicit(&r->kids, memory_order_relaxed);
    do
        m->sib_next = head;
    while (!atomic_compare_exchange_weak_explicit(&r->kids, &head, m, memory_order_release,
                                                  memory_order_relaxed));
}

/* Spawns up to k children into `target`. Returns the number started. */
static unsigned spawn_into(tctx *c, srec *target, unsigned k)
{
    unsigned started = 0;
    int joined = target->owner == c->n && target->dstate == D_JOINED;
    for (unsigned i = 0; i < k; i++) {
        node *m = node_alloc();
        if (!m)
            break;
        m->home = target;
        m->depth = c->n->depth + 1;
        m->seed = next_rand(&c->r);
        weft_spawn_opts o = {0};
        char nm[64];
        int use_opts = chance(&c->r, 25), bad = 0;
        if (use_opts) {
            if (chance(&c->r, 70)) {
                if (chance(&c->r, 10))
                    snprintf(nm, sizeof(nm), "node-%u-with-a-name-too-long-to-keep", m->idx);
                else
                    snprintf(nm, sizeof(nm), "n%u", m->idx);
                copy_trunc(m->want_name, sizeof(m->want_name), nm);
                m->named = 1;
                o.name = nm;
            }
            if (chance(&c->r, 30)) {
                o.stack_size =
                    (size_t)(SLOW_BUILD ? 64 + below(&c->r, 192) : 32 + below(&c->r, 224)) * 1024;
            } else if (chance(&c->r, 4)) {
                o.stack_size = 1000; /* below the minimum: -EINVAL */
                bad = 1;
            }
        }
        if (target->ordered && target->owner == c->n)
            m->ord = ++target->next_ord;
        push_kid(target, m);
        int rc =
            use_opts ? weft_spawn_ex(target->s, task_fn, m, &o) : weft_spawn(target->s, task_fn, m);
        atomic_store_explicit(&m->spawn_rc, rc, memory_order_relaxed);
        if (rc == 0) {
            started++;
            atomic_fetch_add_explicit(&T.spawned, 1, memory_order_relaxed);
            CHECK(!joined && !bad, "weft_spawn into a %s returned 0",
                  bad ? "spawn with a bad stack size" : "joined scope");
            continue;
        }
        atomic_fetch_add_explicit(&T.refused, 1, memory_order_relaxed);
        if (bad || joined) {
            CHECK(rc == -EINVAL, "weft_spawn into a %s returned %d, not -EINVAL",
                  bad ? "spawn with a bad stack size" : "joined scope", rc);
            continue;
        }
        weft_time now = weft_now();
        CHECK(is_cancel_code(rc), "weft_spawn returned %d", rc);
        CHECK(explain(target, rc, now),
              "weft_spawn returned %d into scope %u, which nothing "
              "cancelled",
              rc, target->idx);
        if (target == c->cur)
            observed(c, rc, known_code(c), "weft_spawn");
        break;
    }
    return started;
}

/* A scope to spawn into: usually the innermost open scope, sometimes the task's own scope or
 * an enclosing one (all of them wait for this task, so they are alive), or a joined one. */
static void op_spawn(tctx *c)
{
    srec *target = c->cur;
    unsigned pick = below(&c->r, 100);
    if (pick < 12) {
        /* Up the chain of the innermost scope, through shields too. */
        srec *x = c->cur;
        unsigned up = 1 + below(&c->r, 6);
        while (up-- && x->parent && x->parent->s)
            x = x->parent;
        target = x;
    } else if (pick < 20) {
        target = c->n->home;
    } else if (pick < 23) {
        for (int i = c->nowned - 1; i >= 0; i--)
            if (c->owned[i]->dstate == D_JOINED) {
                target = c->owned[i];
                break;
            }
    }
    /* An ordered scope checks the start order of its owner's spawns: nobody else spawns there. */
    if (target->ordered && target->owner != c->n)
        target = c->cur->ordered && c->cur->owner != c->n ? NULL : c->cur;
    if (!target || !target->s)
        return;
    spawn_into(c, target, 1 + below(&c->r, G.p.width));
}

/* ---- scopes -------------------------------------------------------------------------------- */

static srec *op_open(tctx *c)
{
    if (c->nowned >= MAX_OWNED)
        return NULL;
    srec *r = srec_alloc();
    if (!r)
        return NULL;
    weft_scope_opts o = {0};
    char nm[64];
    if (chance(&c->r, 50)) {
        if (chance(&c->r, 10))
            snprintf(nm, sizeof(nm), "scope-%u-with-a-name-too-long-to-keep", r->idx);
        else
            snprintf(nm, sizeof(nm), "s%u", r->idx);
        o.name = nm;
        copy_trunc(r->name, sizeof(r->name), nm);
    }
    o.policy = chance(&c->r, G.p.collect_pct) ? WEFT_COLLECT : WEFT_FAIL_FAST;
    o.shield = chance(&c->r, G.p.shield_pct);
    if (chance(&c->r, G.p.maxc_pct))
        o.max_concurrency = 1 + below(&c->r, 3);
    weft_time abs_dl = 0;
    if (chance(&c->r, G.p.deadline_pct)) {
        /* 0.1 - 5 ms */
        o.timeout_ns = (weft_time)(100 + below(&c->r, 4900)) * WEFT_USEC;
        if (chance(&c->r, 15)) {
            abs_dl = weft_now() + (weft_time)(100 + below(&c->r, 4900)) * WEFT_USEC;
            o.deadline = abs_dl;
            if (chance(&c->r, 50))
                o.timeout_ns = 0;
        }
    }
    int known = known_code(c);
    weft_time t0 = weft_now();
    weft_scope *s = NULL;
    int rc = weft_scope_open(&s, &o);
    weft_time t1 = weft_now();
    r->open_t0 = t0;
    r->open_t1 = t1;
    if (rc) {
        if (o.shield) {
            CHECK(0, "weft_scope_open of a shielded scope returned %d", rc);
        } else {
            observed(c, rc, known, "weft_scope_open");
        }
        return NULL;
    }
    if (known && !o.shield)
        CHECK(0, "weft_scope_open returned 0 after %d was seen in the same scope", known);
    r->s = s;
    r->parent = c->cur;
    r->owner = c->n;
    r->shield = o.shield;
    r->policy = o.policy;
    r->maxc = o.max_concurrency;
    r->ordered = o.max_concurrency == 1;
    if (o.timeout_ns) {
        r->dl_lo = t0 + o.timeout_ns;
        r->dl_hi = t1 + o.timeout_ns;
    }
    if (abs_dl) {
        if (abs_dl < r->dl_lo)
            r->dl_lo = abs_dl;
        if (abs_dl < r->dl_hi)
            r->dl_hi = abs_dl;
    }
    r->dstate = D_OPEN;
    c->owned[c->nowned++] = r;
    c->cur = r;
    atomic_fetch_add_explicit(&T.scopes, 1, memory_order_relaxed);
    set_live(r, 1);
    return r;
}

typedef struct expect {
    int code;
    uint64_t id;
    const char *msg, *task, *scope;
    int definite; /* 1: recorded; 0: recorded unless the scope was cancelled; -1: perhaps */
    int matched;
} expect;

static void add_expect(expect **e, size_t *n, size_t *cap, expect x)
{
    if (*n == *cap) {
        *cap = *cap ? 2 * *cap : 16;
        *e = realloc(*e, *cap * sizeof(**e));
        if (!*e)
            abort();
    }
    (*e)[(*n)++] = x;
}

/* Adds the failures `k`, an ended child, leaves in the scope it ended in (named `scope`): its own
 * (a group it handed up, or one record), then those of the scopes it left open, which the
 * runtime joined and handed up with it. `handed`: k ended in such a scope: a cancel code of its
 * own kept there is then no more than possible here, whatever became of this scope. */
static void expect_node(const node *k, const char *scope, int handed, expect **e, size_t *ne,
                        size_t *cap)
{
    if (k->rc != 0) {
        if (k->ngroup) {
            for (size_t i = 0; i < k->ngroup; i++) {
                gitem *g = &k->group[i];
                add_expect(e, ne, cap,
                           (expect){g->code, g->task_id, g->msg, g->task, g->scope, 1, 0});
            }
        } else {
            int definite = 1;
            if (is_cancel_code(k->rc))
                definite = handed ? -1 : 0;
            add_expect(
                e, ne, cap,
                (expect){k->rc, k->task_id, k->msg ? k->msg : "", k->tname, scope, definite, 0});
        }
    }
    for (int i = 0; i < k->nforgot; i++) {
        const srec *f = k->forgot[i];
        for (node *j = atomic_load_explicit(&f->kids, memory_order_acquire); j; j = j->sib_next)
            if (atomic_load_explicit(&j->done, memory_order_acquire))
                expect_node(j, f->name, 1, e, ne, cap);
    }
}

/* 1 if `code` may be the result `k` took from a scope it left open. */
static int forgotten_code(const node *k, int code)
{
    expect *e = NULL;
    size_t ne = 0, cap = 0;
    for (int i = 0; i < k->nforgot; i++) {
        const srec *f = k->forgot[i];
        for (node *j = atomic_load_explicit(&f->kids, memory_order_acquire); j; j = j->sib_next)
            if (atomic_load_explicit(&j->done, memory_order_acquire))
                expect_node(j, f->name, 1, &e, &ne, &cap);
    }
    int found = 0;
    for (size_t i = 0; i < ne; i++)
        found |= e[i].code == code;
    free(e);
    return found;
}

/* Checks the result of the join of `r` and its error group. `pre` says the scope was cancelled
 * before the join began, at `js` (see cancelled_before_join). */
static void check_join(srec *r, int rc, int pre, weft_time js)
{
    weft_time je = weft_now();
    atomic_fetch_add_explicit(&T.joins, 1, memory_order_relaxed);
    size_t n = weft_scope_error_count(r->s);
    r->join_rc = rc;
    r->nerrors = (int)n;

    expect *e = NULL;
    size_t ne = 0, cap = 0;
    for (node *k = atomic_load_explicit(&r->kids, memory_order_acquire); k; k = k->sib_next) {
        if (!atomic_load_explicit(&k->done, memory_order_acquire))
            continue; /* refused: checked at the end */
        expect_node(k, r->name, 0, &e, &ne, &cap);
    }
    for (size_t i = 0; i < n; i++) {
        const weft_error *er = weft_scope_error(r->s, i);
        CHECK(er != NULL, "weft_scope_error(%zu) of %zu is NULL", i, n);
        if (!er)
            continue;
        expect *x = NULL;
        for (size_t j = 0; j < ne; j++)
            if (e[j].id == er->task_id) {
                x = &e[j];
                break;
            }
        CHECK(x != NULL,
              "scope %u holds a failure (code %d, task %s, id %" PRIu64
              ", scope '%s') no child of it produced",
              r->idx, er->code, er->task, er->task_id, er->scope);
        if (!x)
            continue;
        CHECK(!x->matched, "scope %u holds the failure of task %" PRIu64 " twice", r->idx,
              er->task_id);
        x->matched++;
        CHECK(er->code == x->code, "failure of task %" PRIu64 ": code %d, expected %d", er->task_id,
              er->code, x->code);
        CHECK(strcmp(er->message, x->msg) == 0,
              "failure of task %" PRIu64 ": message '%.60s' (%zu bytes), expected '%.60s' (%zu)",
              er->task_id, er->message, strlen(er->message), x->msg, strlen(x->msg));
        CHECK(strcmp(er->task, x->task) == 0,
              "failure of task %" PRIu64 ": task '%s', expected "
              "'%s'",
              er->task_id, er->task, x->task);
        CHECK(strcmp(er->scope, x->scope) == 0,
              "failure of task %" PRIu64 ": scope '%s', "
              "expected '%s'",
              er->task_id, er->scope, x->scope);
    }
    CHECK(weft_scope_error(r->s, n) == NULL, "weft_scope_error past the end is not NULL");
    size_t by_code = weft_scope_error_count_code(r->s, -ECANCELED) +
                     weft_scope_error_count_code(r->s, -ETIMEDOUT) +
                     weft_scope_error_count_code(r->s, -EINVAL);
    for (size_t i = 0; i < NCODES; i++)
        by_code += weft_scope_error_count_code(r->s, fail_codes[i]);
    CHECK(by_code == n, "error counts by code add up to %zu of %zu", by_code, n);

    weft_cancel_reason why = weft_scope_cancel_reason(r->s);
    int unmatched_maybe = 0;
    for (size_t j = 0; j < ne; j++) {
        if (e[j].matched)
            continue;
        if (e[j].definite > 0)
            CHECK(0, "scope %u lost the failure of task %" PRIu64 " (code %d)", r->idx, e[j].id,
                  e[j].code);
        else if (e[j].definite == 0)
            unmatched_maybe = 1;
    }
    if (unmatched_maybe)
        CHECK(why != WEFT_CANCEL_NONE,
              "scope %u left out a child's cancel code, but was not "
              "cancelled",
              r->idx);
    free(e);

    if (n > 0) {
        const weft_error *first = weft_scope_error(r->s, 0);
        CHECK(first && rc == first->code, "join of scope %u returned %d, its first failure is %d",
              r->idx, rc, first ? first->code : 0);
        if (r->policy == WEFT_FAIL_FAST)
            CHECK(why != WEFT_CANCEL_NONE, "fail-fast scope %u has %zu failures, not cancelled",
                  r->idx, n);
        atomic_fetch_add_explicit(&T.failed_joins, 1, memory_order_relaxed);
    } else if (rc == 0) {
        if (pre) {
            char why_s[400];
            describe_chain(r, js, why_s, sizeof(why_s));
            CHECK(!pre, "join of scope %u returned 0 after it was cancelled; chain: %s", r->idx,
                  why_s);
        }
        weft_time dl = chain_deadline_hi(r);
        CHECK(dl == WEFT_NEVER || js < dl + TIMER_SLACK,
              "join of scope %u began %lld ms after its deadline and returned 0", r->idx,
              (long long)((js - dl) / WEFT_MSEC));
        /* (A cancel of an ancestor after the join may give it a reason by now.) */
    } else if (rc == -ETIMEDOUT) {
        CHECK(explain(r, rc, je), "join of scope %u returned -ETIMEDOUT before any deadline",
              r->idx);
        CHECK(reason_ok(rc, why), "join of scope %u returned -ETIMEDOUT, reason %d", r->idx, why);
        atomic_fetch_add_explicit(&T.deadline_joins, 1, memory_order_relaxed);
    } else if (rc == -ECANCELED) {
        CHECK(explain(r, rc, je), "join of scope %u returned -ECANCELED, nothing cancelled it",
              r->idx);
        CHECK(why != WEFT_CANCEL_FAILURE && reason_ok(rc, why),
              "join of scope %u returned -ECANCELED without failures, reason %d", r->idx, why);
        atomic_fetch_add_explicit(&T.cancelled_joins, 1, memory_order_relaxed);
    } else {
        CHECK(0, "join of scope %u returned %d without failures", r->idx, rc);
    }
}

/* Whether a join of `r` that begins now must not return 0 (without failures). As documented:
 * once weft_scope_cancel of `r` or of an ancestor (up to a shield) has returned, the subtree is
 * cancelled, even when another cancel got there first and is still fanning out. */
static int cancelled_before_join(const srec *r)
{
    return chain_cancel_done(r);
}

/* Joins owned scope index i (and, as the library does, every open scope opened after it). */
static void op_join(tctx *c, int i)
{
    srec *r = c->owned[i];
    if (r->dstate != D_OPEN)
        return;
    int pre[MAX_OWNED];
    for (int j = i; j < c->nowned; j++)
        pre[j] = cancelled_before_join(c->owned[j]);
    weft_time js = weft_now();
    IN(c, "weft_scope_join");
    int rc = weft_scope_join(r->s);
    for (int j = c->nowned - 1; j > i; j--) {
        srec *x = c->owned[j];
        if (x->dstate != D_OPEN)
            continue;
        int xrc = weft_scope_join(x->s); /* joined already by the outer join: same result */
        x->dstate = D_JOINED;
        check_join(x, xrc, pre[j], js);
    }
    r->dstate = D_JOINED;
    check_join(r, rc, pre[i], js);
    if (chance(&c->r, 20)) {
        int again = weft_scope_join(r->s);
        CHECK(again == rc, "second join of scope %u returned %d, the first %d", r->idx, again, rc);
    }
    recompute_cur(c);
}

/* 1 if `x` is nested in `r`. */
static int nested_in(const srec *x, const srec *r)
{
    for (const srec *p = x->parent; p; p = p->parent)
        if (p == r)
            return 1;
    return 0;
}

/* Releases owned scope index i and every scope opened after it, newest first: a scope with one
 * nested in it unreleased is refused. */
static void op_release(tctx *c, int i)
{
    int nested = 0;
    for (int j = i + 1; j < c->nowned; j++)
        nested |= nested_in(c->owned[j], c->owned[i]);
    if (nested && chance(&c->r, 50)) {
        IN(c, "weft_scope_release");
        int rc = chance(&c->r, 50) ? weft_scope_release(c->owned[i]->s)
                                   : weft_scope_close(c->owned[i]->s);
        CHECK(rc == -EBUSY, "release of scope %u, with one nested in it open, returned %d",
              c->owned[i]->idx, rc);
    }
    for (int j = c->nowned - 1; j >= i; j--) {
        set_live(c->owned[j], 0);
        IN(c, "weft_scope_release");
        int rc = weft_scope_release(c->owned[j]->s);
        CHECK(rc == 0, "weft_scope_release returned %d", rc);
    }
    c->nowned = i;
    recompute_cur(c);
}

static void note_cancel_start(srec *x)
{
    weft_time zero = 0;
    atomic_compare_exchange_strong(&x->cancel_t0, &zero, weft_now());
    atomic_store(&x->cancel_started, 1);
}

static void note_cancel_done(srec *x)
{
    weft_time zero = 0;
    atomic_compare_exchange_strong(&x->cancel_t1, &zero, weft_now());
    atomic_store(&x->cancel_done, 1); /* after cancel_t1: whoever sees it sees a time */
}

static void do_cancel(srec *x)
{
    note_cancel_start(x);
    int rc = weft_scope_cancel(x->s);
    note_cancel_done(x);
    CHECK(rc == 0, "weft_scope_cancel of a live scope returned %d", rc);
}

/* Cancels one of the task's own scopes, mostly; now and then its own scope or an enclosing one
 * (rarely the top: that ends the whole program). */
static void op_cancel(tctx *c)
{
    srec *x;
    unsigned pick = below(&c->r, 100);
    if (pick < 70 && c->nowned) {
        x = c->owned[below(&c->r, (unsigned)c->nowned)];
    } else if (pick < 85) {
        x = c->n->home;
    } else {
        x = c->cur;
        unsigned up = 1 + below(&c->r, 4);
        while (up-- && x->parent && x->parent->s)
            x = x->parent;
    }
    if (!x->s || (x == G.top && !chance(&c->r, 5)))
        return;
    do_cancel(x);
    atomic_fetch_add_explicit(&T.cancels, 1, memory_order_relaxed);
    if (x->owner == c->n && x->dstate == D_JOINED) {
        int again = weft_scope_join(x->s);
        CHECK(again == x->join_rc, "join of scope %u after a late cancel returned %d, first %d",
              x->idx, again, x->join_rc);
    }
}

/* Calls that must be refused without harm. */
static void op_misuse(tctx *c)
{
    switch (below(&c->r, 8)) {
    case 0:
        if (c->n->home->owner != c->n) {
            int rc = weft_scope_join(c->n->home->s);
            CHECK(rc == -EPERM, "join of a scope owned by another task returned %d", rc);
        }
        break;
    case 1:
        if (c->n->home->owner != c->n) {
            int rc = weft_scope_release(c->n->home->s);
            CHECK(rc == -EPERM, "release of a scope owned by another task returned %d", rc);
        }
        break;
    case 2: {
        weft_scope *s = NULL;
        weft_scope_opts o = {0};
        if (chance(&c->r, 50))
            o.policy = (weft_policy)7;
        else
            o.timeout_ns = -1;
        int rc = weft_scope_open(&s, &o);
        CHECK(rc == -EINVAL, "weft_scope_open with bad options returned %d", rc);
        rc = weft_scope_open(NULL, NULL);
        CHECK(rc == -EINVAL, "weft_scope_open(NULL) returned %d", rc);
        break;
    }
    case 3: {
        int rc = weft_run(NULL, task_fn, NULL);
        CHECK(rc == -EDEADLK, "weft_run inside a task returned %d", rc);
        weft_runtime *rt = NULL;
        rc = weft_runtime_start(&rt, NULL);
        CHECK(rc == -EDEADLK, "weft_runtime_start inside a task returned %d", rc);
        break;
    }
    case 4: {
        int rc = weft_spawn(NULL, task_fn, NULL);
        CHECK(rc == -EINVAL, "weft_spawn(NULL scope) returned %d", rc);
        rc = weft_spawn(c->cur->s, NULL, NULL);
        CHECK(rc == -EINVAL, "weft_spawn(NULL fn) returned %d", rc);
        rc = weft_scope_cancel(NULL);
        CHECK(rc == -EINVAL, "weft_scope_cancel(NULL) returned %d", rc);
        break;
    }
    case 5: {
        unsigned w = weft_workers();
        int i = weft_worker_index();
        CHECK(w == G.p.workers, "weft_workers() is %u, configured %u", w, G.p.workers);
        CHECK(i >= 0 && (unsigned)i < w, "weft_worker_index() is %d of %u", i, w);
        CHECK(weft_task_id() == c->n->task_id, "weft_task_id changed");
        break;
    }
    case 6:
        for (int i = 0; i < c->nowned; i++)
            if (c->owned[i]->dstate == D_OPEN) {
                int rc = weft_fail_group(c->owned[i]->s, NULL, 0);
                CHECK(rc == -EINVAL, "weft_fail_group of an open scope returned %d", rc);
                break;
            }
        break;
    default:
        CHECK(weft_current_scope() == c->n->home->s, "weft_current_scope is not the home scope");
        break;
    }
}

/* ---- the program of one task --------------------------------------------------------------- */

static void fork_join(tctx *c)
{
    srec *r = op_open(c);
    if (!r)
        return;
    unsigned k = 1 + below(&c->r, G.p.width);
    spawn_into(c, r, k);
    if (chance(&c->r, 25))
        op_suspend(c, 1);
    if (chance(&c->r, 75)) {
        int i = c->nowned - 1;
        op_join(c, i);
        if (chance(&c->r, 60) && c->nowned - 1 == i && c->owned[i]->nerrors == 0)
            op_release(c, i);
    }
}

static void run_program(tctx *c)
{
    unsigned steps = c->leaf      ? below(&c->r, 3)
                     : c->n->root ? 3 + below(&c->r, 2 * G.p.max_steps)
                                  : 1 + below(&c->r, G.p.max_steps);
    /* The root goes on in rounds while nodes are left: a runtime costs milliseconds to start
     * and its first tasks pay for fresh stack pages, so a large iteration is cheaper per task. */
    if (c->n->root && G.p.rounds > 1)
        steps = G.p.rounds * (1 + G.p.max_steps);
    for (unsigned step = 0; step < steps; step++) {
        if (c->n->root && step >= 3 && atomic_load(&G.nodes_used) >= G.nodes_cap)
            break;
        if (known_code(c) && chance(&c->r, 60))
            break; /* cancelled: wind down (or carry on: the state stays) */
        unsigned r = below(&c->r, 100);
        if (!c->leaf && (r < G.p.open_pct || (step == 0 && c->n->depth == 0))) {
            if (chance(&c->r, 70))
                fork_join(c);
            else
                op_open(c);
        } else if (!c->leaf && r < 50) {
            op_spawn(c);
        } else if (r < 58) {
            for (int i = 0; i < c->nowned; i++)
                if (c->owned[i]->dstate == D_OPEN && chance(&c->r, 50)) {
                    op_join(c, i);
                    break;
                }
        } else if (r < 61) {
            if (c->nowned)
                op_release(c, (int)below(&c->r, (unsigned)c->nowned));
        } else if (r < 61 + G.p.sleep_pct) {
            op_suspend(c, 1);
        } else if (r < 61 + G.p.sleep_pct + G.p.sem_pct) {
            op_sem(c);
        } else if (r < 61 + G.p.sleep_pct + G.p.sem_pct + G.p.blocking_pct) {
            op_blocking(c);
        } else if (r < 61 + G.p.sleep_pct + G.p.sem_pct + G.p.blocking_pct + G.p.chan_pct) {
            op_chan(c);
        } else if (r < 61 + G.p.sleep_pct + G.p.sem_pct + G.p.blocking_pct + G.p.chan_pct +
                           G.p.kit_pct) {
            op_kit(c);
        } else if (chance(&c->r, G.p.cancel_pct)) {
            op_cancel(c);
        } else if (chance(&c->r, 5)) {
            op_misuse(c);
        } else if (chance(&c->r, 3)) {
            op_poll(c);
        } else {
            op_suspend(c, 0);
        }
    }
}

/* Records what the scope of this task must hold after `rc` and the messages given so far. */
static void set_message(tctx *c, int code_for_msg, int long_msg)
{
    char buf[512];
    if (long_msg) {
        int k = snprintf(buf, sizeof(buf), "n%u:%d:", c->n->idx, code_for_msg);
        memset(buf + k, 'a' + (char)(c->n->idx % 26), sizeof(buf) - 1 - (size_t)k);
        buf[sizeof(buf) - 1] = 0;
    } else {
        snprintf(buf, sizeof(buf), "n%u:%d", c->n->idx, code_for_msg);
    }
    int got = weft_fail(code_for_msg, "%s", buf);
    CHECK(got == (code_for_msg ? code_for_msg : -EINVAL), "weft_fail(%d) returned %d", code_for_msg,
          got);
    free(c->n->msg);
    size_t keep = strnlen(buf, WEFT_ERROR_MESSAGE_MAX - 1);
    c->n->msg = malloc(keep + 1);
    if (!c->n->msg)
        abort();
    memcpy(c->n->msg, buf, keep);
    c->n->msg[keep] = 0;
}

static char *dup_str(const char *s)
{
    char *d = strdup(s ? s : "");
    if (!d)
        abort();
    return d;
}

/* return weft_fail_group(r, handled, n), with the group it must hand up recorded. */
static int hand_up(tctx *c, srec *r)
{
    int handled[3];
    size_t nh = below(&c->r, 3);
    for (size_t i = 0; i < nh; i++) {
        unsigned k = below(&c->r, NCODES + 1);
        handled[i] = k < NCODES ? fail_codes[k] : -ECANCELED;
    }
    size_t n = weft_scope_error_count(r->s), keep = 0;
    int first = 0;
    for (size_t i = 0; i < n; i++) {
        const weft_error *er = weft_scope_error(r->s, i);
        int h = 0;
        for (size_t j = 0; j < nh; j++)
            h |= er->code == handled[j];
        if (!h) {
            keep++;
            if (!first)
                first = er->code;
        }
    }
    node *me = c->n;
    if (keep) {
        gitem *g = realloc(me->group, (me->ngroup + keep) * sizeof(*g));
        if (!g)
            abort();
        me->group = g;
        for (size_t i = 0; i < n; i++) {
            const weft_error *er = weft_scope_error(r->s, i);
            int h = 0;
            for (size_t j = 0; j < nh; j++)
                h |= er->code == handled[j];
            if (h)
                continue;
            me->group[me->ngroup++] = (gitem){er->code, er->task_id, dup_str(er->message),
                                              dup_str(er->task), dup_str(er->scope)};
        }
    }
    int rc = weft_fail_group(r->s, nh ? handled : NULL, nh);
    CHECK(rc == first, "weft_fail_group returned %d, the first failure left is %d", rc, first);
    atomic_fetch_add_explicit(&T.groups, 1, memory_order_relaxed);
    return rc;
}

static int finish(tctx *c)
{
    if (chance(&c->r, 60)) {
        for (int i = 0; i < c->nowned; i++)
            if (c->owned[i]->dstate == D_OPEN) {
                op_join(c, i);
                break;
            }
    }
    int rc = 0;
    srec *with_errors = NULL;
    for (int i = 0; i < c->nowned; i++)
        if (c->owned[i]->dstate == D_JOINED && c->owned[i]->nerrors)
            with_errors = c->owned[i];
    if (with_errors && chance(&c->r, 50)) {
        rc = hand_up(c, with_errors);
        /* Sometimes a second group too (from another joined scope). */
        for (int i = 0; i < c->nowned; i++) {
            srec *x = c->owned[i];
            if (x != with_errors && x->dstate == D_JOINED && x->nerrors && chance(&c->r, 50)) {
                int rc2 = hand_up(c, x);
                if (!rc)
                    rc = rc2;
                break;
            }
        }
    } else if (c->obs_code && chance(&c->r, 50)) {
        rc = c->obs_code; /* let the cancel code through */
    } else if (chance(&c->r, G.p.fail_pct)) {
        int code = fail_codes[below(&c->r, NCODES)];
        switch (below(&c->r, 5)) {
        case 0:
            rc = code;
            break;
        case 1:
            set_message(c, code, 0);
            rc = code;
            break;
        case 2:
            set_message(c, 0, 0); /* a code of 0 becomes -EINVAL */
            rc = -EINVAL;
            break;
        case 3:
            set_message(c, code, 1);
            rc = code;
            break;
        default:
            set_message(c, code, 0);
            rc = c->obs_code ? c->obs_code : code;
            if (rc != code) {
                /* The message went with `code` (weft_fail): the task fails without it. */
                free(c->n->msg);
                c->n->msg = NULL;
            }
            break;
        }
        atomic_fetch_add_explicit(&T.failures, 1, memory_order_relaxed);
    } else if (chance(&c->r, 3)) {
        set_message(c, -EIO, 0); /* a message, then success: nothing is recorded */
        rc = 0;
    }
    /* Release some scopes here, leave the others to the implicit join and release. */
    if (c->nowned && chance(&c->r, 40))
        op_release(c, (int)below(&c->r, (unsigned)c->nowned));
    for (int i = 0; i < c->nowned; i++)
        set_live(c->owned[i], 0);
    return rc;
}

/* Holds a shutdown open (it waits for every task) until the submitters are done. */
static int sentinel_body(tctx *c)
{
    weft_scope_opts o = {.shield = 1, .name = "sentinel"};
    weft_scope *s;
    int rc = weft_scope_open(&s, &o);
    CHECK(rc == 0, "shielded weft_scope_open returned %d", rc);
    if (rc)
        return 0;
    while (!atomic_load(&G.release_sentinel)) {
        rc = weft_sleep_for(100 * WEFT_USEC);
        CHECK(rc == 0, "a sleep in a shielded scope returned %d", rc);
    }
    rc = weft_scope_join(s);
    CHECK(rc == 0, "join of the shielded sentinel scope returned %d", rc);
    weft_scope_release(s);
    (void)c;
    return 0;
}

static int task_fn(void *arg)
{
    node *n = arg;
    int runs = atomic_fetch_add(&n->runs, 1);
    CHECK(runs == 0, "node %u runs a %d. time", n->idx, runs + 1);
    if (runs)
        return 0;
    srec *home = n->home;
    n->task_id = weft_task_id();
    CHECK(n->task_id != 0, "weft_task_id() is 0 in a task");
    const char *nm = weft_task_name();
    char want[40];
    if (n->root)
        snprintf(want, sizeof(want), "root");
    else if (n->named)
        snprintf(want, sizeof(want), "%s", n->want_name);
    else
        snprintf(want, sizeof(want), "task-%" PRIu64, n->task_id);
    CHECK(strcmp(nm, want) == 0, "task name '%s', expected '%s'", nm, want);
    copy_trunc(n->tname, sizeof(n->tname), nm);
    if (home->external && !home->s) {
        home->s = weft_current_scope();
        set_live(home, 1);
    }
    CHECK(weft_current_scope() == home->s, "weft_current_scope() is not the scope spawned into");
    if (home->maxc) {
        int now = atomic_fetch_add(&home->running, 1) + 1;
        CHECK(now <= (int)home->maxc, "%d children of scope %u run at once, max_concurrency %u",
              now, home->idx, home->maxc);
    }
    if (n->ord) {
        unsigned prev = atomic_exchange(&home->last_ord, n->ord);
        CHECK(prev < n->ord, "scope %u (max_concurrency 1) started child %u after child %u",
              home->idx, n->ord, prev);
    }
    tctx c;
    memset(&c, 0, sizeof(c));
    c.n = n;
    c.r.s = n->seed;
    c.cur = home;
    c.leaf = !n->root && (n->depth >= (int)G.p.max_depth || chance(&c.r, G.p.leaf_pct));
    int rc;
    if (n->sentinel) {
        rc = sentinel_body(&c);
    } else {
        run_program(&c);
        rc = finish(&c);
        IN(&c, "returned");
        for (int i = 0; i < c.nowned; i++)
            if (c.owned[i]->dstate == D_OPEN)
                n->forgot[n->nforgot++] = c.owned[i];
        /* Their failures become its own once they are joined, after it returns: */
        if (n->nforgot)
            atomic_store(&home->fail_started, 1);
    }
    if (home->external && n->depth == 0)
        set_live(home, 0);
    if (rc)
        atomic_store(&home->fail_started, 1);
    if (home->maxc)
        atomic_fetch_sub(&home->running, 1);
    n->rc = rc;
    atomic_store_explicit(&n->done, 1, memory_order_release);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Foreign threads                                                                             */
/* ------------------------------------------------------------------------------------------ */

static int never_run(void *arg)
{
    (void)arg;
    CHECK(0, "a function passed to a refused call ran");
    return 0;
}

static void foreign_misuse(void)
{
    weft_scope *s = NULL;
    pthread_mutex_lock(&G.reg_mu);
    int rc = weft_spawn(G.top->live ? G.top->s : NULL, never_run, NULL);
    pthread_mutex_unlock(&G.reg_mu);
    CHECK(rc == -EPERM, "weft_spawn from a foreign thread returned %d", rc);
    CHECK(weft_yield() == -EPERM, "weft_yield outside a task");
    CHECK(weft_checkpoint() == -EPERM, "weft_checkpoint outside a task");
    CHECK(weft_sleep_for(1000) == -EPERM, "weft_sleep_for outside a task");
    CHECK(weft_scope_open(&s, NULL) == -EPERM, "weft_scope_open outside a task");
    CHECK(weft_blocking(never_run, NULL, NULL) == -EPERM, "weft_blocking outside a task");
    CHECK(weft_task_id() == 0, "weft_task_id outside a task");
    CHECK(weft_current_scope() == NULL, "weft_current_scope outside a task");
    CHECK(weft_worker_index() == -1, "weft_worker_index outside a task");
    CHECK(weft_workers() == 0, "weft_workers outside a task");
    CHECK(weft_cancel_reason_self() == WEFT_CANCEL_NONE, "weft_cancel_reason_self outside");
    CHECK(weft_fail(0, "x") == -EINVAL, "weft_fail(0) outside a task");
    if (G.p.nsems)
        CHECK(weft_sem_acquire(G.sems[0].sem) == -EPERM, "weft_sem_acquire outside a task");
}

static void *foreign_main(void *arg)
{
    (void)arg;
    rng r = {G.p.seed ^ 0xF0F0F0F0F0F0F0F0ull};
    foreign_misuse();
    while (!atomic_load(&G.stop_foreign)) {
        unsigned gap = G.p.foreign_gap_us ? G.p.foreign_gap_us : 500;
        sleep_us(1 + below(&r, 2 * gap));
        if (G.p.foreign_gap_us && chance(&r, 70)) {
            pthread_mutex_lock(&G.reg_mu);
            unsigned used = atomic_load(&G.srecs_used);
            if (used > SREC_CAP)
                used = SREC_CAP;
            if (used) {
                srec *x = &G.srecs[below(&r, used)];
                if (x->live) {
                    do_cancel(x);
                    atomic_fetch_add_explicit(&T.foreign_cancels, 1, memory_order_relaxed);
                }
            }
            pthread_mutex_unlock(&G.reg_mu);
        } else if (G.p.nchans && chance(&r, 50)) {
            chanrec *ch = &G.chans[below(&r, G.p.nchans)];
            if (chance(&r, 50)) {
                uint64_t id = item_new();
                if (id != UINT64_MAX) {
                    int rc = weft_chan_try_send(ch->chan, &id);
                    CHECK(rc == 0 || rc == -EAGAIN || rc == -EPIPE,
                          "weft_chan_try_send (foreign) returned %d", rc);
                    item_sent(ch, id, rc);
                }
            } else {
                uint64_t id;
                int rc = weft_chan_try_recv(ch->chan, &id);
                CHECK(rc == 0 || rc == -EAGAIN || rc == -EPIPE,
                      "weft_chan_try_recv (foreign) returned %d", rc);
                if (rc == 0)
                    item_received(ch, id);
            }
        } else if (G.p.nsems) {
            semrec *s = &G.sems[below(&r, G.p.nsems)];
            int rc = weft_sem_try_acquire(s->sem);
            CHECK(rc == 0 || rc == -EAGAIN, "weft_sem_try_acquire (foreign) returned %d", rc);
            if (rc == 0) {
                sem_took(s);
                sleep_us(below(&r, 100));
                sem_give(s);
            }
        }
    }
    return NULL;
}

typedef struct submitter {
    pthread_t th;
    uint64_t seed;
    weft_runtime *rt;
    unsigned count;
} submitter;

static void *submitter_main(void *arg)
{
    submitter *sb = arg;
    rng r = {sb->seed};
    node *nodes[MAX_SUBMITS];
    weft_handle *hs[MAX_SUBMITS];
    unsigned k = 0;
    for (unsigned i = 0; i < sb->count; i++) {
        node *n = node_alloc();
        srec *e = srec_alloc();
        if (!n || !e)
            break;
        e->external = 1;
        e->policy = WEFT_COLLECT;
        e->parent = G.top;
        n->home = e;
        n->depth = 0;
        n->seed = next_rand(&r);
        weft_handle *h = NULL;
        int rc = weft_submit(sb->rt, task_fn, n, &h);
        atomic_store_explicit(&n->spawn_rc, rc, memory_order_relaxed);
        if (rc == 0) {
            atomic_fetch_add_explicit(&T.submits, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&T.spawned, 1, memory_order_relaxed);
            nodes[k] = n;
            hs[k++] = h;
        } else {
            atomic_fetch_add_explicit(&T.refused, 1, memory_order_relaxed);
            CHECK(rc == -ESHUTDOWN && atomic_load(&G.shutdown_begun),
                  "weft_submit returned %d (shutdown begun: %d)", rc,
                  atomic_load(&G.shutdown_begun));
        }
        if (chance(&r, 50))
            sleep_us(below(&r, 300));
    }
    for (unsigned i = 0; i < k; i++) {
        node *n = nodes[i];
        weft_handle *h = hs[i];
        int status = 0, rc;
        switch (below(&r, 5)) {
        case 0: /* released without waiting: left to finish on its own */
            weft_handle_release(h);
            continue;
        case 1:
            rc = weft_handle_wait(h, weft_now() + (weft_time)below(&r, 300) * WEFT_USEC, &status);
            CHECK(rc == 0 || rc == -ETIMEDOUT, "weft_handle_wait (deadline) returned %d", rc);
            if (rc == 0)
                break;
            /* fall through */
        case 2:
            if (chance(&r, 50)) {
                note_cancel_start(n->home);
                rc = weft_handle_cancel(h);
                note_cancel_done(n->home);
                CHECK(rc == 0, "weft_handle_cancel returned %d", rc);
            }
            /* fall through */
        default:
            rc = weft_handle_wait(h, WEFT_NEVER, &status);
            CHECK(rc == 0, "weft_handle_wait returned %d", rc);
            break;
        }
        CHECK(atomic_load_explicit(&n->done, memory_order_acquire),
              "weft_handle_wait returned before the submitted task ended");
        CHECK(status_ok(n, status),
              "weft_handle_wait gave status %d, the submitted task returned %d", status, n->rc);
        if (chance(&r, 30)) {
            int again = -1;
            rc = weft_handle_wait(h, weft_now(), &again);
            CHECK(rc == 0 && again == status, "a second weft_handle_wait: %d, status %d", rc,
                  again);
        }
        weft_handle_release(h);
    }
    return NULL;
}

typedef struct shutter {
    pthread_t th;
    weft_runtime *rt;
} shutter;

static void begin_shutdown(void)
{
    atomic_store(&G.shutdown_begun, 1);
    note_cancel_start(G.top);
}

static void *shutdown_main(void *arg)
{
    shutter *sh = arg;
    begin_shutdown();
    int rc = weft_runtime_shutdown(sh->rt);
    CHECK(rc == 0, "weft_runtime_shutdown returned %d", rc);
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* One iteration                                                                               */
/* ------------------------------------------------------------------------------------------ */

static void draw_params(params *p, uint64_t seed)
{
    rng r = {seed};
    memset(p, 0, sizeof(*p));
    p->seed = seed;
    p->workers = 1 + below(&r, 4);
    p->chaos = chance(&r, 30);
    p->mode = chance(&r, 25) ? MODE_SUBMIT : MODE_RUN;
    p->submit_race = chance(&r, 50);
    p->nsubmitters = 1 + below(&r, MAX_SUBMITTERS);
    switch (below(&r, 6)) {
    case 0:
        p->max_nodes = 5 + below(&r, 100);
        break;
    case 1:
        p->max_nodes = 100 + below(&r, NODE_CAP > 2000 ? 900 : NODE_CAP / 2);
        break;
    default:
        p->max_nodes = NODE_CAP > 2000 ? 1000 + below(&r, NODE_CAP - 1000)
                                       : NODE_CAP / 2 + below(&r, NODE_CAP / 2);
        break;
    }
    p->rounds = chance(&r, 80) ? 64 : 1;
    p->max_depth = 1 + below(&r, 8);
    p->width = 1 + below(&r, chance(&r, 30) ? 40 : 10);
    p->leaf_pct = 20 + below(&r, 60);
    p->max_steps = 2 + below(&r, 8);
    p->open_pct = 20 + below(&r, 40);
    p->deadline_pct = chance(&r, 30) ? 0 : below(&r, 40);
    p->shield_pct = chance(&r, 50) ? 0 : below(&r, 25);
    p->maxc_pct = chance(&r, 50) ? 0 : below(&r, 40);
    p->collect_pct = below(&r, 100);
    p->cancel_pct = chance(&r, 40) ? 0 : below(&r, 30);
    p->fail_pct = chance(&r, 30) ? 0 : below(&r, 40);
    p->sleep_pct = 5 + below(&r, 20);
    p->sem_pct = below(&r, 8);
    p->blocking_pct = chance(&r, 50) ? 0 : below(&r, 3);
    p->foreign_gap_us = chance(&r, 50) ? 0 : 200 + below(&r, 5000);
    p->nsems = below(&r, 5);
    for (unsigned i = 0; i < 4; i++)
        p->tokens[i] = 1 + below(&r, 4);
    if (chance(&r, 20))
        p->stack_size = (size_t)(SLOW_BUILD ? 96 + below(&r, 160) : 48 + below(&r, 208)) * 1024;
    p->blocking_threads = chance(&r, 30) ? 1 + below(&r, 4) : 0;
    p->watchdog_ns = chance(&r, 50) ? -1 : 0;
    p->nchans = chance(&r, 40) ? 0 : 1 + below(&r, MAX_CHANS);
    p->chan_pct = p->nchans ? 2 + below(&r, 10) : 0;
    for (unsigned i = 0; i < MAX_CHANS; i++)
        p->capacity[i] = chance(&r, 40) ? 0 : 1 + below(&r, 8);
    p->close_pct = chance(&r, 70) ? 0 : 1 + below(&r, 3);
    p->kit_pct = chance(&r, 50) ? 0 : 1 + below(&r, 6);
}

static void reset_iteration(void)
{
    unsigned used = atomic_load(&G.nodes_used);
    if (used > NODE_CAP)
        used = NODE_CAP;
    for (unsigned i = 0; i < used; i++) {
        node *n = &G.nodes[i];
        free(n->msg);
        for (size_t j = 0; j < n->ngroup; j++) {
            free(n->group[j].msg);
            free(n->group[j].task);
            free(n->group[j].scope);
        }
        free(n->group);
    }
    memset(G.nodes, 0, used * sizeof(node));
    unsigned sused = atomic_load(&G.srecs_used);
    if (sused > SREC_CAP)
        sused = SREC_CAP;
    memset(G.srecs, 0, sused * sizeof(srec));
    atomic_store(&G.nodes_used, 0);
    atomic_store(&G.srecs_used, 0);
    atomic_store(&G.stop_foreign, 0);
    atomic_store(&G.shutdown_begun, 0);
    atomic_store(&G.release_sentinel, 0);
    unsigned items = atomic_load(&G.items_used);
    if (items > ITEM_CAP)
        items = ITEM_CAP;
    memset(G.item_state, 0, items);
    memset(G.item_received, 0, items);
    atomic_store(&G.items_used, 0);
    atomic_store(&G.mutex_held, 0);
    atomic_store(&G.event_sets, 0);
    G.top = NULL;
}

static void end_checks(void)
{
    unsigned used = atomic_load(&G.nodes_used);
    if (used > G.nodes_cap)
        used = G.nodes_cap;
    for (unsigned i = 0; i < used; i++) {
        node *n = &G.nodes[i];
        int rc = atomic_load(&n->spawn_rc);
        int runs = atomic_load(&n->runs);
        if (rc == SPAWN_PENDING)
            continue; /* allocated, never spawned */
        if (rc == 0)
            CHECK(runs == 1 && atomic_load(&n->done), "node %u: spawned, ran %d times", i, runs);
        else
            CHECK(runs == 0, "node %u: spawn refused with %d, but it ran", i, rc);
    }
    for (unsigned i = 0; i < G.p.nsems; i++) {
        semrec *s = &G.sems[i];
        CHECK(atomic_load(&s->held) == 0, "semaphore %u: %d tokens still held", i,
              atomic_load(&s->held));
        unsigned avail = weft_sem_available(s->sem);
        CHECK(avail == s->tokens, "semaphore %u: %u of %u tokens came back", i, avail, s->tokens);
        int rc = weft_sem_release(s->sem);
        CHECK(rc == -EOVERFLOW, "release of a full semaphore returned %d", rc);
        rc = weft_sem_destroy(s->sem);
        CHECK(rc == 0, "weft_sem_destroy returned %d", rc);
    }
    CHECK(atomic_load(&G.blocking_inflight) == 0, "weft_blocking calls still in flight");

    /* What the tasks left in the channels is taken here, from this plain thread; then every id
     * must have been received exactly as often as its send says. */
    for (unsigned i = 0; i < G.p.nchans; i++) {
        chanrec *ch = &G.chans[i];
        uint64_t id;
        int rc;
        while ((rc = weft_chan_try_recv(ch->chan, &id)) == 0)
            item_received(ch, id);
        CHECK(rc == -EAGAIN || rc == -EPIPE, "weft_chan_try_recv (drain) returned %d", rc);
        rc = weft_chan_close(ch->chan);
        CHECK(rc == 0 || rc == -EALREADY, "weft_chan_close (end) returned %d", rc);
        CHECK(weft_chan_try_recv(ch->chan, &id) == -EPIPE, "a closed, drained channel");
        CHECK(atomic_load(&ch->received) == atomic_load(&ch->sent),
              "channel %u: %ld items sent, %ld received", i, atomic_load(&ch->sent),
              atomic_load(&ch->received));
        rc = weft_chan_destroy(ch->chan);
        CHECK(rc == 0, "weft_chan_destroy returned %d", rc);
    }
    unsigned items = atomic_load(&G.items_used);
    if (items > ITEM_CAP)
        items = ITEM_CAP;
    for (unsigned id = 0; id < items; id++) {
        int st = atomic_load(&G.item_state[id]), got = atomic_load(&G.item_received[id]);
        CHECK(st == ITEM_SENT || st == ITEM_NOT_SENT, "item %u: its send never returned", id);
        CHECK(got == (st == ITEM_SENT), "item %u: %s, received %d times", id,
              st == ITEM_SENT ? "sent" : "not sent", got);
    }
    if (G.mutex) {
        CHECK(atomic_load(&G.mutex_held) == 0, "the mutex is held at the end");
        int rc = weft_mutex_destroy(G.mutex);
        CHECK(rc == 0, "weft_mutex_destroy returned %d", rc);
        rc = weft_event_destroy(G.event);
        CHECK(rc == 0, "weft_event_destroy returned %d", rc);
        G.mutex = NULL;
        G.event = NULL;
    }
}

static int run_iteration(uint64_t seed, long index, int verbose)
{
    reset_iteration();
    G.index = index;
    draw_params(&G.p, seed);
    params *p = &G.p;
    G.nodes_cap = p->max_nodes;
    atomic_store(&G.failures, 0);
    weft_time t_start = weft_now();
    atomic_store(&G.iter_started, t_start);
    long spawned_before = atomic_load(&T.spawned);

    for (unsigned i = 0; i < p->nsems; i++) {
        G.sems[i].tokens = p->tokens[i];
        atomic_store(&G.sems[i].held, 0);
        int rc = weft_sem_create(&G.sems[i].sem, p->tokens[i]);
        CHECK(rc == 0, "weft_sem_create returned %d", rc);
    }
    for (unsigned i = 0; i < p->nchans; i++) {
        chanrec *ch = &G.chans[i];
        ch->capacity = p->capacity[i];
        atomic_store(&ch->sent, 0);
        atomic_store(&ch->received, 0);
        int rc = weft_chan_create(&ch->chan, sizeof(uint64_t), ch->capacity);
        CHECK(rc == 0, "weft_chan_create returned %d", rc);
    }
    if (p->kit_pct) {
        int rc = weft_mutex_create(&G.mutex);
        CHECK(rc == 0, "weft_mutex_create returned %d", rc);
        rc = weft_event_create(&G.event);
        CHECK(rc == 0, "weft_event_create returned %d", rc);
    }
    if (p->chaos) {
        char v[32];
        snprintf(v, sizeof(v), "%" PRIu64, (uint64_t)(seed & 0x7fffffffffffull));
        setenv("WEFT_CHAOS", v, 1);
        atomic_fetch_add_explicit(&T.chaos_iters, 1, memory_order_relaxed);
    } else {
        unsetenv("WEFT_CHAOS");
    }
    weft_config cfg = {0};
    cfg.workers = p->workers;
    cfg.stack_size = p->stack_size;
    cfg.blocking_threads = p->blocking_threads;
    cfg.watchdog_ns = p->watchdog_ns;

    G.top = srec_alloc();
    G.top->external = 1;
    G.top->policy = WEFT_COLLECT;

    pthread_t foreign;
    int have_foreign = pthread_create(&foreign, NULL, foreign_main, NULL) == 0;
    CHECK(have_foreign, "pthread_create failed");

    if (p->mode == MODE_RUN) {
        node *root = node_alloc();
        root->home = G.top;
        root->root = 1;
        root->seed = next_rand(&(rng){seed ^ 0x5EEDull});
        int rc = weft_run(&cfg, task_fn, root);
        int ran = atomic_load(&root->runs);
        atomic_store(&root->spawn_rc, ran ? 0 : rc);
        CHECK(ran, "weft_run returned %d without running the root", rc);
        if (ran)
            CHECK(status_ok(root, rc), "weft_run returned %d, the root task returned %d", rc,
                  root->rc);
        atomic_fetch_add_explicit(&T.spawned, 1, memory_order_relaxed);
    } else {
        atomic_fetch_add_explicit(&T.submit_iters, 1, memory_order_relaxed);
        weft_runtime *rt = NULL;
        int rc = weft_runtime_start(&rt, &cfg);
        CHECK(rc == 0 && rt, "weft_runtime_start returned %d", rc);
        if (rc == 0) {
            rng r = {seed ^ 0x5B3Dull};
            node *sentinel = NULL;
            weft_handle *sh = NULL;
            if (p->submit_race) {
                sentinel = node_alloc();
                srec *e = srec_alloc();
                e->external = 1;
                e->policy = WEFT_COLLECT;
                e->parent = G.top;
                sentinel->home = e;
                sentinel->sentinel = 1;
                rc = weft_submit(rt, task_fn, sentinel, &sh);
                atomic_store(&sentinel->spawn_rc, rc);
                CHECK(rc == 0, "weft_submit returned %d", rc);
                atomic_fetch_add_explicit(&T.spawned, 1, memory_order_relaxed);
            }
            submitter sb[MAX_SUBMITTERS];
            for (unsigned i = 0; i < p->nsubmitters; i++) {
                sb[i].seed = next_rand(&r);
                sb[i].rt = rt;
                sb[i].count = 1 + below(&r, MAX_SUBMITS);
                rc = pthread_create(&sb[i].th, NULL, submitter_main, &sb[i]);
                CHECK(rc == 0, "pthread_create failed");
            }
            shutter shut = {.rt = rt};
            int racing = p->submit_race && rc == 0 && sh;
            if (racing) {
                sleep_us(below(&r, 3000));
                rc = pthread_create(&shut.th, NULL, shutdown_main, &shut);
                CHECK(rc == 0, "pthread_create failed");
                racing = rc == 0;
            }
            for (unsigned i = 0; i < p->nsubmitters; i++)
                pthread_join(sb[i].th, NULL);
            if (sh) {
                atomic_store(&G.release_sentinel, 1);
                int status = -1;
                rc = weft_handle_wait(sh, WEFT_NEVER, &status);
                CHECK(rc == 0 && status == 0, "sentinel: wait %d, status %d", rc, status);
                weft_handle_release(sh);
            }
            if (racing) {
                pthread_join(shut.th, NULL);
            } else {
                begin_shutdown();
                rc = weft_runtime_shutdown(rt);
                CHECK(rc == 0, "weft_runtime_shutdown returned %d", rc);
            }
        }
        CHECK(weft_runtime_shutdown(NULL) == -EINVAL, "weft_runtime_shutdown(NULL)");
    }

    atomic_store(&G.stop_foreign, 1);
    if (have_foreign)
        pthread_join(foreign, NULL);
    end_checks();
    atomic_store(&G.iter_started, 0);
    if (verbose)
        printf("driver: iteration %ld seed 0x%016" PRIx64
               " %s workers %u%s (budget %u, rounds %u): %ld tasks, %.1f ms\n",
               index, seed,
               p->mode == MODE_RUN ? "run"
               : p->submit_race    ? "submit+race"
                                   : "submit",
               p->workers, p->chaos ? " chaos" : "", p->max_nodes, p->rounds,
               atomic_load(&T.spawned) - spawned_before, (double)(weft_now() - t_start) / 1e6);
    return atomic_load(&G.failures) == 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Main                                                                                        */
/* ------------------------------------------------------------------------------------------ */

static uint64_t master_seed;

/* For a hang report: the tasks that were spawned and have not ended (racy reads: diagnostics). */
static void dump_unfinished(void)
{
    unsigned used = atomic_load(&G.nodes_used), shown = 0;
    if (used > G.nodes_cap)
        used = G.nodes_cap;
    for (unsigned i = 0; i < used && shown < 20; i++) {
        node *n = &G.nodes[i];
        if (atomic_load(&n->spawn_rc) != 0 || atomic_load(&n->done))
            continue;
        shown++;
        srec *h = n->home;
        fprintf(stderr,
                "driver:   task of node %u: runs %d, in %s, depth %d%s%s; its scope %u (%s, "
                "owner node %d, max_concurrency %u, shield %d, cancel %d)\n",
                i, atomic_load(&n->runs), n->where ? n->where : "-", n->depth,
                n->root ? ", root" : "", n->sentinel ? ", sentinel" : "", h ? h->idx : 0,
                h && h->external ? "external" : "opened by a task",
                h && h->owner ? (int)h->owner->idx : -1, h ? h->maxc : 0, h ? h->shield : 0,
                h ? atomic_load(&h->cancel_started) : 0);
    }
    fprintf(stderr, "driver: %u tasks shown of those not ended; shutdown begun %d\n", shown,
            atomic_load(&G.shutdown_begun));
}

static void *hang_main(void *arg)
{
    (void)arg;
    for (;;) {
        sleep_us(1000000);
        int64_t t0 = atomic_load(&G.iter_started);
        if (t0 && weft_now() - t0 > (weft_time)HANG_LIMIT_S * WEFT_SEC) {
            fprintf(stderr,
                    "driver: iteration %ld (iteration seed 0x%016" PRIx64 ") of seed %" PRIu64
                    " has run for over %d s: hung\n"
                    "driver: reproduce with: driver --iteration-seed 0x%016" PRIx64 "\n",
                    G.index, G.p.seed, master_seed, HANG_LIMIT_S, G.p.seed);
            dump_unfinished();
            fflush(stderr);
            abort();
        }
    }
    return NULL;
}

static void usage(void)
{
    fprintf(stderr, "usage: driver [--seed S] [--iterations N] [--seconds T] [--tasks N] "
                    "[--soak] [--iteration-seed X] [--verbose]\n");
    exit(2);
}

static void print_totals(long iterations, double secs)
{
    printf("driver: seed %" PRIu64 ": %ld iterations in %.1f s; %ld tasks spawned, %ld spawns "
           "refused, %ld submitted; %ld scopes, %ld joins (%ld failed, %ld cancelled, %ld timed "
           "out), %ld task cancels, %ld foreign cancels, %ld failures, %ld groups handed up, "
           "%ld sem acquires, %ld items sent and %ld received on channels (%ld selects, %ld "
           "closes), %ld mutex locks, %ld event waits, %ld blocking calls, %ld sleeps; %ld chaos "
           "and %ld submit iterations\n",
           master_seed, iterations, secs, atomic_load(&T.spawned), atomic_load(&T.refused),
           atomic_load(&T.submits), atomic_load(&T.scopes), atomic_load(&T.joins),
           atomic_load(&T.failed_joins), atomic_load(&T.cancelled_joins),
           atomic_load(&T.deadline_joins), atomic_load(&T.cancels), atomic_load(&T.foreign_cancels),
           atomic_load(&T.failures), atomic_load(&T.groups), atomic_load(&T.sem_acquires),
           atomic_load(&T.chan_sent), atomic_load(&T.chan_received), atomic_load(&T.selects),
           atomic_load(&T.chan_closes), atomic_load(&T.mutex_locks), atomic_load(&T.event_waits),
           atomic_load(&T.blocking), atomic_load(&T.sleeps), atomic_load(&T.chaos_iters),
           atomic_load(&T.submit_iters));
    fflush(stdout);
}

int main(int argc, char **argv)
{
    long iterations = 0, tasks = 0;
    double seconds = 0;
    int soak = 0, verbose = 0, have_seed = 0;
    uint64_t iteration_seed = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--seed") && v) {
            master_seed = strtoull(v, NULL, 0);
            have_seed = 1;
            i++;
        } else if (!strcmp(a, "--iterations") && v) {
            iterations = strtol(v, NULL, 0);
            i++;
        } else if (!strcmp(a, "--seconds") && v) {
            seconds = strtod(v, NULL);
            i++;
        } else if (!strcmp(a, "--tasks") && v) {
            tasks = strtol(v, NULL, 0);
            i++;
        } else if (!strcmp(a, "--iteration-seed") && v) {
            iteration_seed = strtoull(v, NULL, 0);
            i++;
        } else if (!strcmp(a, "--soak")) {
            soak = 1;
        } else if (!strcmp(a, "--verbose")) {
            verbose = 1;
        } else {
            usage();
        }
    }
    if (!have_seed)
        master_seed = (uint64_t)weft_now() ^ ((uint64_t)time(NULL) << 20);
    if (!iterations && !seconds && !tasks && !soak)
        iterations = iteration_seed ? 1 : 200;

    pthread_mutex_init(&G.reg_mu, NULL);
    pthread_mutex_init(&G.print_mu, NULL);
    printf("driver: seed %" PRIu64 "%s (reproduce: driver --seed %" PRIu64 ")\n", master_seed,
           iteration_seed ? " (one iteration seed given)" : "", master_seed);
    fflush(stdout);

    pthread_t hang;
    pthread_create(&hang, NULL, hang_main, NULL);
    pthread_detach(hang);

    weft_time start = weft_now(), last_report = start;
    long i;
    for (i = 0;; i++) {
        weft_time now = weft_now();
        double el = (double)(now - start) / 1e9;
        if (iterations && i >= iterations)
            break;
        if (seconds > 0 && el >= seconds)
            break;
        if (tasks && atomic_load(&T.spawned) >= tasks)
            break;
        if (soak && now - last_report >= 10 * WEFT_SEC) {
            last_report = now;
            print_totals(i, el);
        }
        uint64_t s =
            iteration_seed ? iteration_seed : mix64(master_seed * 0x100000001B3ull + (uint64_t)i);
        if (!run_iteration(s, i, verbose)) {
            int nf = atomic_load(&G.failures);
            fprintf(stderr,
                    "driver: FAILED: seed %" PRIu64 ", iteration %ld (iteration seed 0x%016" PRIx64
                    ", %s, %u workers%s): %d check(s) failed\n"
                    "driver: reproduce with: driver --seed %" PRIu64 " --iterations %ld\n"
                    "driver:             or: driver --iteration-seed 0x%016" PRIx64
                    " --iterations 20\n",
                    master_seed, i, s,
                    G.p.mode == MODE_RUN ? "weft_run"
                    : G.p.submit_race    ? "submit, racing shutdown"
                                         : "submit",
                    G.p.workers, G.p.chaos ? ", WEFT_CHAOS" : "", nf, master_seed, i + 1, s);
            print_totals(i + 1, (double)(weft_now() - start) / 1e9);
            return 1;
        }
    }
    double el = (double)(weft_now() - start) / 1e9;
    print_totals(i, el);
    if (tasks && atomic_load(&T.spawned) < tasks)
        printf("driver: note: stopped at %ld of the %ld tasks asked for (time limit)\n",
               atomic_load(&T.spawned), tasks);
    printf("driver: OK\n");
    return 0;
}
