// SPDX-License-Identifier: MIT
/*
 * Cancellation: waking parked tasks, level-triggered suspension points, spawning into cancelled
 * scopes, cancels from foreign threads, fan-out over a subtree, cancel reasons, shielded scopes
 * and cancels that arrive while the owner waits in its join.
 *
 * No test waits on the OS clock for an event: a root task that must know when its children are
 * parked polls a counter with weft_yield(). With one worker that is exact (a child that bumped the
 * counter right before a suspension point has parked by the time the root runs again); with more
 * workers a cancel may arrive before the child parks, which level-triggered cancellation makes
 * equivalent.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "support_criterion.h"
#include "weft.h"

/* A task that bumps `parked`, sleeps `ns`, and records what the sleep returned. */
typedef struct sleeper {
    atomic_int *parked;
    atomic_int *ended;
    weft_time ns;
    int rc;
    weft_cancel_reason reason;
} sleeper;

static int sleeper_fn(void *p)
{
    sleeper *s = p;
    atomic_fetch_add(s->parked, 1);
    s->rc = weft_sleep_for(s->ns);
    s->reason = weft_cancel_reason_self();
    atomic_fetch_add(s->ended, 1);
    return s->rc;
}

static int count_fn(void *p)
{
    atomic_fetch_add((atomic_int *)p, 1);
    return 0;
}

/* ---- a cancel wakes sleeping tasks ----------------------------------------------------------- */

#define NSLEEP 16

typedef struct wake_case {
    sleeper s[NSLEEP];
    atomic_int parked, ended;
    int join;
    weft_cancel_reason reason;
    size_t errors;
} wake_case;

static int wake_root(void *p)
{
    wake_case *c = p;
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    for (int i = 0; i < NSLEEP; i++) {
        c->s[i] = (sleeper){.parked = &c->parked, .ended = &c->ended, .ns = HOUR, .rc = 1};
        CHECK_EQ(weft_spawn(s, sleeper_fn, &c->s[i]), 0);
    }
    CHECK_EQ(yield_until(&c->parked, NSLEEP), 0);
    CHECK_EQ(weft_scope_cancel(s), 0);
    c->join = weft_scope_join(s);
    c->reason = weft_scope_cancel_reason(s);
    c->errors = weft_scope_error_count(s);
    CHECK_EQ(weft_scope_release(s), 0);
    return 0;
}

static void check_wake(unsigned workers)
{
    static wake_case c;
    memset(&c, 0, sizeof(c));
    cr_assert_eq(run_on(workers, wake_root, &c), 0);
    ASSERT_CHECKS();
    cr_assert_eq(c.join, -ECANCELED);
    cr_assert_eq(c.reason, WEFT_CANCEL_EXPLICIT);
    cr_assert_eq(c.errors, 0, "tasks that ended by the cancel are not failures");
    cr_assert_eq(atomic_load(&c.ended), NSLEEP);
    for (int i = 0; i < NSLEEP; i++) {
        cr_assert_eq(c.s[i].rc, -ECANCELED, "sleeper %d: %d", i, c.s[i].rc);
        cr_assert_eq(c.s[i].reason, WEFT_CANCEL_EXPLICIT, "sleeper %d", i);
    }
}

Test(cancel, wakes_hour_long_sleepers_one_worker, .timeout = 60)
{
    check_wake(1);
}

Test(cancel, wakes_hour_long_sleepers_four_workers, .timeout = 60)
{
    check_wake(4);
}

/* A cancel of more sleepers than a worker's ready queue holds (the rest go through the injection
 * queue) and than the fan-out wakes under one hold of the scope's lock; every other sleeper has a
 * 1 ms deadline, so timers fire while the fan-out runs. Each sleep ends exactly once: by its
 * timer (0) or by the cancel (-ECANCELED). */
#define NHERD 20000

typedef struct herd_case {
    atomic_int parked, by_timer, by_cancel, other;
    int join;
} herd_case;

static int herd_sleeper(void *p)
{
    herd_case *c = p;
    weft_time ns = atomic_fetch_add(&c->parked, 1) % 2 ? WEFT_MSEC : HOUR;
    int rc = weft_sleep_for(ns);
    atomic_fetch_add(rc == 0 ? &c->by_timer : rc == -ECANCELED ? &c->by_cancel : &c->other, 1);
    return 0;
}

static int herd_root(void *p)
{
    herd_case *c = p;
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    for (int i = 0; i < NHERD; i++)
        CHECK_EQ(weft_spawn(s, herd_sleeper, c), 0);
    CHECK_EQ(yield_until(&c->parked, NHERD), 0);
    CHECK_EQ(weft_scope_cancel(s), 0);
    c->join = weft_scope_join(s);
    CHECK_EQ(weft_scope_release(s), 0);
    return 0;
}

Test(cancel, wakes_twenty_thousand_sleepers_while_timers_fire, .timeout = 120)
{
    for (unsigned workers = 1; workers <= 2; workers++) {
        static herd_case c;
        memset(&c, 0, sizeof(c));
        cr_assert_eq(run_on(workers, herd_root, &c), 0);
        ASSERT_CHECKS();
        cr_assert_eq(c.join, -ECANCELED);
        cr_assert_eq(atomic_load(&c.other), 0);
        cr_assert_eq(atomic_load(&c.by_timer) + atomic_load(&c.by_cancel), NHERD);
        cr_assert_geq(atomic_load(&c.by_cancel), NHERD / 2, "the hour-long half ends by cancel");
    }
}

/* ---- level-triggered: every suspension point keeps answering, none suspends ------------------ */

static atomic_int bystander_ran;

static int bystander_fn(void *p)
{
    (void)p;
    atomic_store(&bystander_ran, 1);
    return 0;
}

typedef struct level_case {
    weft_sem *empty, *full;
    atomic_int blocking_calls;
    int bystander_seen; /* bystander_ran as seen at the end of the cancelled task */
    int join;
    size_t errors;
} level_case;

static int level_task(void *p)
{
    level_case *c = p;
    CHECK_EQ(weft_checkpoint(), 0);
    CHECK_EQ(weft_cancel_reason_self(), WEFT_CANCEL_NONE);
    CHECK_EQ(weft_scope_cancel(weft_current_scope()), 0);
    for (int round = 0; round < 5; round++) {
        CHECK_EQ(weft_checkpoint(), -ECANCELED);
        CHECK_EQ(weft_yield(), -ECANCELED);
        CHECK_EQ(weft_sleep_for(HOUR), -ECANCELED);
        CHECK_EQ(weft_sleep_for(0), -ECANCELED);
        CHECK_EQ(weft_sleep_until(weft_now() + HOUR), -ECANCELED);
        CHECK_EQ(weft_sem_acquire(c->empty), -ECANCELED);
        /* A free token is not taken by a cancelled task either. */
        CHECK_EQ(weft_sem_acquire(c->full), -ECANCELED);
        weft_scope *x = NULL;
        CHECK_EQ(weft_scope_open(&x, NULL), -ECANCELED);
        CHECK(x == NULL);
        int res = 12345;
        CHECK_EQ(weft_blocking(count_fn, &c->blocking_calls, &res), -ECANCELED);
        CHECK_EQ(res, 12345);
        CHECK_EQ(weft_cancel_reason_self(), WEFT_CANCEL_EXPLICIT);
    }
    CHECK_EQ(weft_sem_available(c->full), 1);
    CHECK_EQ(weft_sem_available(c->empty), 0);
    c->bystander_seen = atomic_load(&bystander_ran);
    return -ECANCELED;
}

