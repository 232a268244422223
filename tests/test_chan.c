// SPDX-License-Identifier: MIT
/*
 * Channels, select, mutexes, events and semaphores with a maximum, seen through the public API.
 * Tasks record with CHECK; the test asserts once weft_run has returned.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "support_criterion.h"
#include "weft.h"

/* ---- one producer, one consumer: FIFO ------------------------------------------------------- */

#define FIFO_ITEMS 20000

typedef struct fifo {
    weft_chan *c;
    int out_of_order, got;
} fifo;

static int fifo_producer(void *p)
{
    fifo *f = p;
    for (int i = 0; i < FIFO_ITEMS; i++)
        CHECK_EQ(weft_chan_send(f->c, &i), 0);
    CHECK_EQ(weft_chan_close(f->c), 0);
    return 0;
}

static int fifo_consumer(void *p)
{
    fifo *f = p;
    int v, rc;
    while ((rc = weft_chan_recv(f->c, &v)) == 0) {
        if (v != f->got)
            f->out_of_order++;
        f->got++;
    }
    CHECK_EQ(rc, -EPIPE);
    return 0;
}

static int fifo_root(void *p)
{
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    REQUIRE_EQ(weft_spawn(s, fifo_consumer, p), 0);
    REQUIRE_EQ(weft_spawn(s, fifo_producer, p), 0);
    CHECK_EQ(weft_scope_close(s), 0);
    return 0;
}

Test(chan, one_producer_one_consumer_in_order)
{
    size_t caps[] = {0, 1, 4, 1000};
    for (unsigned workers = 1; workers <= 2; workers++)
        for (size_t k = 0; k < sizeof(caps) / sizeof(caps[0]); k++) {
            fifo f = {0};
            cr_assert_eq(weft_chan_create(&f.c, sizeof(int), caps[k]), 0);
            cr_assert_eq(run_on(workers, fifo_root, &f), 0);
            ASSERT_CHECKS();
            cr_assert_eq(f.got, FIFO_ITEMS, "capacity %zu, %u workers", caps[k], workers);
            cr_assert_eq(f.out_of_order, 0);
            cr_assert_eq(weft_chan_destroy(f.c), 0);
        }
}

/* ---- many producers, many consumers: every item once ----------------------------------------- */

#define MP 4
#define MC 4
#define PER_PRODUCER 25000

typedef struct mpmc {
    weft_chan *c;
    atomic_uchar seen[MP * PER_PRODUCER];
    atomic_int twice, received, producers_left;
} mpmc;

static int mpmc_producer(void *p)
{
    mpmc *m = p;
    static atomic_int next_id;
    int base = atomic_fetch_add(&next_id, 1) % MP * PER_PRODUCER;
    for (int i = 0; i < PER_PRODUCER; i++) {
        int v = base + i;
        CHECK_EQ(weft_chan_send(m->c, &v), 0);
    }
    if (atomic_fetch_sub(&m->producers_left, 1) == 1)
        CHECK_EQ(weft_chan_close(m->c), 0);
    return 0;
}

static int mpmc_consumer(void *p)
{
    mpmc *m = p;
    int v;
    while (weft_chan_recv(m->c, &v) == 0) {
        if (atomic_fetch_add(&m->seen[v], 1) != 0)
            atomic_fetch_add(&m->twice, 1);
        atomic_fetch_add(&m->received, 1);
    }
    return 0;
}

static int mpmc_root(void *p)
{
    mpmc *m = p;
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    for (int i = 0; i < MC; i++)
        REQUIRE_EQ(weft_spawn(s, mpmc_consumer, m), 0);
    for (int i = 0; i < MP; i++)
        REQUIRE_EQ(weft_spawn(s, mpmc_producer, m), 0);
    CHECK_EQ(weft_scope_close(s), 0);
    return 0;
}

Test(chan, many_producers_many_consumers_every_item_once, .timeout = 120)
{
    for (size_t cap = 0; cap <= 16; cap += 16) {
        mpmc *m = calloc(1, sizeof(*m));
        cr_assert_not_null(m);
        atomic_store(&m->producers_left, MP);
        cr_assert_eq(weft_chan_create(&m->c, sizeof(int), cap), 0);
        cr_assert_eq(run_on(2, mpmc_root, m), 0);
        ASSERT_CHECKS();
        cr_assert_eq(atomic_load(&m->received), MP * PER_PRODUCER, "capacity %zu", cap);
        cr_assert_eq(atomic_load(&m->twice), 0);
        for (int i = 0; i < MP * PER_PRODUCER; i++)
            cr_assert_eq(atomic_load(&m->seen[i]), 1, "item %d", i);
        cr_assert_eq(weft_chan_destroy(m->c), 0);
        free(m);
    }
}

