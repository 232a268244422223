// SPDX-License-Identifier: MIT
/*
 * Deadlines read and moved: weft_scope_deadline, weft_scope_effective_deadline,
 * weft_scope_set_deadline and weft_scope_expired.
 *
 * As in test_deadline.c, time is only checked from below: a wake-up may come late on a loaded
 * machine, never early. Where a loaded machine can change which of two outcomes happens (a move
 * that races the timer), the test asserts that the outcome is one of the two and the same for
 * every task, never that a given one happened.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h" /* the library's failure injection */
#include "support_criterion.h"
#include "weft.h"

/* ---- reading ------------------------------------------------------------------------------ */

typedef struct reads {
    weft_time t0;
    weft_time own_outer, eff_outer, own_inner, eff_inner, own_shield, eff_shield, eff_plain;
    weft_time own_after_remove, eff_inner_after_move;
} reads;

static int read_root(void *p)
{
    reads *r = p;
    weft_scope *outer, *inner, *shield, *plain;
    r->t0 = weft_now();
    REQUIRE_EQ(weft_scope_open(&outer, &(weft_scope_opts){.deadline = r->t0 + 10 * WEFT_SEC}), 0);
    REQUIRE_EQ(weft_scope_open(&inner, &(weft_scope_opts){.deadline = r->t0 + 20 * WEFT_SEC}), 0);
    REQUIRE_EQ(weft_scope_open(&shield,
                               &(weft_scope_opts){.deadline = r->t0 + 30 * WEFT_SEC, .shield = 1}),
               0);
    REQUIRE_EQ(weft_scope_open(&plain, NULL), 0);
    r->own_outer = weft_scope_deadline(outer);
    r->eff_outer = weft_scope_effective_deadline(outer);
    r->own_inner = weft_scope_deadline(inner);
    r->eff_inner = weft_scope_effective_deadline(inner);
    r->own_shield = weft_scope_deadline(shield);
    r->eff_shield = weft_scope_effective_deadline(shield);
    r->eff_plain = weft_scope_effective_deadline(plain);
    CHECK_EQ(weft_scope_close(plain), 0);
    CHECK_EQ(weft_scope_close(shield), 0);
    /* Moving the outer one later than the inner's: the inner's own deadline bounds it now. */
    CHECK_EQ(weft_scope_set_deadline(outer, r->t0 + 40 * WEFT_SEC), 0);
    r->eff_inner_after_move = weft_scope_effective_deadline(inner);
    CHECK_EQ(weft_scope_close(inner), 0);
    CHECK_EQ(weft_scope_set_deadline(outer, WEFT_NEVER), 0);
    r->own_after_remove = weft_scope_deadline(outer);
    CHECK_EQ(weft_scope_expired(outer), 0);
    CHECK_EQ(weft_scope_close(outer), 0);
    return 0;
}

Test(deadline_move, own_and_effective_deadlines_read_back)
{
    reads r = {0};
    cr_assert_eq(run_on(1, read_root, &r), 0);
    ASSERT_CHECKS();
    cr_assert_eq(r.own_outer, r.t0 + 10 * WEFT_SEC);
    cr_assert_eq(r.eff_outer, r.t0 + 10 * WEFT_SEC);
    cr_assert_eq(r.own_inner, r.t0 + 20 * WEFT_SEC);
    cr_assert_eq(r.eff_inner, r.t0 + 10 * WEFT_SEC,
                 "a child's deadline is clamped to its parent's");
    cr_assert_eq(r.own_shield, r.t0 + 30 * WEFT_SEC);
    cr_assert_eq(r.eff_shield, r.t0 + 30 * WEFT_SEC, "a shield cuts the chain");
    cr_assert_eq(r.eff_plain, r.t0 + 30 * WEFT_SEC, "inherited from the shielded scope");
    cr_assert_eq(r.eff_inner_after_move, r.t0 + 20 * WEFT_SEC);
    cr_assert_eq(r.own_after_remove, WEFT_NEVER);
}

