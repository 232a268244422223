// SPDX-License-Identifier: MIT
/*
 * Destroying a semaphore right after its last token was handed to a parked waiter.
 *
 * A waiter queues on a semaphore whose token the root holds. Then the token is released to it
 * (by the root task or by a foreign thread), perhaps with the waiter's scope cancelled just
 * before or just after, and the semaphore is destroyed at once (by the root or by the foreign
 * thread). The woken waiter has yet to leave weft_sem_acquire, which takes the semaphore's lock
 * again: destroy must refuse (-EBUSY) until it has. Whenever destroy returns 0 the record is
 * freed, so a waiter that touches it later is a use after free under ASan; in other builds it
 * locks memory that malloc has reused: a crash, or a spin for ever, which alarm() ends.
 *
 * Part 1, one worker: the woken waiter cannot run before the destroy (the root, or the foreign
 * thread while the root spins without yielding, makes it at once), so the first destroy must be
 * -EBUSY, and every outcome is known: the waiter's result, the tokens left after its scope is
 * joined, and that destroy then returns 0.
 * Part 2, four workers: the waiter runs on another worker while the semaphore is destroyed; the
 * first destroy may be 0 or -EBUSY, and the one after the waiter's scope is joined must be 0.
 *
 * Usage: sem_destroy [rounds [seed]]
 */
#define STRESS_NAME "sem_destroy"
#define STRESS_SEEDED

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../support.h"
#include "weft.h"

#ifdef UNDER_TSAN
#define DEFAULT_ROUNDS 5000
#else
#define DEFAULT_ROUNDS 50000
#endif
#define ONE_WORKER_REPEATS 4

enum { CANCEL_NONE, CANCEL_BEFORE, CANCEL_AFTER, CANCEL_KINDS }; /* the release */
enum { BY_ROOT, BY_FOREIGN };

/* One round's state. */
static struct {
    weft_sem *sem;
    int deterministic; /* part 1 */
    atomic_int queued;
    atomic_int waiter_done;
    int waiter_rc;
} R;

/* The foreign thread's commands, one at a time: the root sets `cmd` and waits for `done`. */
enum { CMD_NONE, CMD_TAKE, CMD_RELEASE, CMD_DESTROY_ONCE, CMD_DESTROY_UNTIL_FREED, CMD_QUIT };
static struct {
    atomic_int cmd;
    atomic_int seq, done;
    int rc;
    long tries;
} F;

static struct {
    atomic_long rounds, busy_first, freed_first, waiter_granted, waiter_cancelled, foreign_tries;
} stats;

/* Tokens the main thread took: a waiter that keeps the token of a semaphore that is then
 * destroyed gives one of these back instead, which evens the count debug builds keep of a
 * task's tokens (a task ending with one is reported). */
static weft_sem *ledger;

/* Stops the program at once: the semaphore is freed and a waiter is about to use it. */
static void freed_under_a_waiter(const char *who)
{
    fprintf(stderr,
            STRESS_NAME " (seed %llu): destroy by the %s returned 0 right after the hand-off, "
                        "before the woken waiter left weft_sem_acquire\n",
            run_seed, who);
    fflush(NULL);
    _exit(1);
}

/* Releases the held token so that it reaches the waiter: a release that finds no waiter queued
 * yet (part 2) is taken back and tried again. Returns once the waiter is inside weft_sem_acquire
 * or past it, so that a destroy from now on cannot come before its first touch. With the
 * waiter's scope cancelled first, the release drops the waiter (part 1: it is queued). */
static void release_to_waiter(int cancelled_first, int foreign)
{
    for (;;) {
        int rc = weft_sem_release(R.sem);
        CHECK(rc == 0, "release returned %d", rc);
        if (cancelled_first || weft_sem_available(R.sem) == 0)
            return; /* handed over (or taken by the waiter's own fast path) */
        CHECK(!R.deterministic, "one worker: the parked waiter did not get the token");
        if (weft_sem_try_acquire(R.sem) != 0)
            return; /* the waiter took it meanwhile */
        if (foreign)
            sched_yield();
        else
            (void)weft_yield();
    }
}

/* The handshakes with the foreign thread sleep on futex words rather than poll with
 * sched_yield: with two busy processes per CPU a yielding thread waits behind them for a time
 * slice at every look, and 50,000 rounds of handshakes took minutes. */