/* ---- close: buffered items drain, then -EPIPE; waiting senders get -EPIPE ------------------- */

typedef struct closing {
    weft_chan *c;
    atomic_int waiting_senders;
    int sender_rc[3], drained, after;
} closing;

static int blocked_sender(void *p)
{
    closing *cl = p;
    int v = 99;
    int i = atomic_fetch_add(&cl->waiting_senders, 1);
    cl->sender_rc[i] = weft_chan_send(cl->c, &v);
    return 0;
}

static int close_root(void *p)
{
    closing *cl = p;
    for (int i = 1; i <= 2; i++)
        CHECK_EQ(weft_chan_send(cl->c, &i), 0); /* fills it */
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    for (int i = 0; i < 3; i++)
        REQUIRE_EQ(weft_spawn(s, blocked_sender, cl), 0);
    while (atomic_load(&cl->waiting_senders) < 3)
        weft_yield();
    for (int i = 0; i < 20; i++)
        weft_yield();
    CHECK_EQ(weft_chan_close(cl->c), 0);
    CHECK_EQ(weft_scope_close(s), 0);
    int v;
    while (weft_chan_recv(cl->c, &v) == 0)
        cl->drained++;
    cl->after = weft_chan_recv(cl->c, &v);
    int one = 1;
    CHECK_EQ(weft_chan_send(cl->c, &one), -EPIPE);
    CHECK_EQ(weft_chan_try_send(cl->c, &one), -EPIPE);
    return 0;
}

Test(chan, close_drains_then_refuses)
{
    closing cl;
    memset(&cl, 0, sizeof(cl));
    cr_assert_eq(weft_chan_create(&cl.c, sizeof(int), 2), 0);
    cr_assert_eq(run_on(1, close_root, &cl), 0);
    ASSERT_CHECKS();
    for (int i = 0; i < 3; i++)
        cr_assert_eq(cl.sender_rc[i], -EPIPE, "a waiting sender's item was not delivered");
    cr_assert_eq(cl.drained, 2, "the buffered items are still received");
    cr_assert_eq(cl.after, -EPIPE);
    cr_assert_eq(weft_chan_destroy(cl.c), 0);
}

/* ---- cancellation: a cancelled send delivered nothing, a cancelled receive took nothing ------ */

#define CANCEL_ROUNDS 300

typedef struct cancel_case {
    weft_chan *c;
    atomic_long sent, received;
    unsigned seed;
} cancel_case;

static int cancel_sender(void *p)
{
    cancel_case *cc = p;
    for (int i = 0;; i++) {
        int rc = weft_chan_send(cc->c, &i);
        if (rc != 0) {
            CHECK(rc == -ECANCELED);
            return 0;
        }
        atomic_fetch_add(&cc->sent, 1);
    }
}

static int cancel_receiver(void *p)
{
    cancel_case *cc = p;
    int v;
    for (;;) {
        int rc = weft_chan_recv(cc->c, &v);
        if (rc != 0) {
            CHECK(rc == -ECANCELED);
            return 0;
        }
        atomic_fetch_add(&cc->received, 1);
    }
}

static int cancel_root(void *p)
{
    cancel_case *cc = p;
    for (int r = 0; r < CANCEL_ROUNDS; r++) {
        weft_scope *s;
        REQUIRE_EQ(weft_scope_open(&s, &(weft_scope_opts){.policy = WEFT_COLLECT}), 0);
        for (int i = 0; i < 3; i++) {
            REQUIRE_EQ(weft_spawn(s, cancel_sender, cc), 0);
            REQUIRE_EQ(weft_spawn(s, cancel_receiver, cc), 0);
        }
        cc->seed = cc->seed * 1103515245u + 12345u;
        for (unsigned k = (cc->seed >> 8) % 40; k > 0; k--)
            weft_yield();
        CHECK_EQ(weft_scope_cancel(s), 0);
        weft_scope_close(s);
    }
    /* What was sent and not received is still in the channel. */
    int v;
    while (weft_chan_try_recv(cc->c, &v) == 0)
        atomic_fetch_add(&cc->received, 1);
    return 0;
}

