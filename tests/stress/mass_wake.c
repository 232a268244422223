// SPDX-License-Identifier: MIT
/*
 * Mass wake-ups through the injection queue, on 4 workers.
 *
 * Each round, the root parks a scope full of tasks: most sleep for an hour, every fifth waits on
 * a semaphore with no tokens. A foreign thread then releases tokens one by one and cancels the
 * scope halfway through. A cancel from a foreign thread queues its sleepers on the injection
 * queue in runs (one per chunk of the fan-out), the releases queue their waiters one at a time
 * between those runs, and the workers take the runs apart while more arrive: part of a run onto
 * their ready queue, the rest back to the front of the queue.
 *
 * Checked: every task ends exactly once; a sleeper sees -ECANCELED; a semaphore waiter either
 * got a token (and gives it back) or saw -ECANCELED, and every token released comes back.
 *
 * Usage: mass_wake [rounds] [tasks per round]   (default 300 3000; 10 300 under TSan)
 * Prints one summary line; exits 0 on success, 1 on any failure.
 */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "../support.h"
#include "weft.h"

#define WORKERS 4
#define SEM_EVERY 5 /* every fifth task waits on the semaphore instead of sleeping */

/* Under ThreadSanitizer every parked task holds a stack of its own, a TSan fiber (milliseconds
 * each): fewer and smaller rounds, the same interleavings. */
#ifdef UNDER_TSAN
#define DEFAULT_ROUNDS 10
#define DEFAULT_TASKS 300
#else
#define DEFAULT_ROUNDS 300
#define DEFAULT_TASKS 3000
#endif

static long rounds, ntasks;
static atomic_int *ended; /* ntasks slots, one per task of the round */
static atomic_long parked, granted, errors;
static weft_sem *sem;    /* the round's: the waker holds all its tokens at first */
static weft_scope *mass; /* the round's scope */
static sem_t round_go, round_ready, all_parked, round_over;

static void fail(const char *what, long i, int rc)
{
    fprintf(stderr, "mass_wake: task %ld: %s: %d\n", i, what, rc);
    atomic_fetch_add(&errors, 1);
}

static int waiter(void *arg)
{
    long i = (long)(intptr_t)arg;
    atomic_fetch_add(&parked, 1); /* just before parking: the root waits for all of these */
    if (i % SEM_EVERY == 0) {
        int rc = weft_sem_acquire(sem);
        if (rc == 0) {
            atomic_fetch_add(&granted, 1);
            rc = weft_sem_release(sem);
            if (rc != 0)
                fail("weft_sem_release", i, rc);
        } else if (rc != -ECANCELED) {
            fail("weft_sem_acquire", i, rc);
        }
    } else {
        int rc = weft_sleep_for(HOUR);
        if (rc != -ECANCELED)
            fail("weft_sleep_for", i, rc);
    }
    atomic_fetch_add(&ended[i], 1);
    return 0;
}

/* The foreign thread: once a round's tasks are parked, tokens and the cancel arrive together. */
static void *waker(void *arg)
{
    (void)arg;
    long releases = ntasks / SEM_EVERY / 2;
    for (long r = 0; r < rounds; r++) {
        sem_wait(&round_go);
        for (long k = 0; k < releases; k++)
            if (weft_sem_try_acquire(sem) != 0)
                atomic_fetch_add(&errors, 1);
        sem_post(&round_ready);
        sem_wait(&all_parked);
        for (long k = 0; k < releases; k++) {
            if (k == releases / 2 && weft_scope_cancel(mass) != 0)
                atomic_fetch_add(&errors, 1);
            if (weft_sem_release(sem) != 0)
                atomic_fetch_add(&errors, 1);
        }
        if (releases < 2 && weft_scope_cancel(mass) != 0)
            atomic_fetch_add(&errors, 1);
        sem_post(&round_over);
    }
    return NULL;
}