/* ---- moving it repeatedly while 10,000 tasks sleep under it -------------------------------- */

#define SLEEPERS 10000
#define MOVES 20
#define STEP (50 * WEFT_MSEC)

typedef struct herd {
    atomic_int parked, woken, woke_other;
    weft_time woke_at[SLEEPERS];
    atomic_int next;
    weft_time floor; /* no sleeper may wake before this */
    int expired_early, join, expired;
} herd;

static int herd_sleeper(void *p)
{
    herd *h = p;
    int i = atomic_fetch_add(&h->next, 1);
    atomic_fetch_add(&h->parked, 1);
    int rc = weft_sleep_for(3600 * WEFT_SEC);
    h->woke_at[i] = weft_now();
    if (rc == -ETIMEDOUT)
        atomic_fetch_add(&h->woken, 1);
    else
        atomic_fetch_add(&h->woke_other, 1);
    return 0;
}

static int herd_root(void *p)
{
    herd *h = p;
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(
                   &s, &(weft_scope_opts){.timeout_ns = 3600 * WEFT_SEC, .policy = WEFT_COLLECT}),
               0);
    for (int i = 0; i < SLEEPERS; i++)
        REQUIRE_EQ(weft_spawn(s, herd_sleeper, h), 0);
    /* Every sleeper has started (the root's own yields let them run). */
    while (atomic_load(&h->parked) < SLEEPERS)
        weft_yield();
    weft_time last = 0, before_last = 0;
    for (int m = 0; m < MOVES; m++) {
        weft_time d = weft_now() + STEP;
        CHECK_EQ(weft_scope_set_deadline(s, d), 0);
        before_last = last;
        last = d;
        if (weft_scope_expired(s)) { /* a loaded machine let a deadline pass between moves */
            h->expired_early = 1;
            break;
        }
        weft_sleep_for(STEP / 10);
    }
    /* Cancelled by the last deadline set, or (expired early) by the one before it at least. */
    h->floor = h->expired_early ? before_last : last;
    h->join = weft_scope_join(s);
    h->expired = weft_scope_expired(s);
    CHECK_EQ(weft_scope_release(s), 0);
    return 0;
}

Test(deadline_move, moved_repeatedly_while_ten_thousand_sleep, .timeout = 120)
{
    herd *h = calloc(1, sizeof(*h));
    cr_assert_not_null(h);
    cr_assert_eq(run_on(2, herd_root, h), 0);
    ASSERT_CHECKS();
    cr_assert_eq(atomic_load(&h->woken), SLEEPERS, "every sleeper woken once, by the deadline");
    cr_assert_eq(atomic_load(&h->woke_other), 0);
    cr_assert_eq(h->join, -ETIMEDOUT);
    cr_assert_eq(h->expired, 1);
    for (int i = 0; i < SLEEPERS; i++)
        cr_assert_geq(h->woke_at[i], h->floor, "sleeper %d woke %lld ns before its deadline", i,
                      (long long)(h->floor - h->woke_at[i]));
    free(h);
}

/* ---- moving it into the past --------------------------------------------------------------- */

#define PAST_SLEEPERS 100

typedef struct past {
    atomic_int parked, timed_out;
    int inner_reason, join, expired, set_rc, set_again;
} past;

static int past_sleeper(void *p)
{
    past *ps = p;
    atomic_fetch_add(&ps->parked, 1);
    if (weft_sleep_for(3600 * WEFT_SEC) == -ETIMEDOUT)
        atomic_fetch_add(&ps->timed_out, 1);
    return 0;
}

/* A child with a scope of its own under the moved one: the deadline reaches it too. */
static int past_inner(void *p)
{
    past *ps = p;
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    atomic_fetch_add(&ps->parked, 1);
    if (weft_sleep_for(3600 * WEFT_SEC) == -ETIMEDOUT)
        atomic_fetch_add(&ps->timed_out, 1);
    ps->inner_reason = weft_scope_cancel_reason(s);
    weft_scope_close(s);
    return 0;
}