Test(chan, cancelled_sends_and_receives_lose_and_double_nothing, .timeout = 120)
{
    for (size_t cap = 0; cap <= 8; cap += 8)
        for (unsigned workers = 1; workers <= 2; workers++) {
            cancel_case cc;
            memset(&cc, 0, sizeof(cc));
            cc.seed = 7 + (unsigned)cap + workers;
            cr_assert_eq(weft_chan_create(&cc.c, sizeof(int), cap), 0);
            cr_assert_eq(run_on(workers, cancel_root, &cc), 0);
            ASSERT_CHECKS();
            cr_assert_gt(atomic_load(&cc.sent), 0);
            cr_assert_eq(atomic_load(&cc.sent), atomic_load(&cc.received),
                         "capacity %zu, %u workers: %ld sent, %ld received", cap, workers,
                         atomic_load(&cc.sent), atomic_load(&cc.received));
            cr_assert_eq(weft_chan_destroy(cc.c), 0);
        }
}

/* ---- select ------------------------------------------------------------------------------------
 */

typedef struct sel {
    weft_chan *a, *b, *out;
    int picked[2], nowait_rc, closed_index, closed_result, send_index;
} sel;

static int sel_root(void *p)
{
    sel *s = p;
    int x = 0, y = 0;
    /* Nothing ready: NOWAIT says so. */
    weft_select_op ops[2] = {{.chan = s->a, .kind = WEFT_SELECT_RECV, .item = &x},
                             {.chan = s->b, .kind = WEFT_SELECT_RECV, .item = &y}};
    s->nowait_rc = weft_select(ops, 2, WEFT_SELECT_NOWAIT);
    /* Both always ready: each is picked now and then. */
    for (int i = 0; i < 200; i++) {
        int one = 1;
        weft_chan_try_send(s->a, &one);
        weft_chan_try_send(s->b, &one);
        int k = weft_select(ops, 2, 0);
        CHECK(k == 0 || k == 1);
        if (k >= 0)
            s->picked[k]++;
        /* Exactly one happened: the other's item is still there. */
        CHECK_EQ(weft_chan_len(s->a) + weft_chan_len(s->b), 1);
        weft_chan_try_recv(k == 0 ? s->b : s->a, &x);
    }
    /* A send clause and a receive clause: the send can happen (room), the receive cannot. */
    int v = 5;
    weft_select_op mixed[2] = {{.chan = s->a, .kind = WEFT_SELECT_RECV, .item = &x},
                               {.chan = s->out, .kind = WEFT_SELECT_SEND, .item = &v}};
    s->send_index = weft_select(mixed, 2, 0);
    /* A closed channel's clause happens with -EPIPE. */
    CHECK_EQ(weft_chan_close(s->b), 0);
    s->closed_index = weft_select(ops, 2, 0);
    s->closed_result = ops[s->closed_index < 0 ? 0 : s->closed_index].result;
    return 0;
}

Test(chan, select_does_exactly_one_clause)
{
    sel s;
    memset(&s, 0, sizeof(s));
    cr_assert_eq(weft_chan_create(&s.a, sizeof(int), 1), 0);
    cr_assert_eq(weft_chan_create(&s.b, sizeof(int), 1), 0);
    cr_assert_eq(weft_chan_create(&s.out, sizeof(int), 1), 0);
    cr_assert_eq(run_on(1, sel_root, &s), 0);
    ASSERT_CHECKS();
    cr_assert_eq(s.nowait_rc, -EAGAIN);
    cr_assert_gt(s.picked[0], 0, "clause 0 starved");
    cr_assert_gt(s.picked[1], 0, "clause 1 starved");
    cr_assert_eq(s.send_index, 1);
    cr_assert_eq(s.closed_index, 1);
    cr_assert_eq(s.closed_result, -EPIPE);
    weft_chan_destroy(s.a);
    weft_chan_destroy(s.b);
    weft_chan_destroy(s.out);
}

/* Two selects of two clauses each, both always ready, one after the other in a loop: each
 * picks both of its clauses (a turn counter shared by all selects started every run of each on
 * the same clause). */
#define PAIR_ROUNDS 2000