static int level_root(void *p)
{
    level_case *c = p;
    weft_scope *other, *s;
    REQUIRE_EQ(weft_scope_open(&other, NULL), 0);
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    /* The bystander waits in the worker's queue: if any call of the cancelled task suspended, the
     * only worker would run it. */
    CHECK_EQ(weft_spawn(other, bystander_fn, NULL), 0);
    CHECK_EQ(weft_spawn(s, level_task, c), 0);
    c->join = weft_scope_join(s);
    c->errors = weft_scope_error_count(s);
    CHECK_EQ(weft_scope_release(s), 0);
    CHECK_EQ(weft_scope_join(other), 0);
    CHECK_EQ(weft_scope_release(other), 0);
    return 0;
}

Test(cancel, level_triggered_without_suspending, .timeout = 60)
{
    static level_case c;
    cr_assert_eq(weft_sem_create(&c.empty, 0), 0);
    cr_assert_eq(weft_sem_create(&c.full, 1), 0);
    atomic_store(&bystander_ran, 0);
    cr_assert_eq(run_on(1, level_root, &c), 0);
    ASSERT_CHECKS();
    cr_assert_eq(c.bystander_seen, 0, "a cancelled suspension point let another task run");
    cr_assert_eq(atomic_load(&bystander_ran), 1);
    cr_assert_eq(atomic_load(&c.blocking_calls), 0, "weft_blocking ran fn for a cancelled task");
    cr_assert_eq(c.join, -ECANCELED);
    cr_assert_eq(c.errors, 0);
    cr_assert_eq(weft_sem_destroy(c.empty), 0);
    cr_assert_eq(weft_sem_destroy(c.full), 0);
}

/* ---- spawning into a cancelled scope --------------------------------------------------------- */

typedef struct spawn_case {
    atomic_int ran;
} spawn_case;

static int spawn_cancelled_root(void *p)
{
    spawn_case *c = p;
    weft_scope *s, *outer, *inner;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    CHECK_EQ(weft_spawn(s, count_fn, &c->ran), 0); /* before the cancel: runs */
    CHECK_EQ(weft_scope_cancel(s), 0);
    for (int i = 0; i < 10; i++) {
        CHECK_EQ(weft_spawn(s, count_fn, &c->ran), -ECANCELED);
        weft_spawn_opts o = {.name = "refused"};
        CHECK_EQ(weft_spawn_ex(s, count_fn, &c->ran, &o), -ECANCELED);
    }
    CHECK_EQ(weft_scope_join(s), -ECANCELED);
    CHECK_EQ(weft_scope_release(s), 0);

    /* Cancelled through an ancestor. */
    REQUIRE_EQ(weft_scope_open(&outer, NULL), 0);
    REQUIRE_EQ(weft_scope_open(&inner, NULL), 0);
    CHECK_EQ(weft_scope_cancel(outer), 0);
    CHECK_EQ(weft_scope_cancel_reason(inner), WEFT_CANCEL_PARENT);
    CHECK_EQ(weft_spawn(inner, count_fn, &c->ran), -ECANCELED);
    CHECK_EQ(weft_spawn(outer, count_fn, &c->ran), -ECANCELED);
    CHECK_EQ(weft_scope_join(inner), -ECANCELED);
    CHECK_EQ(weft_scope_join(outer), -ECANCELED);
    CHECK_EQ(weft_scope_release(inner), 0);
    CHECK_EQ(weft_scope_release(outer), 0);
    return 0;
}

Test(cancel, spawn_into_cancelled_scope_refused, .timeout = 60)
{
    static spawn_case c;
    cr_assert_eq(run_on(2, spawn_cancelled_root, &c), 0);
    ASSERT_CHECKS();
    cr_assert_eq(atomic_load(&c.ran), 1, "only the spawn before the cancel may run");
}

/* ---- cancel from a foreign pthread ----------------------------------------------------------- */

typedef struct foreign_case {
    sleeper s[NSLEEP];
    atomic_int parked, ended;
    weft_scope *scope;
    int cancel_rc;
    int join;
} foreign_case;

static void *foreign_cancel(void *p)
{
    foreign_case *c = p;
    c->cancel_rc = weft_scope_cancel(c->scope);
    return NULL;
}

static int foreign_root(void *p)
{
    foreign_case *c = p;
    REQUIRE_EQ(weft_scope_open(&c->scope, NULL), 0);
    for (int i = 0; i < NSLEEP; i++) {
        c->s[i] = (sleeper){.parked = &c->parked, .ended = &c->ended, .ns = HOUR, .rc = 1};
        CHECK_EQ(weft_spawn(c->scope, sleeper_fn, &c->s[i]), 0);
    }
    CHECK_EQ(yield_until(&c->parked, NSLEEP), 0);
    pthread_t th;
    REQUIRE_EQ(pthread_create(&th, NULL, foreign_cancel, c), 0);
    /* Park in the join: only the foreign cancel can end it. */
    c->join = weft_scope_join(c->scope);
    pthread_join(th, NULL);
    CHECK_EQ(weft_scope_release(c->scope), 0);
    return 0;
}

Test(cancel, from_foreign_pthread, .timeout = 60)
{
    static foreign_case c;
    cr_assert_eq(run_on(2, foreign_root, &c), 0);
    ASSERT_CHECKS();
    cr_assert_eq(c.cancel_rc, 0);
    cr_assert_eq(c.join, -ECANCELED);
    cr_assert_eq(atomic_load(&c.ended), NSLEEP);
    for (int i = 0; i < NSLEEP; i++)
        cr_assert_eq(c.s[i].rc, -ECANCELED, "sleeper %d: %d", i, c.s[i].rc);
}

/* ---- cancel many times, from many tasks ------------------------------------------------------ */

typedef struct many_case {
    sleeper s[8];
    atomic_int parked, ended;
    weft_scope *target;
    atomic_int cancels_ok;
    int join;
    weft_cancel_reason reason;
    size_t errors;
} many_case;

static int many_canceller(void *p)
{
    many_case *c = p;
    for (int i = 0; i < 250; i++) {
        if (weft_scope_cancel(c->target) == 0)
            atomic_fetch_add(&c->cancels_ok, 1);
        if (i % 16 == 0)
            weft_yield();
    }
    return 0;
}

static int many_root(void *p)
{
    many_case *c = p;
    weft_scope *cancellers;
    /* A scope nests in the opener's innermost open scope: the target is opened second, inside
     * the cancellers' scope, so that cancelling it leaves the cancellers alone. */
    REQUIRE_EQ(weft_scope_open(&cancellers, NULL), 0);
    REQUIRE_EQ(weft_scope_open(&c->target, NULL), 0);
    for (int i = 0; i < 8; i++) {
        c->s[i] = (sleeper){.parked = &c->parked, .ended = &c->ended, .ns = HOUR, .rc = 1};
        CHECK_EQ(weft_spawn(c->target, sleeper_fn, &c->s[i]), 0);
    }
    CHECK_EQ(yield_until(&c->parked, 8), 0);
    for (int i = 0; i < 4; i++)
        CHECK_EQ(weft_spawn(cancellers, many_canceller, c), 0);
    for (int i = 0; i < 100; i++)
        if (weft_scope_cancel(c->target) == 0)
            atomic_fetch_add(&c->cancels_ok, 1);
    c->join = weft_scope_join(c->target);
    /* Joined, not released: cancelling again is allowed and changes nothing. */
    CHECK_EQ(weft_scope_cancel(c->target), 0);
    CHECK_EQ(weft_scope_join(c->target), c->join);
    CHECK_EQ(weft_scope_join(cancellers), 0);
    c->reason = weft_scope_cancel_reason(c->target);
    c->errors = weft_scope_error_count(c->target);
    CHECK_EQ(weft_scope_release(c->target), 0);
    CHECK_EQ(weft_scope_release(cancellers), 0);
    return 0;
}