static int past_root(void *p)
{
    past *ps = p;
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(
                   &s, &(weft_scope_opts){.timeout_ns = 3600 * WEFT_SEC, .policy = WEFT_COLLECT}),
               0);
    for (int i = 0; i < PAST_SLEEPERS; i++)
        REQUIRE_EQ(weft_spawn(s, past_sleeper, ps), 0);
    REQUIRE_EQ(weft_spawn(s, past_inner, ps), 0);
    while (atomic_load(&ps->parked) < PAST_SLEEPERS + 1)
        weft_yield();
    ps->set_rc = weft_scope_set_deadline(s, weft_now() - WEFT_MSEC);
    /* Cancellation is a state: moving it later again changes nothing. */
    ps->set_again = weft_scope_set_deadline(s, WEFT_NEVER);
    ps->join = weft_scope_join(s);
    ps->expired = weft_scope_expired(s);
    CHECK_EQ(weft_scope_release(s), 0);
    return 0;
}

Test(deadline_move, moved_into_the_past_cancels_the_subtree, .timeout = 60)
{
    for (unsigned workers = 1; workers <= 2; workers++) {
        past ps;
        memset(&ps, 0, sizeof(ps));
        cr_assert_eq(run_on(workers, past_root, &ps), 0);
        ASSERT_CHECKS();
        cr_assert_eq(ps.set_rc, 0);
        cr_assert_eq(ps.set_again, 0);
        cr_assert_eq(atomic_load(&ps.timed_out), PAST_SLEEPERS + 1);
        cr_assert_eq(ps.inner_reason, WEFT_CANCEL_DEADLINE);
        cr_assert_eq(ps.join, -ETIMEDOUT);
        cr_assert_eq(ps.expired, 1);
    }
}

/* ---- moving it later races the timer's firing ---------------------------------------------- */

#define RACE_ROUNDS 300
#define RACE_TASKS 8

/* The tasks of a round wait on a gate that only the root opens, after its move: they cannot end
 * by themselves before the deadline's timer fires, however late a loaded machine runs it. A
 * round is then either cancelled for every task or for none. */
typedef struct race {
    weft_sem *gate;
    atomic_int cancelled, finished;
    int rounds_cancelled, rounds_went_on, mixed;
    unsigned seed;
} race;

static int race_sleeper(void *p)
{
    race *r = p;
    int rc = weft_sem_acquire(r->gate);
    if (rc == 0) {
        atomic_fetch_add(&r->finished, 1);
        CHECK_EQ(weft_sem_release(r->gate), 0); /* the next one through */
    } else if (rc == -ETIMEDOUT) {
        atomic_fetch_add(&r->cancelled, 1);
    }
    return 0;
}

static int race_root(void *p)
{
    race *r = p;
    REQUIRE_EQ(weft_sem_create_max(&r->gate, 0, 1), 0);
    for (int round = 0; round < RACE_ROUNDS; round++) {
        atomic_store(&r->cancelled, 0);
        atomic_store(&r->finished, 0);
        r->seed = r->seed * 1103515245u + 12345u;
        weft_time deadline = weft_now() + 200 * 1000;
        weft_scope *s;
        REQUIRE_EQ(
            weft_scope_open(&s, &(weft_scope_opts){.deadline = deadline, .policy = WEFT_COLLECT}),
            0);
        int spawned = 0;
        for (int i = 0; i < RACE_TASKS; i++)
            spawned += weft_spawn(s, race_sleeper, r) == 0; /* refused once the deadline passed */
        /* The move comes about when the timer fires: this worker does not look at its timers
         * while it spins here, so another one takes them over, a millisecond late (sched.c),
         * and the move lands before or after that by up to 0.4 ms. */
        weft_time move_at =
            deadline + WEFT_MSEC - 400 * 1000 + (weft_time)((r->seed >> 8) % 800000);
        while (weft_now() < move_at)
            ;
        CHECK_EQ(weft_scope_set_deadline(s, weft_now() + 3600 * WEFT_SEC), 0);
        /* After the move the timer cannot fire: the scope is cancelled now or never. */
        int expired = weft_scope_expired(s);
        CHECK_EQ(weft_sem_release(r->gate), 0); /* every task still waiting goes through */
        int join = weft_scope_join(s);
        CHECK_EQ(weft_scope_expired(s), expired);
        CHECK_EQ(weft_scope_release(s), 0);
        int c = atomic_load(&r->cancelled), f = atomic_load(&r->finished);
        /* The token back: untaken, or given back by the last task through. */
        CHECK_EQ(weft_sem_try_acquire(r->gate), 0);
        if (expired) {
            r->rounds_cancelled++;
            if (f != 0 || join != -ETIMEDOUT) /* a task not started when cancelled may not run */
                r->mixed++;
        } else {
            r->rounds_went_on++;
            if (c != 0 || f != RACE_TASKS || spawned != RACE_TASKS || join != 0)
                r->mixed++;
        }
    }
    weft_sem_destroy(r->gate);
    return 0;
}