typedef struct sel_pair {
    weft_chan *a, *b;
    int picked[2][2];
} sel_pair;

static int sel_pair_root(void *p)
{
    sel_pair *sp = p;
    int v = 1, x;
    for (int i = 0; i < PAIR_ROUNDS; i++)
        for (int k = 0; k < 2; k++) {
            CHECK_EQ(weft_chan_try_send(sp->a, &v), 0);
            CHECK_EQ(weft_chan_try_send(sp->b, &v), 0);
            weft_select_op ops[2] = {{.chan = sp->a, .kind = WEFT_SELECT_RECV, .item = &x},
                                     {.chan = sp->b, .kind = WEFT_SELECT_RECV, .item = &x}};
            int idx = weft_select(ops, 2, 0);
            REQUIRE_EQ(idx == 0 || idx == 1, 1);
            sp->picked[k][idx]++;
            /* Empty both again for the next select. */
            CHECK_EQ(weft_chan_try_recv(idx == 0 ? sp->b : sp->a, &x), 0);
        }
    return 0;
}

Test(chan, selects_in_step_starve_no_clause)
{
    sel_pair sp;
    memset(&sp, 0, sizeof(sp));
    cr_assert_eq(weft_chan_create(&sp.a, sizeof(int), 1), 0);
    cr_assert_eq(weft_chan_create(&sp.b, sizeof(int), 1), 0);
    cr_assert_eq(run_on(1, sel_pair_root, &sp), 0);
    ASSERT_CHECKS();
    for (int k = 0; k < 2; k++)
        for (int c = 0; c < 2; c++)
            cr_assert_gt(sp.picked[k][c], PAIR_ROUNDS / 4, "select %d picked clause %d %d times", k,
                         c, sp.picked[k][c]);
    weft_chan_destroy(sp.a);
    weft_chan_destroy(sp.b);
}

/* A task waiting in a select on two channels: whichever gets an item first wins, and the other
 * channel's item stays where it is. */
typedef struct sel_wait {
    weft_chan *a, *b;
    atomic_int waiting;
    int index, got;
} sel_wait;

static int sel_waiter(void *p)
{
    sel_wait *sw = p;
    int x = -1, y = -1;
    weft_select_op ops[2] = {{.chan = sw->a, .kind = WEFT_SELECT_RECV, .item = &x},
                             {.chan = sw->b, .kind = WEFT_SELECT_RECV, .item = &y}};
    atomic_store(&sw->waiting, 1);
    sw->index = weft_select(ops, 2, 0);
    sw->got = sw->index == 0 ? x : y;
    return 0;
}

static int sel_wait_root(void *p)
{
    sel_wait *sw = p;
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    REQUIRE_EQ(weft_spawn(s, sel_waiter, sw), 0);
    while (!atomic_load(&sw->waiting))
        weft_yield();
    for (int i = 0; i < 20; i++)
        weft_yield();
    int v = 42, w = 43;
    CHECK_EQ(weft_chan_send(sw->b, &v), 0);           /* a rendezvous: the waiter takes it */
    CHECK_EQ(weft_chan_try_send(sw->a, &w), -EAGAIN); /* nobody waits on a any more */
    CHECK_EQ(weft_scope_close(s), 0);
    return 0;
}

Test(chan, select_waits_on_several_channels)
{
    for (unsigned workers = 1; workers <= 2; workers++) {
        sel_wait sw;
        memset(&sw, 0, sizeof(sw));
        cr_assert_eq(weft_chan_create(&sw.a, sizeof(int), 0), 0);
        cr_assert_eq(weft_chan_create(&sw.b, sizeof(int), 0), 0);
        cr_assert_eq(run_on(workers, sel_wait_root, &sw), 0);
        ASSERT_CHECKS();
        cr_assert_eq(sw.index, 1);
        cr_assert_eq(sw.got, 42);
        cr_assert_eq(weft_chan_destroy(sw.a), 0);
        cr_assert_eq(weft_chan_destroy(sw.b), 0);
    }
}

/* ---- a plain thread feeds a pipeline ----------------------------------------------------------
 */

#define FEED 10000

typedef struct feed {
    weft_chan *c;
    long sum;
} feed;