Test(cancel, many_times_from_many_tasks, .timeout = 60)
{
    static many_case c;
    cr_assert_eq(run_on(4, many_root, &c), 0);
    ASSERT_CHECKS();
    cr_assert_eq(atomic_load(&c.cancels_ok), 4 * 250 + 100);
    cr_assert_eq(c.join, -ECANCELED);
    cr_assert_eq(c.reason, WEFT_CANCEL_EXPLICIT);
    cr_assert_eq(c.errors, 0);
    cr_assert_eq(atomic_load(&c.ended), 8, "every sleeper ends exactly once");
    for (int i = 0; i < 8; i++)
        cr_assert_eq(c.s[i].rc, -ECANCELED);
}

Test(cancel, null_scope_is_einval)
{
    cr_assert_eq(weft_scope_cancel(NULL), -EINVAL);
    cr_assert_eq(weft_scope_cancel_reason(NULL), WEFT_CANCEL_NONE);
}

/* ---- fan-out over a subtree three levels deep ------------------------------------------------ */

#define FAN 3

typedef struct fan_case {
    sleeper leaf[FAN * FAN * FAN];
    atomic_int parked, ended, mids_ended;
    int l1_join[FAN]; /* join of each level-2 scope, by its level-1 owner */
    weft_cancel_reason l2_reason[FAN];
    int l2_join[FAN * FAN]; /* join of each leaf scope, by its level-2 owner */
    weft_cancel_reason l3_reason[FAN * FAN];
    int join;
    weft_cancel_reason reason;
    size_t errors;
} fan_case;

typedef struct fan_node {
    fan_case *c;
    int index;
} fan_node;

static fan_node fan_nodes[FAN + FAN * FAN];

static int fan_level2(void *p)
{
    fan_node *n = p;
    fan_case *c = n->c;
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    for (int i = 0; i < FAN; i++) {
        sleeper *l = &c->leaf[n->index * FAN + i];
        *l = (sleeper){.parked = &c->parked, .ended = &c->ended, .ns = HOUR, .rc = 1};
        CHECK_EQ(weft_spawn(s, sleeper_fn, l), 0);
    }
    int rc = weft_scope_join(s);
    c->l2_join[n->index] = rc;
    c->l3_reason[n->index] = weft_scope_cancel_reason(s);
    CHECK_EQ(weft_scope_release(s), 0);
    atomic_fetch_add(&c->mids_ended, 1);
    return rc;
}

static int fan_level1(void *p)
{
    fan_node *n = p;
    fan_case *c = n->c;
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    for (int i = 0; i < FAN; i++) {
        fan_node *m = &fan_nodes[FAN + n->index * FAN + i];
        *m = (fan_node){.c = c, .index = n->index * FAN + i};
        CHECK_EQ(weft_spawn(s, fan_level2, m), 0);
    }
    int rc = weft_scope_join(s);
    c->l1_join[n->index] = rc;
    c->l2_reason[n->index] = weft_scope_cancel_reason(s);
    CHECK_EQ(weft_scope_release(s), 0);
    atomic_fetch_add(&c->mids_ended, 1);
    return rc;
}

static int fan_root(void *p)
{
    fan_case *c = p;
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    for (int i = 0; i < FAN; i++) {
        fan_nodes[i] = (fan_node){.c = c, .index = i};
        CHECK_EQ(weft_spawn(s, fan_level1, &fan_nodes[i]), 0);
    }
    CHECK_EQ(yield_until(&c->parked, FAN * FAN * FAN), 0);
    CHECK_EQ(weft_scope_cancel(s), 0);
    c->join = weft_scope_join(s);
    c->reason = weft_scope_cancel_reason(s);
    c->errors = weft_scope_error_count(s);
    CHECK_EQ(weft_scope_release(s), 0);
    return 0;
}

static void check_fan(unsigned workers)
{
    static fan_case c;
    memset(&c, 0, sizeof(c));
    cr_assert_eq(run_on(workers, fan_root, &c), 0);
    ASSERT_CHECKS();
    cr_assert_eq(c.join, -ECANCELED);
    cr_assert_eq(c.reason, WEFT_CANCEL_EXPLICIT);
    cr_assert_eq(c.errors, 0);
    cr_assert_eq(atomic_load(&c.ended), FAN * FAN * FAN);
    cr_assert_eq(atomic_load(&c.mids_ended), FAN + FAN * FAN);
    for (int i = 0; i < FAN; i++) {
        cr_assert_eq(c.l1_join[i], -ECANCELED, "level-2 scope %d", i);
        cr_assert_eq(c.l2_reason[i], WEFT_CANCEL_PARENT, "level-2 scope %d", i);
    }
    for (int i = 0; i < FAN * FAN; i++) {
        cr_assert_eq(c.l2_join[i], -ECANCELED, "leaf scope %d", i);
        cr_assert_eq(c.l3_reason[i], WEFT_CANCEL_PARENT, "leaf scope %d", i);
    }
    for (int i = 0; i < FAN * FAN * FAN; i++) {
        cr_assert_eq(c.leaf[i].rc, -ECANCELED, "leaf %d: %d", i, c.leaf[i].rc);
        cr_assert_eq(c.leaf[i].reason, WEFT_CANCEL_PARENT, "leaf %d", i);
    }
}

Test(cancel, subtree_fan_out_three_levels_one_worker, .timeout = 60)
{
    check_fan(1);
}

Test(cancel, subtree_fan_out_three_levels_four_workers, .timeout = 60)
{
    check_fan(4);
}

/* ---- reasons --------------------------------------------------------------------------------- */

typedef struct reason_case {
    atomic_int parked, ended;
    sleeper failfast_sibling, deadline_child;
    weft_cancel_reason fresh_self;
    int failfast_join, deadline_join;
    weft_cancel_reason failfast_reason, deadline_reason;
    size_t failfast_errors;
} reason_case;

static int fail_after_sibling_parks(void *p)
{
    reason_case *c = p;
    if (yield_until(&c->parked, 1))
        return -ENOTRECOVERABLE;
    return -EIO;
}

static int reason_self_fn(void *p)
{
    *(weft_cancel_reason *)p = weft_cancel_reason_self();
    return 0;
}