Test(deadline_move, moving_later_while_the_timer_fires_is_all_or_nothing, .timeout = 120)
{
    race r;
    memset(&r, 0, sizeof(r));
    r.seed = 20261206;
    cr_assert_eq(run_on(2, race_root, &r), 0);
    ASSERT_CHECKS();
    cr_log_info("rounds cancelled by the deadline: %d, rounds that went on: %d", r.rounds_cancelled,
                r.rounds_went_on);
    cr_assert_eq(r.mixed, 0, "%d round(s) were cancelled for some tasks only", r.mixed);
    cr_assert_eq(r.rounds_cancelled + r.rounds_went_on, RACE_ROUNDS);
}

/* ---- the idle timeout ---------------------------------------------------------------------- */

#define EVENTS 20
#define IDLE (50 * WEFT_MSEC)

typedef struct idle_case {
    weft_sem *events;
    weft_time posted[EVENTS];
    int seen;
    weft_time last_seen, ended;
    int end_rc, join;
} idle_case;

static int idle_producer(void *p)
{
    idle_case *ic = p;
    for (int i = 0; i < EVENTS; i++) {
        weft_sleep_for(WEFT_MSEC);
        ic->posted[i] = weft_now();
        while (weft_sem_release(ic->events) == -EOVERFLOW) /* the last event not taken yet */
            weft_yield();
    }
    return 0;
}

static int idle_consumer(void *p)
{
    idle_case *ic = p;
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, &(weft_scope_opts){.timeout_ns = IDLE}), 0);
    int rc;
    while ((rc = weft_sem_acquire(ic->events)) == 0) {
        ic->seen++;
        ic->last_seen = weft_now();
        CHECK_EQ(weft_scope_set_deadline(s, ic->last_seen + IDLE), 0);
    }
    ic->ended = weft_now();
    ic->end_rc = rc;
    ic->join = weft_scope_close(s);
    return 0;
}

static int idle_root(void *p)
{
    idle_case *ic = p;
    REQUIRE_EQ(weft_sem_create(&ic->events, 1), 0);
    REQUIRE_EQ(weft_sem_try_acquire(ic->events), 0); /* no event pending at first */
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    REQUIRE_EQ(weft_spawn(s, idle_consumer, ic), 0);
    REQUIRE_EQ(weft_spawn(s, idle_producer, ic), 0);
    CHECK_EQ(weft_scope_close(s), 0);
    weft_sem_destroy(ic->events);
    return 0;
}

Test(deadline_move, idle_timeout_restarted_at_each_event, .timeout = 60)
{
    idle_case ic;
    memset(&ic, 0, sizeof(ic));
    cr_assert_eq(run_on(2, idle_root, &ic), 0);
    ASSERT_CHECKS();
    cr_assert_eq(ic.end_rc, -ETIMEDOUT);
    cr_assert_eq(ic.join, -ETIMEDOUT);
    cr_assert_geq(ic.ended, ic.last_seen + IDLE, "the idle timeout ended early");
    /* Every event was seen, unless the machine held one back longer than the idle time. */
    weft_time max_gap = 0;
    for (int i = 1; i < EVENTS; i++)
        if (ic.posted[i] - ic.posted[i - 1] > max_gap)
            max_gap = ic.posted[i] - ic.posted[i - 1];
    if (max_gap < IDLE / 2)
        cr_assert_eq(ic.seen, EVENTS, "an event was lost (largest gap %lld us)",
                     (long long)(max_gap / 1000));
    cr_assert_gt(ic.seen, 0);
}