static void *feeder(void *p)
{
    feed *f = p;
    for (int i = 1; i <= FEED; i++)
        while (weft_chan_try_send(f->c, &i) == -EAGAIN)
            sched_yield();
    weft_chan_close(f->c);
    return NULL;
}

static int feed_root(void *p)
{
    feed *f = p;
    int v;
    while (weft_chan_recv(f->c, &v) == 0)
        f->sum += v;
    return 0;
}

Test(chan, a_plain_thread_feeds_tasks)
{
    feed f = {0};
    cr_assert_eq(weft_chan_create(&f.c, sizeof(int), 64), 0);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, feeder, &f), 0);
    cr_assert_eq(run_on(2, feed_root, &f), 0);
    pthread_join(th, NULL);
    cr_assert_eq(f.sum, (long)FEED * (FEED + 1) / 2);
    cr_assert_eq(weft_chan_destroy(f.c), 0);
}

/* ---- mutexes ------------------------------------------------------------------------------------
 */

#define LOCKERS 50
#define LOCK_ROUNDS 400

typedef struct locked {
    weft_mutex *m;
    long counter; /* guarded by m */
    int relock, stray;
} locked;

static int locker(void *p)
{
    locked *l = p;
    for (int i = 0; i < LOCK_ROUNDS; i++) {
        CHECK_EQ(weft_mutex_lock(l->m), 0);
        long c = l->counter;
        if (i % 7 == 0)
            weft_yield(); /* hold it across a switch */
        l->counter = c + 1;
        CHECK_EQ(weft_mutex_unlock(l->m), 0);
    }
    return 0;
}

static int stray_unlocker(void *p)
{
    locked *l = p;
    l->stray = weft_mutex_unlock(l->m);
    return 0;
}

static int lock_root(void *p)
{
    locked *l = p;
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    for (int i = 0; i < LOCKERS; i++)
        REQUIRE_EQ(weft_spawn(s, locker, l), 0);
    CHECK_EQ(weft_scope_close(s), 0);
    CHECK_EQ(weft_mutex_lock(l->m), 0);
    l->relock = weft_mutex_lock(l->m);
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    REQUIRE_EQ(weft_spawn(s, stray_unlocker, l), 0);
    CHECK_EQ(weft_scope_close(s), 0);
    CHECK_EQ(weft_mutex_destroy(l->m), -EBUSY); /* held */
    CHECK_EQ(weft_mutex_unlock(l->m), 0);
    return 0;
}

Test(mutex, excludes_and_refuses_misuse, .timeout = 60)
{
    for (unsigned workers = 1; workers <= 2; workers++) {
        locked l;
        memset(&l, 0, sizeof(l));
        cr_assert_eq(weft_mutex_create(&l.m), 0);
        cr_assert_eq(run_on(workers, lock_root, &l), 0);
        ASSERT_CHECKS();
        cr_assert_eq(l.counter, (long)LOCKERS * LOCK_ROUNDS);
        cr_assert_eq(l.relock, -EDEADLK);
        cr_assert_eq(l.stray, -EPERM);
        cr_assert_eq(weft_mutex_destroy(l.m), 0);
    }
}

/* A task that ends holding a mutex leaves it locked: the next task, which may take over the
 * ended task's record, does not hold it (its lock waits, its unlock is refused). */
typedef struct abandoned {
    weft_mutex *m;
    int lock_rc, unlock_rc;
} abandoned;

static int lock_and_leave(void *p)
{
    abandoned *a = p;
    CHECK_EQ(weft_mutex_lock(a->m), 0);
    return 0; /* without unlocking */
}

static int next_task(void *p)
{
    abandoned *a = p;
    a->unlock_rc = weft_mutex_unlock(a->m);
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, &(weft_scope_opts){.timeout_ns = WEFT_MSEC}), 0);
    a->lock_rc = weft_mutex_lock(a->m);
    weft_scope_close(s);
    return 0;
}

static int abandon_root(void *p)
{
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    REQUIRE_EQ(weft_spawn(s, lock_and_leave, p), 0);
    CHECK_EQ(weft_scope_close(s), 0);
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    REQUIRE_EQ(weft_spawn(s, next_task, p), 0);
    CHECK_EQ(weft_scope_close(s), 0);
    return 0;
}

static weft_mutex *left_locked[2];