static int one_round(long r)
{
    atomic_store(&parked, 0);
    int rc = weft_sem_create(&sem, (unsigned)(ntasks / SEM_EVERY / 2));
    if (rc != 0)
        return rc;
    sem_post(&round_go);
    while (sem_trywait(&round_ready) != 0)
        weft_yield(); /* the waker takes the semaphore's tokens, to give them back later */
    rc = weft_scope_open(&mass, NULL);
    if (rc != 0)
        return rc;
    for (long i = 0; i < ntasks; i++) {
        rc = weft_spawn(mass, waiter, (void *)(intptr_t)i);
        if (rc != 0) {
            fail("weft_spawn", i, rc);
            atomic_fetch_add(&ended[i], 1); /* not run, but not lost either */
            atomic_fetch_add(&parked, 1);
        }
    }
    /* Yields, not sleeps: the root stays runnable and sees the last park within a round. */
    while (atomic_load(&parked) < ntasks)
        weft_yield();
    for (int k = 0; k < 8; k++)
        weft_yield(); /* the last counted tasks reach their park */
    sem_post(&all_parked);
    rc = weft_scope_join(mass);
    if (rc != 0 && rc != -ECANCELED)
        fprintf(stderr, "mass_wake: round %ld: join returned %d\n", r, rc);
    weft_scope_release(mass);
    return rc == -ECANCELED ? 0 : rc;
}

static int root(void *arg)
{
    (void)arg;
    long bad_slots = 0;
    for (long r = 0; r < rounds; r++) {
        for (long i = 0; i < ntasks; i++)
            atomic_store(&ended[i], 0);
        if (one_round(r) != 0)
            atomic_fetch_add(&errors, 1);
        /* The waker is done with this round's scope before the next one is opened. */
        while (sem_trywait(&round_over) != 0)
            weft_yield();
        for (long i = 0; i < ntasks; i++) {
            int k = atomic_load(&ended[i]);
            if (k != 1 && bad_slots++ < 10)
                fprintf(stderr, "mass_wake: round %ld: task %ld ended %d times\n", r, i, k);
        }
        unsigned back = weft_sem_available(sem);
        long released = ntasks / SEM_EVERY / 2;
        if ((long)back != released) {
            fprintf(stderr, "mass_wake: round %ld: %u tokens back of %ld released\n", r, back,
                    released);
            atomic_fetch_add(&errors, 1);
        }
        if (weft_sem_destroy(sem) != 0)
            atomic_fetch_add(&errors, 1);
    }
    atomic_fetch_add(&errors, bad_slots);
    return 0;
}

int main(int argc, char **argv)
{
    rounds = argc > 1 ? atol(argv[1]) : DEFAULT_ROUNDS;
    ntasks = argc > 2 ? atol(argv[2]) : DEFAULT_TASKS;
    if (rounds < 1 || ntasks < 1) {
        fprintf(stderr, "usage: mass_wake [rounds] [tasks per round]\n");
        return 1;
    }
    ended = calloc((size_t)ntasks, sizeof(*ended));
    if (!ended)
        return 1;
    sem_init(&round_go, 0, 0);
    sem_init(&round_ready, 0, 0);
    sem_init(&all_parked, 0, 0);
    sem_init(&round_over, 0, 0);
    pthread_t th;
    if (pthread_create(&th, NULL, waker, NULL) != 0)
        return 1;
    int rc = run_on(WORKERS, root, NULL);
    if (rc != 0) {
        fprintf(stderr, "mass_wake: weft_run returned %d\n", rc);
        atomic_fetch_add(&errors, 1);
    }
    pthread_join(th, NULL);
    long e = atomic_load(&errors);
    printf("mass_wake: %s: %ld rounds of %ld parked tasks on %d workers, %ld granted, %ld errors\n",
           e ? "FAILED" : "OK", rounds, ntasks, WORKERS, atomic_load(&granted), e);
    free(ended);
    return e ? 1 : 0;
}