static int reason_root(void *p)
{
    reason_case *c = p;
    weft_scope *s;

    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    c->fresh_self = (weft_cancel_reason)-1;
    CHECK_EQ(weft_spawn(s, reason_self_fn, &c->fresh_self), 0);
    CHECK_EQ(weft_scope_join(s), 0);
    CHECK_EQ(weft_scope_cancel_reason(s), WEFT_CANCEL_NONE);
    CHECK_EQ(weft_scope_release(s), 0);

    /* FAILURE: a failing child cancels its sibling. */
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    c->failfast_sibling = (sleeper){.parked = &c->parked, .ended = &c->ended, .ns = HOUR};
    CHECK_EQ(weft_spawn(s, sleeper_fn, &c->failfast_sibling), 0);
    CHECK_EQ(weft_spawn(s, fail_after_sibling_parks, c), 0);
    c->failfast_join = weft_scope_join(s);
    c->failfast_reason = weft_scope_cancel_reason(s);
    c->failfast_errors = weft_scope_error_count(s);
    CHECK_EQ(weft_scope_release(s), 0);

    /* DEADLINE: the scope's own timeout. */
    weft_scope_opts o = {.timeout_ns = 20 * WEFT_MSEC};
    REQUIRE_EQ(weft_scope_open(&s, &o), 0);
    c->deadline_child = (sleeper){.parked = &c->parked, .ended = &c->ended, .ns = HOUR};
    int sp = weft_spawn(s, sleeper_fn, &c->deadline_child);
    if (sp == -ETIMEDOUT) {
        /* A machine so loaded that the deadline passed before the spawn: the root, inside the
         * scope, observes the same state the child would have. */
        c->deadline_child.rc = weft_sleep_for(HOUR);
        c->deadline_child.reason = weft_cancel_reason_self();
    } else {
        CHECK_EQ(sp, 0);
    }
    c->deadline_join = weft_scope_join(s);
    c->deadline_reason = weft_scope_cancel_reason(s);
    CHECK_EQ(weft_scope_release(s), 0);
    CHECK_EQ(weft_cancel_reason_self(), WEFT_CANCEL_NONE);
    return 0;
}

Test(cancel, reasons_none_failure_deadline, .timeout = 60)
{
    static reason_case c;
    cr_assert_eq(weft_cancel_reason_self(), WEFT_CANCEL_NONE, "outside a task");
    cr_assert_eq(run_on(2, reason_root, &c), 0);
    ASSERT_CHECKS();
    cr_assert_eq(c.fresh_self, WEFT_CANCEL_NONE);

    cr_assert_eq(c.failfast_join, -EIO);
    cr_assert_eq(c.failfast_reason, WEFT_CANCEL_FAILURE);
    cr_assert_eq(c.failfast_errors, 1);
    cr_assert_eq(c.failfast_sibling.rc, -ECANCELED);
    cr_assert_eq(c.failfast_sibling.reason, WEFT_CANCEL_FAILURE);

    cr_assert_eq(c.deadline_join, -ETIMEDOUT);
    cr_assert_eq(c.deadline_reason, WEFT_CANCEL_DEADLINE);
    cr_assert_eq(c.deadline_child.rc, -ETIMEDOUT);
    cr_assert_eq(c.deadline_child.reason, WEFT_CANCEL_DEADLINE);
}

/* ---- shielded scopes ------------------------------------------------------------------------- */

typedef struct shield_case {
    atomic_int inside, cancelled;
    weft_scope *outer;
    weft_scope *shielded;
    int child_rc;
    int child_saw_cancel_flag;
    weft_time slept;
    int nested_open;
    weft_cancel_reason nested_reason;
    int join_shielded;
    int after_checkpoint, after_yield, after_sleep;
    weft_cancel_reason after_reason, inside_reason, shielded_reason;
    int inside_checkpoint;
    int task_join_outer;
} shield_case;

static int short_sleep_fn(void *p)
{
    int *rc = p;
    *rc = weft_sleep_for(WEFT_MSEC);
    return *rc;
}

/* Opened inside an already cancelled context. */
static int shield_in_cancelled_task(void *p)
{
    shield_case *c = p;
    CHECK_EQ(weft_scope_cancel(weft_current_scope()), 0);
    CHECK_EQ(weft_checkpoint(), -ECANCELED);
    weft_scope *sh;
    weft_scope_opts o = {.shield = 1, .name = "cleanup"};
    REQUIRE_EQ(weft_scope_open(&sh, &o), 0);
    c->inside_checkpoint = weft_checkpoint();
    c->inside_reason = weft_cancel_reason_self();
    weft_time t0 = weft_now();
    CHECK_EQ(weft_sleep_for(2 * WEFT_MSEC), 0);
    c->slept = weft_now() - t0;
    /* A plain scope nested in the shield is not born cancelled. */
    weft_scope *nested;
    c->nested_open = weft_scope_open(&nested, NULL);
    if (c->nested_open == 0) {
        c->nested_reason = weft_scope_cancel_reason(nested);
        CHECK_EQ(weft_spawn(nested, short_sleep_fn, &c->child_rc), 0);
        CHECK_EQ(weft_scope_join(nested), 0);
        CHECK_EQ(weft_scope_release(nested), 0);
    }
    c->shielded_reason = weft_scope_cancel_reason(sh);
    c->join_shielded = weft_scope_join(sh);
    CHECK_EQ(weft_scope_release(sh), 0);
    /* The cancel was kept, not lost: delivered now. */
    c->after_checkpoint = weft_checkpoint();
    c->after_yield = weft_yield();
    c->after_sleep = weft_sleep_for(HOUR);
    c->after_reason = weft_cancel_reason_self();
    return c->after_checkpoint;
}

static int shield_cancelled_root(void *p)
{
    shield_case *c = p;
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    CHECK_EQ(weft_spawn(s, shield_in_cancelled_task, c), 0);
    c->task_join_outer = weft_scope_join(s);
    CHECK_EQ(weft_scope_release(s), 0);
    return 0;
}

Test(cancel, shield_opened_in_cancelled_context, .timeout = 60)
{
    static shield_case c;
    c.child_rc = 1;
    cr_assert_eq(run_on(2, shield_cancelled_root, &c), 0);
    ASSERT_CHECKS();
    cr_assert_eq(c.inside_checkpoint, 0, "the shielded body runs uncancelled");
    cr_assert_eq(c.inside_reason, WEFT_CANCEL_NONE);
    cr_assert_geq(c.slept, 2 * WEFT_MSEC);
    cr_assert_eq(c.nested_open, 0);
    cr_assert_eq(c.nested_reason, WEFT_CANCEL_NONE);
    cr_assert_eq(c.child_rc, 0);
    cr_assert_eq(c.shielded_reason, WEFT_CANCEL_NONE);
    cr_assert_eq(c.join_shielded, 0);
    cr_assert_eq(c.after_checkpoint, -ECANCELED, "the outer cancel was lost");
    cr_assert_eq(c.after_yield, -ECANCELED);
    cr_assert_eq(c.after_sleep, -ECANCELED);
    cr_assert_eq(c.after_reason, WEFT_CANCEL_EXPLICIT);
    cr_assert_eq(c.task_join_outer, -ECANCELED);
}

/* A cancel of the enclosing scope arrives while the task is inside its shield. */
static int shield_child_waits(void *p)
{
    shield_case *c = p;
    while (!atomic_load(&c->cancelled))
        if (weft_yield() != 0)
            return -ENOTRECOVERABLE;
    c->child_saw_cancel_flag = 1;
    c->child_rc = weft_sleep_for(WEFT_MSEC);
    return c->child_rc;
}