Test(mutex, one_left_locked_by_an_ended_task_is_nobody_else_s, .timeout = 60)
{
    for (unsigned workers = 1; workers <= 2; workers++) {
        abandoned a = {0};
        cr_assert_eq(weft_mutex_create(&a.m), 0);
        cr_assert_eq(run_on(workers, abandon_root, &a), 0);
        ASSERT_CHECKS();
        cr_assert_eq(a.unlock_rc, -EPERM, "a task that never locked it unlocked it");
        cr_assert_eq(a.lock_rc, -ETIMEDOUT, "its lock: %d", a.lock_rc);
        cr_assert_eq(weft_mutex_destroy(a.m), -EBUSY);
        left_locked[workers - 1] = a.m; /* locked for good: never freed, kept reachable */
    }
}

/* ---- events and semaphores used as signals --------------------------------------------------- */

typedef struct signal_case {
    weft_event *e;
    weft_sem *sig;
    atomic_int waiting, woken;
    int sem_rc, overflow;
} signal_case;

static int event_waiter(void *p)
{
    signal_case *sc = p;
    atomic_fetch_add(&sc->waiting, 1);
    if (weft_event_wait(sc->e) == 0)
        atomic_fetch_add(&sc->woken, 1);
    return 0;
}

static void *event_setter(void *p)
{
    signal_case *sc = p;
    while (atomic_load(&sc->waiting) < 10)
        sched_yield();
    weft_event_set(sc->e);
    return NULL;
}

static int signal_root(void *p)
{
    signal_case *sc = p;
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    for (int i = 0; i < 10; i++)
        REQUIRE_EQ(weft_spawn(s, event_waiter, sc), 0);
    CHECK_EQ(weft_scope_close(s), 0);
    CHECK_EQ(weft_event_wait(sc->e), 0); /* set: returns at once */
    /* A semaphore of 0 of 1: a signal a plain thread may give. */
    CHECK_EQ(weft_sem_release(sc->sig), 0);
    sc->overflow = weft_sem_release(sc->sig);
    sc->sem_rc = weft_sem_acquire(sc->sig);
    return 0;
}

Test(event, set_from_a_plain_thread_wakes_every_waiter, .timeout = 60)
{
    signal_case sc;
    memset(&sc, 0, sizeof(sc));
    cr_assert_eq(weft_event_create(&sc.e), 0);
    cr_assert_eq(weft_sem_create_max(&sc.sig, 0, 1), 0);
    cr_assert_eq(weft_sem_available(sc.sig), 0);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, event_setter, &sc), 0);
    cr_assert_eq(run_on(2, signal_root, &sc), 0);
    pthread_join(th, NULL);
    ASSERT_CHECKS();
    cr_assert_eq(atomic_load(&sc.woken), 10);
    cr_assert_eq(weft_event_is_set(sc.e), 1);
    cr_assert_eq(weft_event_reset(sc.e), 0);
    cr_assert_eq(weft_event_is_set(sc.e), 0);
    cr_assert_eq(sc.overflow, -EOVERFLOW);
    cr_assert_eq(sc.sem_rc, 0);
    cr_assert_eq(weft_event_destroy(sc.e), 0);
    cr_assert_eq(weft_sem_destroy(sc.sig), 0);
}

/* ---- a woken waiter is out of the channel or event already ----------------------------------- */

typedef struct handed {
    weft_chan *c;
    weft_event *e;
    int64_t got;
    atomic_int parking;
    int recv_rc, wait_rc, chan_destroy_rc, event_destroy_rc;
} handed;

static int handed_receiver(void *p)
{
    handed *h = p;
    atomic_fetch_add(&h->parking, 1);
    h->recv_rc = weft_chan_recv(h->c, &h->got);
    return 0;
}

static int handed_waiter(void *p)
{
    handed *h = p;
    atomic_fetch_add(&h->parking, 1);
    h->wait_rc = weft_event_wait(h->e);
    return 0;
}

/* At one worker the yields run the receiver and the waiter until they park (nothing runs between
 * a count and its park); the send and the set then wake them, and free what they waited on
 * before they run again. A woken task that touched the channel or the event after its waker
 * returned would read freed memory (ASan says so), and the destroys would refuse (-EBUSY), as
 * they did while each woken task took the lock again. */