static void word_wait(atomic_int *word, int seen)
{
    syscall(SYS_futex, (int *)word, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
}

static void word_wake(atomic_int *word)
{
    syscall(SYS_futex, (int *)word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static void *foreign_main(void *p)
{
    (void)p;
    int seen = 0;
    for (;;) {
        int seq = atomic_load(&F.seq);
        if (seq == seen) {
            word_wait(&F.seq, seen);
            continue;
        }
        seen = seq;
        switch (atomic_load(&F.cmd)) {
        case CMD_TAKE:
            CHECK(weft_sem_try_acquire(R.sem) == 0, "foreign thread takes the token");
            break;
        case CMD_RELEASE:
            release_to_waiter(0, 1);
            break;
        case CMD_DESTROY_ONCE:
            F.rc = weft_sem_destroy(R.sem);
            if (F.rc == 0 && R.deterministic)
                freed_under_a_waiter("foreign thread");
            break;
        case CMD_DESTROY_UNTIL_FREED:
            /* Retried while the waiter leaves, on another worker or after the root's join. */
            F.tries = 0;
            while ((F.rc = weft_sem_destroy(R.sem)) == -EBUSY) {
                F.tries++;
                sched_yield();
            }
            break;
        case CMD_QUIT:
            atomic_store(&F.done, seq);
            word_wake(&F.done);
            return NULL;
        }
        atomic_store(&F.done, seq);
        word_wake(&F.done);
    }
}

/* Gives the foreign thread `cmd`; returns the number foreign_wait takes. */
static int foreign_post(int cmd)
{
    atomic_store(&F.cmd, cmd);
    int seq = atomic_fetch_add(&F.seq, 1) + 1;
    word_wake(&F.seq);
    return seq;
}

/* Waits for the foreign thread without yielding to weft: on one worker the woken waiter must
 * not run meanwhile. */
static void foreign_wait(int seq)
{
    int done;
    while ((done = atomic_load(&F.done)) < seq)
        word_wait(&F.done, done);
}

static int waiter(void *p)
{
    (void)p;
    atomic_fetch_add(&R.queued, 1);
    int rc = weft_sem_acquire(R.sem);
    R.waiter_rc = rc;
    if (rc == 0)
        CHECK(weft_sem_release(ledger) == 0, "ledger release"); /* see `ledger` */
    atomic_store(&R.waiter_done, 1);
    return 0;
}

static void one_round(int deterministic, int cancel, int releaser, int destroyer)
{
    memset(&R, 0, sizeof(R));
    R.deterministic = deterministic;
    int rc = weft_sem_create(&R.sem, 1);
    CHECK(rc == 0, "sem_create %d", rc);
    if (rc)
        return;
    /* The releaser takes the token, so that debug builds' count of the root's tokens stays even. */
    if (releaser == BY_ROOT)
        CHECK(weft_sem_try_acquire(R.sem) == 0, "root takes the token");
    else
        foreign_wait(foreign_post(CMD_TAKE));
    weft_scope *ws;
    CHECK(weft_scope_open(&ws, NULL) == 0, "open");
    CHECK(weft_spawn(ws, waiter, NULL) == 0, "spawn");
    /* One worker: the waiter has parked once the root runs again. */
    CHECK(yield_until(&R.queued, 1) == 0, "yield");

    if (cancel == CANCEL_BEFORE)
        CHECK(weft_scope_cancel(ws) == 0, "cancel");
    if (releaser == BY_ROOT)
        release_to_waiter(cancel == CANCEL_BEFORE, 0);
    else
        foreign_wait(foreign_post(CMD_RELEASE));
    if (cancel == CANCEL_AFTER)
        CHECK(weft_scope_cancel(ws) == 0, "cancel");

    int first;
    if (destroyer == BY_ROOT) {
        first = weft_sem_destroy(R.sem);
        if (first == 0 && R.deterministic)
            freed_under_a_waiter("releasing task");
    } else {
        foreign_wait(foreign_post(CMD_DESTROY_ONCE));
        first = F.rc;
    }
    CHECK(first == 0 || first == -EBUSY, "destroy returned %d", first);
    atomic_fetch_add(first ? &stats.busy_first : &stats.freed_first, 1);
    int until = 0;
    if (first == -EBUSY && destroyer == BY_FOREIGN)
        until = foreign_post(CMD_DESTROY_UNTIL_FREED);

    int join = weft_scope_join(ws);
    CHECK(weft_scope_release(ws) == 0, "release scope");
    CHECK(atomic_load(&R.waiter_done) == 1, "the waiter did not end");
    int wrc = R.waiter_rc;
    CHECK(join == (cancel == CANCEL_NONE ? 0 : -ECANCELED), "join %d (cancel %d)", join, cancel);
    if (cancel == CANCEL_NONE || (cancel == CANCEL_AFTER && !R.deterministic))
        CHECK(wrc == 0 || (cancel != CANCEL_NONE && wrc == -ECANCELED), "waiter got %d", wrc);
    else /* one worker: woken and cancelled at once passes the token on */
        CHECK(wrc == -ECANCELED, "waiter got %d (cancel %d)", wrc, cancel);
    atomic_fetch_add(wrc ? &stats.waiter_cancelled : &stats.waiter_granted, 1);

    if (first == -EBUSY && destroyer == BY_ROOT) {
        /* The waiter has ended: the token is with it, or back. */
        unsigned avail = weft_sem_available(R.sem);
        CHECK(avail == (wrc == 0 ? 0u : 1u), "%u tokens free, waiter got %d", avail, wrc);
        rc = weft_sem_destroy(R.sem);
        CHECK(rc == 0, "destroy after the waiter ended returned %d", rc);
    } else if (until) {
        foreign_wait(until);
        CHECK(F.rc == 0, "foreign destroy ended with %d", F.rc);
        atomic_fetch_add(&stats.foreign_tries, F.tries);
    }
    atomic_fetch_add(&stats.rounds, 1);
}

typedef struct run_arg {
    int deterministic;
    int rounds;
    uint64_t seed;
} run_arg;

static int root(void *p)
{
    run_arg *a = p;
    if (a->deterministic) {
        for (int rep = 0; rep < ONE_WORKER_REPEATS; rep++)
            for (int cancel = 0; cancel < CANCEL_KINDS; cancel++)
                for (int rel = BY_ROOT; rel <= BY_FOREIGN; rel++)
                    for (int des = BY_ROOT; des <= BY_FOREIGN; des++) {
                        if (cancel == CANCEL_BEFORE && rel == BY_FOREIGN)
                            continue; /* the root releases what it cancelled first */
                        one_round(1, cancel, rel, des);
                        if (atomic_load(&failures))
                            return 0;
                    }
        return 0;
    }
    uint64_t rng = a->seed;
    for (int r = 0; r < a->rounds && atomic_load(&failures) == 0; r++) {
        /* No cancel before the release here: the waiter may not have queued yet, and a cancel
         * it then sees at the start of weft_sem_acquire gives no sign of where it is. */
        int cancel = below(&rng, 2) ? CANCEL_NONE : CANCEL_AFTER;
        one_round(0, cancel, (int)below(&rng, 2), (int)below(&rng, 2));
    }
    return 0;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : DEFAULT_ROUNDS;
    uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 0) : (uint64_t)weft_now();
    run_seed = (unsigned long long)seed;
    printf(STRESS_NAME ": seed %llu\n", run_seed);
    fflush(stdout);
    /* A waiter spinning on a freed lock word would hang the program: end it instead. */
    alarm(100);
    /* Part 1 relies on the order of one worker; chaos mode's random yields would change it. */
    unsetenv("WEFT_CHAOS");

    if (weft_sem_create(&ledger, (unsigned)rounds + 64) != 0)
        return 1;
    for (int i = 0; i < rounds + 64; i++)
        (void)weft_sem_try_acquire(ledger);
    pthread_t th;
    if (pthread_create(&th, NULL, foreign_main, NULL) != 0) {
        fprintf(stderr, STRESS_NAME ": pthread_create failed\n");
        return 1;
    }

    weft_config one = {.workers = 1, .watchdog_ns = -1};
    run_arg a1 = {.deterministic = 1};
    CHECK(weft_run(&one, root, &a1) == 0, "weft_run, one worker");
    if (atomic_load(&failures) == 0) {
        weft_config four = {.workers = 4, .watchdog_ns = -1};
        run_arg a4 = {.rounds = rounds, .seed = seed};
        CHECK(weft_run(&four, root, &a4) == 0, "weft_run, four workers");
    }
    foreign_wait(foreign_post(CMD_QUIT));
    pthread_join(th, NULL);
    weft_sem_destroy(ledger);

    int bad = atomic_load(&failures);
    printf(STRESS_NAME ": %s: %ld rounds; first destroy -EBUSY %ld, 0 %ld; waiter granted %ld, "
                       "cancelled %ld; %ld foreign retries; %d failed checks, seed %llu\n",
           bad ? "FAIL" : "ok", atomic_load(&stats.rounds), atomic_load(&stats.busy_first),
           atomic_load(&stats.freed_first), atomic_load(&stats.waiter_granted),
           atomic_load(&stats.waiter_cancelled), atomic_load(&stats.foreign_tries), bad, run_seed);
    return bad ? 1 : 0;
}