static int shield_during_cancel_task(void *p)
{
    shield_case *c = p;
    weft_scope *sh;
    weft_scope_opts o = {.shield = 1};
    REQUIRE_EQ(weft_scope_open(&sh, &o), 0);
    c->shielded = sh;
    CHECK_EQ(weft_spawn(sh, shield_child_waits, c), 0);
    atomic_store(&c->inside, 1);
    while (!atomic_load(&c->cancelled))
        if (weft_yield() != 0)
            break;
    c->inside_checkpoint = weft_checkpoint();
    c->inside_reason = weft_cancel_reason_self();
    weft_time t0 = weft_now();
    CHECK_EQ(weft_sleep_for(WEFT_MSEC), 0);
    c->slept = weft_now() - t0;
    weft_scope *nested;
    c->nested_open = weft_scope_open(&nested, NULL);
    if (c->nested_open == 0) {
        c->nested_reason = weft_scope_cancel_reason(nested);
        CHECK_EQ(weft_scope_release(nested), 0);
    }
    c->shielded_reason = weft_scope_cancel_reason(sh);
    c->join_shielded = weft_scope_join(sh);
    CHECK_EQ(weft_scope_release(sh), 0);
    c->after_checkpoint = weft_checkpoint();
    c->after_yield = weft_yield();
    c->after_sleep = weft_sleep_for(HOUR);
    c->after_reason = weft_cancel_reason_self();
    return 0;
}

static int shield_during_cancel_root(void *p)
{
    shield_case *c = p;
    REQUIRE_EQ(weft_scope_open(&c->outer, NULL), 0);
    CHECK_EQ(weft_spawn(c->outer, shield_during_cancel_task, c), 0);
    CHECK_EQ(yield_until(&c->inside, 1), 0);
    CHECK_EQ(weft_scope_cancel(c->outer), 0);
    atomic_store(&c->cancelled, 1);
    c->task_join_outer = weft_scope_join(c->outer);
    CHECK_EQ(weft_scope_release(c->outer), 0);
    return 0;
}

static void check_shield_during_cancel(unsigned workers)
{
    static shield_case c;
    memset(&c, 0, sizeof(c));
    c.child_rc = 1;
    cr_assert_eq(run_on(workers, shield_during_cancel_root, &c), 0);
    ASSERT_CHECKS();
    cr_assert_eq(c.child_saw_cancel_flag, 1);
    cr_assert_eq(c.inside_checkpoint, 0, "a cancel was invented into the shielded scope");
    cr_assert_eq(c.inside_reason, WEFT_CANCEL_NONE);
    cr_assert_geq(c.slept, WEFT_MSEC);
    cr_assert_eq(c.child_rc, 0, "a child of the shielded scope saw %d", c.child_rc);
    cr_assert_eq(c.nested_open, 0);
    cr_assert_eq(c.nested_reason, WEFT_CANCEL_NONE);
    cr_assert_eq(c.shielded_reason, WEFT_CANCEL_NONE);
    cr_assert_eq(c.join_shielded, 0);
    cr_assert_eq(c.after_checkpoint, -ECANCELED, "the cancel was lost by the shield");
    cr_assert_eq(c.after_yield, -ECANCELED);
    cr_assert_eq(c.after_sleep, -ECANCELED);
    cr_assert_eq(c.after_reason, WEFT_CANCEL_EXPLICIT);
    /* The task handled the cancel and returned 0: the scope still reports its cancel. */
    cr_assert_eq(c.task_join_outer, -ECANCELED);
}

Test(cancel, shield_cancel_arriving_inside_one_worker, .timeout = 60)
{
    check_shield_during_cancel(1);
}

Test(cancel, shield_cancel_arriving_inside_four_workers, .timeout = 60)
{
    check_shield_during_cancel(4);
}

/* An explicit cancel of the shielded scope itself still applies. */
typedef struct shield_explicit_case {
    atomic_int parked, ended;
    sleeper child;
    weft_scope *shielded;
    atomic_int opened;
    int join;
    weft_cancel_reason reason;
} shield_explicit_case;

static int shield_explicit_task(void *p)
{
    shield_explicit_case *c = p;
    weft_scope_opts o = {.shield = 1};
    REQUIRE_EQ(weft_scope_open(&c->shielded, &o), 0);
    c->child = (sleeper){.parked = &c->parked, .ended = &c->ended, .ns = HOUR};
    CHECK_EQ(weft_spawn(c->shielded, sleeper_fn, &c->child), 0);
    atomic_store(&c->opened, 1);
    c->join = weft_scope_join(c->shielded);
    c->reason = weft_scope_cancel_reason(c->shielded);
    CHECK_EQ(weft_scope_release(c->shielded), 0);
    CHECK_EQ(weft_checkpoint(), 0); /* the enclosing scope was never cancelled */
    return 0;
}

static int shield_explicit_root(void *p)
{
    shield_explicit_case *c = p;
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    CHECK_EQ(weft_spawn(s, shield_explicit_task, c), 0);
    CHECK_EQ(yield_until(&c->opened, 1), 0);
    CHECK_EQ(yield_until(&c->parked, 1), 0);
    CHECK_EQ(weft_scope_cancel(c->shielded), 0); /* alive: its owner waits in the join */
    CHECK_EQ(weft_scope_join(s), 0);
    CHECK_EQ(weft_scope_release(s), 0);
    return 0;
}

Test(cancel, shield_explicit_cancel_of_the_shielded_scope_applies, .timeout = 60)
{
    static shield_explicit_case c;
    cr_assert_eq(run_on(2, shield_explicit_root, &c), 0);
    ASSERT_CHECKS();
    cr_assert_eq(c.child.rc, -ECANCELED);
    cr_assert_eq(c.join, -ECANCELED);
    cr_assert_eq(c.reason, WEFT_CANCEL_EXPLICIT);
}

/* ---- cancel while the owner waits in its join ------------------------------------------------ */

typedef struct join_case {
    atomic_int parked, ended, in_join;
    sleeper s[4];
    weft_scope *inner;
    int inner_join;
    weft_cancel_reason inner_reason;
    int task_checkpoint_after;
    int outer_join;
    weft_cancel_reason outer_reason;
    int cancel_inner_only;
} join_case;

static int join_owner_task(void *p)
{
    join_case *c = p;
    REQUIRE_EQ(weft_scope_open(&c->inner, NULL), 0);
    for (int i = 0; i < 4; i++) {
        c->s[i] = (sleeper){.parked = &c->parked, .ended = &c->ended, .ns = HOUR, .rc = 1};
        CHECK_EQ(weft_spawn(c->inner, sleeper_fn, &c->s[i]), 0);
    }
    CHECK_EQ(yield_until(&c->parked, 4), 0);
    atomic_store(&c->in_join, 1); /* no suspension point until the join parks */
    c->inner_join = weft_scope_join(c->inner);
    c->inner_reason = weft_scope_cancel_reason(c->inner);
    CHECK_EQ(weft_scope_release(c->inner), 0);
    c->task_checkpoint_after = weft_checkpoint();
    return 0; /* handled */
}

static int join_root(void *p)
{
    join_case *c = p;
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    CHECK_EQ(weft_spawn(s, join_owner_task, c), 0);
    CHECK_EQ(yield_until(&c->in_join, 1), 0);
    if (c->cancel_inner_only)
        CHECK_EQ(weft_scope_cancel(c->inner), 0); /* alive until its owner's join returns */
    else
        CHECK_EQ(weft_scope_cancel(s), 0);
    c->outer_join = weft_scope_join(s);
    c->outer_reason = weft_scope_cancel_reason(s);
    CHECK_EQ(weft_scope_release(s), 0);
    return 0;
}