static int handed_root(void *p)
{
    handed *h = p;
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    REQUIRE_EQ(weft_spawn(s, handed_receiver, h), 0);
    REQUIRE_EQ(weft_spawn(s, handed_waiter, h), 0);
    while (atomic_load(&h->parking) < 2)
        weft_yield();
    int64_t item = 42;
    CHECK_EQ(weft_chan_send(h->c, &item), 0);
    h->chan_destroy_rc = weft_chan_destroy(h->c);
    CHECK_EQ(weft_event_set(h->e), 0);
    h->event_destroy_rc = weft_event_destroy(h->e);
    CHECK_EQ(weft_scope_close(s), 0);
    return 0;
}

Test(chan, a_woken_waiter_leaves_nothing_behind)
{
    handed h;
    memset(&h, 0, sizeof(h));
    h.recv_rc = h.wait_rc = 1;
    cr_assert_eq(weft_chan_create(&h.c, sizeof(int64_t), 0), 0);
    cr_assert_eq(weft_event_create(&h.e), 0);
    cr_assert_eq(run_on(1, handed_root, &h), 0);
    ASSERT_CHECKS();
    cr_assert_eq(h.chan_destroy_rc, 0);
    cr_assert_eq(h.event_destroy_rc, 0);
    cr_assert_eq(h.recv_rc, 0);
    cr_assert_eq(h.got, 42);
    cr_assert_eq(h.wait_rc, 0);
}

/* ---- items of every size, through a ring that wraps --------------------------------------------
 * A send with room and a receive with an item take a short path for items of 4, 8 and 16 bytes
 * and the general one for the rest: both keep the bytes and the order, across the ring's wrap. */

#define SIZED_ITEMS 3000
#define SIZED_MAX 64

typedef struct sized {
    weft_chan *c;
    size_t size;
    int got, wrong;
} sized;

/* Item i's bytes: different in every byte and from item to item. */
static void sized_stamp(unsigned char *buf, size_t size, int i)
{
    for (size_t b = 0; b < size; b++)
        buf[b] = (unsigned char)(i * 31 + (int)b * 7 + 1);
}

static int sized_producer(void *p)
{
    sized *z = p;
    unsigned char buf[SIZED_MAX];
    for (int i = 0; i < SIZED_ITEMS; i++) {
        sized_stamp(buf, z->size, i);
        CHECK_EQ(weft_chan_send(z->c, buf), 0);
    }
    CHECK_EQ(weft_chan_close(z->c), 0);
    return 0;
}

static int sized_consumer(void *p)
{
    sized *z = p;
    unsigned char buf[SIZED_MAX + 1], want[SIZED_MAX];
    int rc;
    buf[z->size] = 0xA5; /* a receive writes the item's size, not a byte more */
    while ((rc = weft_chan_recv(z->c, buf)) == 0) {
        sized_stamp(want, z->size, z->got);
        if (memcmp(buf, want, z->size) != 0 || buf[z->size] != 0xA5)
            z->wrong++;
        z->got++;
    }
    CHECK_EQ(rc, -EPIPE);
    return 0;
}

static int sized_root(void *p)
{
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    REQUIRE_EQ(weft_spawn(s, sized_consumer, p), 0);
    REQUIRE_EQ(weft_spawn(s, sized_producer, p), 0);
    CHECK_EQ(weft_scope_close(s), 0);
    return 0;
}

Test(chan, items_of_every_size_arrive_whole_and_in_order)
{
    size_t sizes[] = {1, 3, 4, 8, 12, 16, 24, SIZED_MAX};
    size_t caps[] = {1, 3, 64};
    for (unsigned workers = 1; workers <= 2; workers++)
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
            for (size_t k = 0; k < sizeof(caps) / sizeof(caps[0]); k++) {
                sized z = {.size = sizes[i]};
                cr_assert_eq(weft_chan_create(&z.c, z.size, caps[k]), 0);
                cr_assert_eq(run_on(workers, sized_root, &z), 0);
                ASSERT_CHECKS();
                cr_assert_eq(z.got, SIZED_ITEMS, "size %zu, capacity %zu, %u workers", z.size,
                             caps[k], workers);
                cr_assert_eq(z.wrong, 0, "size %zu, capacity %zu, %u workers: %d items changed",
                             z.size, caps[k], workers, z.wrong);
                cr_assert_eq(weft_chan_destroy(z.c), 0);
            }
}