/* ---- a move that finds no room for its timer ---- */

static int spin_2ms(void *p)
{
    (void)p;
    weft_time until = weft_now() + 2 * WEFT_MSEC;
    while (weft_now() < until) {
    }
    return 0;
}

static uint64_t timers_on(int worker)
{
    weft_metrics m;
    weft_worker_metrics wm[2];
    if (weft_runtime_metrics(NULL, &m, sizeof m, wm, 2) != 0)
        return UINT64_MAX;
    return wm[worker].timers;
}

typedef struct {
    int moved;   /* the owner ran on another worker than the one holding the scope's timer */
    int filled;  /* that worker's heap was full */
    int rc;      /* weft_scope_set_deadline's */
    int kept;    /* the deadline reads as before */
    int expired; /* the scope timed out all the same */
    int join;
} nomem_move;

/* The scope's timer is armed on one worker; the owner moves to the other (yielding beside busy
 * siblings until a thief takes it), fills that worker's heap (64 timers, its first size) with
 * deadlines of its own and asks for a later deadline while allocations fail. */
static int nomem_move_root(void *p)
{
    nomem_move *c = p;
    weft_time old = weft_now() + 100 * WEFT_SEC;
    weft_scope *s, *busy;
    REQUIRE_EQ(weft_scope_open(&s, &(weft_scope_opts){.deadline = old}), 0);
    int home = weft_worker_index();
    REQUIRE_EQ(weft_scope_open(&busy, NULL), 0);
    for (int i = 0; i < 20000 && weft_worker_index() == home; i++) {
        REQUIRE_EQ(weft_spawn(busy, spin_2ms, NULL), 0);
        REQUIRE_EQ(weft_yield(), 0);
    }
    int here = weft_worker_index();
    c->moved = here != home;
    weft_scope *fill[128];
    int n = 0;
    while (c->moved && n < 128 && timers_on(here) < 64)
        REQUIRE_EQ(weft_scope_open(&fill[n++], &(weft_scope_opts){.timeout_ns = 100 * WEFT_SEC}),
                   0);
    c->filled = timers_on(here) == 64 && weft_worker_index() == here;
    weft__alloc_fail_all(1);
    c->rc = weft_scope_set_deadline(s, weft_now() + 200 * WEFT_SEC);
    weft__alloc_fail_all(0);
    c->kept = weft_scope_deadline(s) == old;
    c->expired = weft_scope_expired(s);
    while (n)
        CHECK_EQ(weft_scope_close(fill[--n]), 0);
    CHECK_EQ(weft_scope_close(busy), 0);
    c->join = weft_scope_close(s);
    return 0;
}

Test(deadline_move, a_move_without_room_for_its_timer_keeps_the_deadline, .timeout = 120)
{
    nomem_move c = {0};
    cr_assert_eq(run_on(2, nomem_move_root, &c), 0);
    ASSERT_CHECKS();
    cr_assert(c.moved, "the owner never left the worker of its scope's timer");
    cr_assert(c.filled, "the heap was not full");
    /* -ENOMEM, or 0 if room was found after all: either way the scope is not timed out. */
    cr_assert(c.rc == -ENOMEM || c.rc == 0, "set_deadline returned %d", c.rc);
    if (c.rc == -ENOMEM)
        cr_assert(c.kept, "the deadline it had was not kept");
    cr_assert_eq(c.expired, 0, "the scope timed out 100 s early");
    cr_assert_eq(c.join, 0, "the join returned %d", c.join);
}