static void check_join(unsigned workers, int inner_only)
{
    static join_case c;
    memset(&c, 0, sizeof(c));
    c.cancel_inner_only = inner_only;
    cr_assert_eq(run_on(workers, join_root, &c), 0);
    ASSERT_CHECKS();
    cr_assert_eq(atomic_load(&c.ended), 4, "the join waited for every child");
    for (int i = 0; i < 4; i++)
        cr_assert_eq(c.s[i].rc, -ECANCELED, "sleeper %d: %d", i, c.s[i].rc);
    cr_assert_eq(c.inner_join, -ECANCELED);
    if (inner_only) {
        cr_assert_eq(c.inner_reason, WEFT_CANCEL_EXPLICIT);
        cr_assert_eq(c.task_checkpoint_after, 0);
        cr_assert_eq(c.outer_join, 0);
        cr_assert_eq(c.outer_reason, WEFT_CANCEL_NONE);
    } else {
        cr_assert_eq(c.inner_reason, WEFT_CANCEL_PARENT);
        cr_assert_eq(c.task_checkpoint_after, -ECANCELED);
        cr_assert_eq(c.outer_join, -ECANCELED);
        cr_assert_eq(c.outer_reason, WEFT_CANCEL_EXPLICIT);
    }
}

Test(cancel, owner_cancelled_while_waiting_in_join_one_worker, .timeout = 60)
{
    check_join(1, 0);
}

Test(cancel, owner_cancelled_while_waiting_in_join_four_workers, .timeout = 60)
{
    check_join(4, 0);
}

Test(cancel, joined_scope_cancelled_while_owner_waits_one_worker, .timeout = 60)
{
    check_join(1, 1);
}

Test(cancel, joined_scope_cancelled_while_owner_waits_four_workers, .timeout = 60)
{
    check_join(4, 1);
}

/* ---- outside a task -------------------------------------------------------------------------- */

Test(cancel, suspension_points_outside_a_task_are_eperm)
{
    cr_assert_eq(weft_checkpoint(), -EPERM);
    cr_assert_eq(weft_yield(), -EPERM);
    cr_assert_eq(weft_sleep_for(WEFT_MSEC), -EPERM);
    cr_assert_eq(weft_sleep_until(weft_now() + WEFT_MSEC), -EPERM);
    weft_scope *s = NULL;
    cr_assert_eq(weft_scope_open(&s, NULL), -EPERM);
    cr_assert_null(weft_current_scope());
}

/* ---- a cancel returns only once its whole subtree is cancelled ------------------------------- */

/* Two threads cancel the same tree at once. The one that comes second finds the root cancelled
 * while the first still fans out below it; it must not return before the fan-out is through. */
#define RACE_CHAINS 64
#define RACE_DEPTH 8
#define RACE_ROUNDS 20

typedef struct race_case {
    weft_scope *root;
    weft_scope *scopes[RACE_CHAINS][RACE_DEPTH];
    atomic_int ready;
    atomic_int go;
    atomic_int missed; /* scopes a returned cancel had not reached */
    weft_sem *gate;    /* holds the chains' owners, so that their scopes outlive the checks */
} race_case;

static race_case race;

static int race_chain(void *p)
{
    weft_scope **mine = p;
    for (int d = 0; d < RACE_DEPTH; d++)
        REQUIRE_EQ(weft_scope_open(&mine[d], NULL), 0);
    atomic_fetch_add(&race.ready, 1);
    CHECK_EQ(weft_sleep_for(HOUR), -ECANCELED); /* links the chain into the tree */
    weft_scope *shield;
    REQUIRE_EQ(weft_scope_open(&shield, &(weft_scope_opts){.shield = 1}), 0);
    CHECK_EQ(weft_sem_acquire(race.gate), 0);
    CHECK_EQ(weft_sem_release(race.gate), 0);
    CHECK_EQ(weft_scope_join(shield), 0);
    return 0; /* the chain's scopes are joined and released at exit */
}

static int race_root(void *p)
{
    (void)p;
    weft_scope *r;
    REQUIRE_EQ(weft_scope_open(&r, NULL), 0);
    race.root = r;
    for (int i = 0; i < RACE_CHAINS; i++)
        CHECK_EQ(weft_spawn(r, race_chain, race.scopes[i]), 0);
    CHECK_EQ(weft_scope_join(r), -ECANCELED);
    CHECK_EQ(weft_scope_release(r), 0);
    return 0;
}

static void *race_canceller(void *p)
{
    (void)p;
    while (!atomic_load(&race.go))
        ;
    weft_scope_cancel(race.root);
    int missed = weft_scope_cancel_reason(race.root) == WEFT_CANCEL_NONE;
    for (int i = 0; i < RACE_CHAINS; i++)
        for (int d = 0; d < RACE_DEPTH; d++)
            missed += weft_scope_cancel_reason(race.scopes[i][d]) == WEFT_CANCEL_NONE;
    atomic_fetch_add(&race.missed, missed);
    return NULL;
}

Test(cancel, second_concurrent_cancel_returns_after_the_fan_out, .timeout = 120)
{
    weft_runtime *rt;
    cr_assert_eq(weft_runtime_start(&rt, &(weft_config){.workers = 2}), 0);
    for (int round = 0; round < RACE_ROUNDS; round++) {
        atomic_store(&race.ready, 0);
        atomic_store(&race.go, 0);
        cr_assert_eq(weft_sem_create(&race.gate, 1), 0);
        cr_assert_eq(weft_sem_try_acquire(race.gate), 0); /* closed until the checks are done */
        weft_handle *h;
        cr_assert_eq(weft_submit(rt, race_root, NULL, &h), 0);
        while (atomic_load(&race.ready) < RACE_CHAINS)
            sched_yield();
        pthread_t th[2];
        for (int i = 0; i < 2; i++)
            cr_assert_eq(pthread_create(&th[i], NULL, race_canceller, NULL), 0);
        atomic_store(&race.go, 1);
        for (int i = 0; i < 2; i++)
            pthread_join(th[i], NULL);
        cr_assert_eq(weft_sem_release(race.gate), 0); /* each owner passes it on */
        cr_assert_eq(weft_handle_wait(h, WEFT_NEVER, NULL), 0);
        cr_assert_eq(weft_handle_release(h), 0);
        cr_assert_eq(weft_sem_destroy(race.gate), 0);
        ASSERT_CHECKS();
        cr_assert_eq(atomic_load(&race.missed), 0, "round %d: %d scope(s) not yet cancelled", round,
                     atomic_load(&race.missed));
    }
    cr_assert_eq(weft_runtime_shutdown(rt), 0);
}

/* ---- a signal turned into a cancel: the self-pipe pattern of README.md ("Signals") ------------
 * No weft call is async-signal-safe: the handler only writes a byte to a pipe; a task reads it
 * through weft_blocking and cancels the scope it runs in. The test raises the signal at a worker
 * (the thread running the task that raises it) or at the thread waiting in weft_run. */

static int sig_pipe[2] = {-1, -1};

static void on_signal(int sig)
{
    (void)sig;
    int saved = errno;
    (void)!write(sig_pipe[1], "C", 1);
    errno = saved;
}

static int read_byte(void *arg)
{
    ssize_t n;
    do
        n = read(sig_pipe[0], arg, 1);
    while (n < 0 && errno == EINTR);
    return n == 1 ? 0 : -EIO;
}

#define SIG_WORKERS 16