/* ---- a cancel reaches an operation that could happen at once -----------------------------------
 * Room and an item are both there; a task whose scope (or an enclosing one) was cancelled, or
 * whose deadline passed, still gets the cancel code and moves nothing, like every suspension
 * point. Each task first sends and receives once, so that what it knows of its scope's state is
 * fresh ("not cancelled") when the cancel comes. */

typedef struct refusal {
    weft_chan *c; /* capacity 4, one item in it between the steps */
    weft_scope *outer;
    int own_send, own_recv, outer_send, outer_recv, timed_send, timed_recv, timed_sleep;
    size_t len_after[3];
} refusal;

/* Sends and receives once (the channel keeps one item), then cancels `victim` (NULL: waits for
 * its own deadline), then tries both again. */
static void refuse_after(refusal *r, weft_scope *victim, int *send_rc, int *recv_rc, size_t *len)
{
    int v = 7, got = 0;
    CHECK_EQ(weft_chan_send(r->c, &v), 0);
    CHECK_EQ(weft_chan_recv(r->c, &got), 0);
    if (victim)
        CHECK_EQ(weft_scope_cancel(victim), 0);
    else
        r->timed_sleep = weft_sleep_for(3600 * 1000000000LL);
    *send_rc = weft_chan_send(r->c, &v);
    *recv_rc = weft_chan_recv(r->c, &got);
    *len = weft_chan_len(r->c);
}

static int refuse_own(void *p)
{
    refusal *r = p;
    refuse_after(r, weft_current_scope(), &r->own_send, &r->own_recv, &r->len_after[0]);
    return 0;
}

static int refuse_outer(void *p)
{
    refusal *r = p;
    refuse_after(r, r->outer, &r->outer_send, &r->outer_recv, &r->len_after[1]);
    return 0;
}

static int refuse_timed(void *p)
{
    refusal *r = p;
    refuse_after(r, NULL, &r->timed_send, &r->timed_recv, &r->len_after[2]);
    return 0;
}

/* Opens an inner scope under `outer` and runs refuse_outer in it. */
static int refuse_nested(void *p)
{
    weft_scope *inner;
    REQUIRE_EQ(weft_scope_open(&inner, NULL), 0);
    REQUIRE_EQ(weft_spawn(inner, refuse_outer, p), 0);
    weft_scope_close(inner);
    return 0;
}

static int refusal_root(void *p)
{
    refusal *r = p;
    int one = 1;
    REQUIRE_EQ(weft_chan_send(r->c, &one), 0);
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    REQUIRE_EQ(weft_spawn(s, refuse_own, r), 0);
    weft_scope_close(s);
    REQUIRE_EQ(weft_scope_open(&r->outer, NULL), 0);
    REQUIRE_EQ(weft_spawn(r->outer, refuse_nested, r), 0);
    weft_scope_close(r->outer);
    REQUIRE_EQ(weft_scope_open(&s, &(weft_scope_opts){.timeout_ns = 1000000}), 0);
    REQUIRE_EQ(weft_spawn(s, refuse_timed, r), 0);
    weft_scope_close(s);
    return 0;
}

Test(chan, a_cancel_refuses_even_an_operation_that_could_happen_at_once)
{
    for (unsigned workers = 1; workers <= 2; workers++) {
        refusal r;
        memset(&r, 0, sizeof(r));
        cr_assert_eq(weft_chan_create(&r.c, sizeof(int), 4), 0);
        cr_assert_eq(run_on(workers, refusal_root, &r), 0);
        ASSERT_CHECKS();
        cr_assert_eq(r.own_send, -ECANCELED);
        cr_assert_eq(r.own_recv, -ECANCELED);
        cr_assert_eq(r.outer_send, -ECANCELED, "a cancel of an enclosing scope");
        cr_assert_eq(r.outer_recv, -ECANCELED, "a cancel of an enclosing scope");
        cr_assert_eq(r.timed_sleep, -ETIMEDOUT);
        cr_assert_eq(r.timed_send, -ETIMEDOUT, "a deadline that passed");
        cr_assert_eq(r.timed_recv, -ETIMEDOUT, "a deadline that passed");
        for (int i = 0; i < 3; i++)
            cr_assert_eq(r.len_after[i], 1, "case %d: a refused operation moved an item", i);
        cr_assert_eq(weft_chan_len(r.c), 1);
        cr_assert_eq(weft_chan_destroy(r.c), 0);
    }
}