typedef struct sig_case {
    int at_main; /* signal the thread in weft_run, else the worker of the raising task */
    pthread_t main_thread;
    atomic_int started, ended;
    char watcher_got;
    int watcher_rc, work_rc, join_rc;
    weft_cancel_reason reason, work_reason;
} sig_case;

static int watch_signals(void *p)
{
    sig_case *c = p;
    char got = 0;
    int rc = 0;
    c->watcher_rc = weft_blocking(read_byte, &got, &rc);
    if (c->watcher_rc == 0 && rc == 0 && got == 'C')
        CHECK_EQ(weft_scope_cancel(weft_current_scope()), 0);
    c->watcher_got = got;
    atomic_fetch_add(&c->ended, 1);
    return 0;
}

/* Half of them park, half keep their worker busy, until the cancel. */
static int sig_worker(void *p)
{
    sig_case *c = p;
    int n = atomic_fetch_add(&c->started, 1), rc;
    if (n % 2)
        while ((rc = weft_sleep_for(HOUR)) == 0) {
        }
    else
        while ((rc = weft_yield()) == 0) {
        }
    CHECK_EQ(rc, -ECANCELED);
    atomic_fetch_add(&c->ended, 1);
    return rc;
}

static int sig_root(void *p)
{
    sig_case *c = p;
    weft_scope *s, *work;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    REQUIRE_EQ(weft_spawn(s, watch_signals, c), 0);
    REQUIRE_EQ(weft_scope_open(&work, NULL), 0); /* nested in `s`: its cancel reaches here */
    for (int i = 0; i < SIG_WORKERS; i++)
        CHECK_EQ(weft_spawn(work, sig_worker, c), 0);
    REQUIRE_EQ(yield_until(&c->started, SIG_WORKERS), 0);
    if (c->at_main)
        CHECK_EQ(pthread_kill(c->main_thread, SIGUSR1), 0);
    else
        CHECK_EQ(raise(SIGUSR1), 0);
    c->work_rc = weft_scope_join(work);
    c->work_reason = weft_scope_cancel_reason(work);
    CHECK_EQ(weft_scope_release(work), 0);
    (void)!write(sig_pipe[1], "Q", 1); /* the work ended on its own: let the watcher go */
    c->join_rc = weft_scope_join(s);
    c->reason = weft_scope_cancel_reason(s);
    CHECK_EQ(weft_scope_release(s), 0);
    return 0;
}

static void check_signal_cancels(unsigned workers, int at_main)
{
    static sig_case c;
    memset(&c, 0, sizeof(c));
    c.at_main = at_main;
    c.main_thread = pthread_self();
    cr_assert_eq(pipe2(sig_pipe, O_CLOEXEC), 0);
    struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESTART}, old;
    sigemptyset(&sa.sa_mask);
    cr_assert_eq(sigaction(SIGUSR1, &sa, &old), 0);
    cr_assert_eq(run_on(workers, sig_root, &c), 0);
    sigaction(SIGUSR1, &old, NULL);
    close(sig_pipe[0]);
    close(sig_pipe[1]);
    ASSERT_CHECKS();
    cr_assert_eq(c.watcher_rc, 0);
    cr_assert_eq(c.watcher_got, 'C', "the watcher read '%c'", c.watcher_got);
    cr_assert_eq(c.work_rc, -ECANCELED);
    cr_assert_eq(c.work_reason, WEFT_CANCEL_PARENT);
    cr_assert_eq(c.join_rc, -ECANCELED);
    cr_assert_eq(c.reason, WEFT_CANCEL_EXPLICIT);
    cr_assert_eq(atomic_load(&c.ended), SIG_WORKERS + 1, "a task did not end");
}

Test(cancel, signal_through_a_pipe_cancels_a_scope_raised_at_a_worker, .timeout = 60)
{
    check_signal_cancels(1, 0);
    check_signal_cancels(4, 0);
}

Test(cancel, signal_through_a_pipe_cancels_a_scope_raised_at_the_running_thread, .timeout = 60)
{
    check_signal_cancels(1, 1);
    check_signal_cancels(4, 1);
}

/* ---- a task stays on its scope's parked list between parks ------------------------------------
 * A task that parked once in its cancel scope stays listed there (lib/cancel.h), so a cancel of
 * that scope finds it at its next park without a new registration. The waits that no cancel of
 * the scope may end (a blocking call, the join of the scope, a wait inside a shielded scope)
 * must not be ended by it for being listed. Each case parks the task in the scope first. */

typedef struct listed_case {
    weft_event *first; /* what the task parks on first, so that it is listed */
    weft_event *never; /* never set: the children's cancellable wait */
    weft_event *shielded_ev;
    weft_scope *scope; /* the scope the cancel is for */
    atomic_int in_fn, release_fn, fn_done, joining, children_started, children_done, in_shield,
        nested_returned;
    int blocking_rc, fn_done_at_return, join_rc, children_done_at_join, shielded_rc, again_rc;
} listed_case;

static int listed_blocking_fn(void *p)
{
    listed_case *k = p;
    atomic_store(&k->in_fn, 1);
    while (!atomic_load(&k->release_fn))
        sched_yield();
    atomic_store(&k->fn_done, 1);
    return 0;
}

static int listed_blocker(void *p)
{
    listed_case *k = p;
    CHECK_EQ(weft_event_wait(k->first), 0); /* listed in its scope from here */
    k->blocking_rc = weft_blocking(listed_blocking_fn, k, NULL);
    k->fn_done_at_return = atomic_load(&k->fn_done);
    k->again_rc = weft_event_wait(k->never); /* listed again: the cancel is seen at once */
    return 0;
}

static int listed_blocking_root(void *p)
{
    listed_case *k = p;
    REQUIRE_EQ(weft_scope_open(&k->scope, NULL), 0);
    CHECK_EQ(weft_spawn(k->scope, listed_blocker, k), 0);
    weft_yield(); /* the child parks on `first` (one worker) */
    CHECK_EQ(weft_event_set(k->first), 0);
    while (!atomic_load(&k->in_fn))
        weft_yield();
    CHECK_EQ(weft_scope_cancel(k->scope), 0); /* while the call runs: it must run to its end */
    for (int i = 0; i < 100; i++)
        weft_yield(); /* a premature wake would have run the child by now */
    atomic_store(&k->release_fn, 1);
    CHECK_EQ(weft_scope_close(k->scope), -ECANCELED);
    return 0;
}

static void listed_setup(listed_case *k)
{
    memset(k, 0, sizeof(*k));
    cr_assert_eq(weft_event_create(&k->first), 0);
    cr_assert_eq(weft_event_create(&k->never), 0);
    cr_assert_eq(weft_event_create(&k->shielded_ev), 0);
}

static void listed_teardown(listed_case *k)
{
    weft_event_destroy(k->first);
    weft_event_destroy(k->never);
    weft_event_destroy(k->shielded_ev);
}

/* The cases below: an owner task and a canceller task, side by side in a scope of the root. */
typedef struct listed_pair {
    weft_fn owner, canceller;
    listed_case *k;
} listed_pair;

static int listed_pair_root(void *p)
{
    listed_pair *pair = p;
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    CHECK_EQ(weft_spawn(s, pair->owner, pair->k), 0);
    CHECK_EQ(weft_spawn(s, pair->canceller, pair->k), 0);
    CHECK_EQ(weft_scope_close(s), 0);
    return 0;
}

static int listed_run(unsigned workers, weft_fn owner, weft_fn canceller, listed_case *k)
{
    listed_pair pair = {.owner = owner, .canceller = canceller, .k = k};
    return run_on(workers, listed_pair_root, &pair);
}

Test(cancel, a_listed_task_in_a_blocking_call_is_not_woken_by_its_scope_cancel)
{
    for (unsigned workers = 1; workers <= 2; workers++) {
        listed_case k;
        listed_setup(&k);
        cr_assert_eq(run_on(workers, listed_blocking_root, &k), 0);
        ASSERT_CHECKS();
        cr_assert_eq(k.fn_done_at_return, 1, "weft_blocking returned before its function ended");
        cr_assert_eq(k.blocking_rc, -ECANCELED);
        cr_assert_eq(k.again_rc, -ECANCELED);
        listed_teardown(&k);
    }
}

static int listed_release_wait(void *p)
{
    listed_case *k = p;
    while (!atomic_load(&k->release_fn))
        sched_yield();
    return 0;
}

static int listed_child(void *p)
{
    listed_case *k = p;
    atomic_fetch_add(&k->children_started, 1);
    (void)weft_event_wait(k->never); /* ended by the cancel */
    /* Still running, in a call no cancel ends, when a premature join would return. */
    (void)weft_blocking(listed_release_wait, k, NULL);
    atomic_fetch_add(&k->children_done, 1);
    return 0;
}

static int listed_setter(void *p)
{
    listed_case *k = p;
    return weft_event_set(k->first);
}

/* The owner parks in its scope (so it is listed there), spawns children that wait, and joins; a
 * task outside cancels the scope during the join. */
static int listed_owner(void *p)
{
    listed_case *k = p;
    REQUIRE_EQ(weft_scope_open(&k->scope, NULL), 0);
    CHECK_EQ(weft_spawn(k->scope, listed_setter, k), 0);
    CHECK_EQ(weft_event_wait(k->first), 0); /* listed in k->scope from here */
    for (int i = 0; i < 8; i++)
        CHECK_EQ(weft_spawn(k->scope, listed_child, k), 0);
    while (atomic_load(&k->children_started) < 8)
        weft_yield(); /* they start on stacks of their own: the join then parks */
    atomic_store(&k->joining, 1);
    k->join_rc = weft_scope_close(k->scope);
    k->children_done_at_join = atomic_load(&k->children_done);
    return 0;
}

static int listed_canceller(void *p)
{
    listed_case *k = p;
    while (!atomic_load(&k->joining))
        weft_yield();
    weft_yield(); /* the owner is in its join (one worker) */
    CHECK_EQ(weft_scope_cancel(k->scope), 0);
    for (int i = 0; i < 100; i++)
        weft_yield(); /* a join woken by the cancel would return meanwhile */
    atomic_store(&k->release_fn, 1);
    return 0;
}

Test(cancel, a_listed_owner_s_join_waits_for_every_child_when_its_scope_is_cancelled)
{
    for (unsigned workers = 1; workers <= 2; workers++) {
        listed_case k;
        listed_setup(&k);
        cr_assert_eq(listed_run(workers, listed_owner, listed_canceller, &k), 0);
        ASSERT_CHECKS();
        cr_assert_eq(k.join_rc, -ECANCELED);
        cr_assert_eq(k.children_done_at_join, 8, "the join returned with %d of 8 children ended",
                     k.children_done_at_join);
        listed_teardown(&k);
    }
}

/* The owner parks in its scope, then waits inside a shielded scope of its own; a cancel of the
 * outer scope must not end that wait. */
static int listed_shielded_owner(void *p)
{
    listed_case *k = p;
    REQUIRE_EQ(weft_scope_open(&k->scope, NULL), 0);
    CHECK_EQ(weft_spawn(k->scope, listed_setter, k), 0);
    CHECK_EQ(weft_event_wait(k->first), 0); /* listed in k->scope from here */
    weft_scope *sh;
    REQUIRE_EQ(weft_scope_open(&sh, &(weft_scope_opts){.shield = 1}), 0);
    atomic_store(&k->in_shield, 1);
    k->shielded_rc = weft_event_wait(k->shielded_ev);
    CHECK_EQ(weft_scope_close(sh), 0);
    CHECK_EQ(weft_scope_close(k->scope), -ECANCELED);
    return 0;
}

static int listed_shield_canceller(void *p)
{
    listed_case *k = p;
    while (!atomic_load(&k->in_shield))
        weft_yield();
    weft_yield(); /* the owner waits in its shield (one worker) */
    CHECK_EQ(weft_scope_cancel(k->scope), 0);
    for (int i = 0; i < 20; i++)
        weft_yield(); /* a wrong wake would have ended the shielded wait by now */
    CHECK_EQ(weft_event_set(k->shielded_ev), 0);
    return 0;
}

Test(cancel, a_listed_task_waiting_in_a_shield_is_not_woken_by_the_outer_cancel)
{
    for (unsigned workers = 1; workers <= 2; workers++) {
        listed_case k;
        listed_setup(&k);
        cr_assert_eq(listed_run(workers, listed_shielded_owner, listed_shield_canceller, &k), 0);
        ASSERT_CHECKS();
        cr_assert_eq(k.shielded_rc, 0, "the shielded wait returned %d", k.shielded_rc);
        listed_teardown(&k);
    }
}

/* The owner parks in its scope, then waits in a nested scope of its own; a cancel of the nested
 * scope alone must reach that wait (the owner moved to the nested scope's list). */
static int listed_nested_owner(void *p)
{
    listed_case *k = p;
    weft_scope *outer;
    REQUIRE_EQ(weft_scope_open(&outer, NULL), 0);
    CHECK_EQ(weft_spawn(outer, listed_setter, k), 0);
    CHECK_EQ(weft_event_wait(k->first), 0); /* listed in `outer` from here */
    REQUIRE_EQ(weft_scope_open(&k->scope, NULL), 0);
    atomic_store(&k->in_shield, 1);
    k->shielded_rc = weft_event_wait(k->never);
    atomic_store(&k->nested_returned, 1);
    CHECK_EQ(weft_scope_close(k->scope), -ECANCELED);
    k->again_rc = weft_event_wait(k->shielded_ev); /* back in `outer`, not cancelled */
    CHECK_EQ(weft_scope_close(outer), 0);
    return 0;
}

static int listed_nested_canceller(void *p)
{
    listed_case *k = p;
    while (!atomic_load(&k->in_shield))
        weft_yield();
    weft_yield(); /* the owner waits in the nested scope (one worker) */
    CHECK_EQ(weft_scope_cancel(k->scope), 0);
    while (!atomic_load(&k->nested_returned))
        weft_yield();
    CHECK_EQ(weft_event_set(k->shielded_ev), 0);
    return 0;
}

Test(cancel, a_task_listed_in_an_outer_scope_is_woken_by_a_cancel_of_the_inner_one, .timeout = 30)
{
    for (unsigned workers = 1; workers <= 2; workers++) {
        listed_case k;
        listed_setup(&k);
        cr_assert_eq(listed_run(workers, listed_nested_owner, listed_nested_canceller, &k), 0);
        ASSERT_CHECKS();
        cr_assert_eq(k.shielded_rc, -ECANCELED, "the nested wait returned %d", k.shielded_rc);
        cr_assert_eq(k.again_rc, 0, "the wait in the outer scope returned %d", k.again_rc);
        listed_teardown(&k);
    }
}
