// SPDX-License-Identifier: MIT
/*
 * Flat fan-outs on 4 workers: a thief that finds a long spawn queue takes a batch of tasks at
 * once and queues them on its own spawn queue, where other thieves may take them again.
 *
 * Each round, the root opens a scope and fills it from four loops at once: its own (the owner's
 * spawns) and three sibling spawner tasks (spawns by tasks other than the owner). Every child
 * counts its run in a slot of its own; every other child yields once first, so that it is also
 * stolen from ready queues while suspended. After the join, every slot must hold exactly 1: a
 * task lost between the victim's queue and the thief's, or run by both, shows up there.
 *
 * Usage: steal_batch [rounds] [children per loop]   (default 300 2000; 8 250 under TSan)
 * Prints one summary line; exits 0 on success, 1 on any failure.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "../support.h"
#include "weft.h"

#define WORKERS 4
#define LOOPS 4 /* the root's and three spawners' */

/* Under ThreadSanitizer every stolen child starts on a stack of its own, a TSan fiber
 * (milliseconds each): fewer and smaller rounds, the same interleavings. */
#ifdef UNDER_TSAN
#define DEFAULT_ROUNDS 8
#define DEFAULT_PER_LOOP 250
#else
#define DEFAULT_ROUNDS 300
#define DEFAULT_PER_LOOP 2000
#endif

static long per_loop;
static atomic_int *runs; /* LOOPS * per_loop slots */
static weft_scope *fan;  /* the round's scope */
static atomic_long errors;

static int child(void *arg)
{
    intptr_t i = (intptr_t)arg;
    if (i % 2 && weft_yield() != 0)
        atomic_fetch_add(&errors, 1);
    atomic_fetch_add(&runs[i], 1);
    return 0;
}

static int spawn_loop(long loop)
{
    for (long k = 0; k < per_loop; k++) {
        intptr_t i = (intptr_t)(loop * per_loop + k);
        int rc = weft_spawn(fan, child, (void *)i);
        if (rc != 0) {
            fprintf(stderr, "steal_batch: spawn %ld of loop %ld: %d\n", k, loop, rc);
            atomic_fetch_add(&errors, 1);
            atomic_fetch_add(&runs[i], 1); /* not run, but not lost either */
        }
    }
    return 0;
}

static int spawner(void *arg)
{
    return spawn_loop((long)(intptr_t)arg);
}

static int round_root(void *arg)
{
    (void)arg;
    int rc = weft_scope_open(&fan, NULL);
    if (rc != 0)
        return rc;
    for (long loop = 1; loop < LOOPS; loop++) {
        rc = weft_spawn(fan, spawner, (void *)(intptr_t)loop);
        if (rc != 0)
            return rc;
    }
    spawn_loop(0);
    rc = weft_scope_join(fan);
    weft_scope_release(fan);
    return rc;
}

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? atol(argv[1]) : DEFAULT_ROUNDS;
    per_loop = argc > 2 ? atol(argv[2]) : DEFAULT_PER_LOOP;
    if (rounds < 1 || per_loop < 1) {
        fprintf(stderr, "usage: steal_batch [rounds] [children per loop]\n");
        return 1;
    }
    size_t n = (size_t)(LOOPS * per_loop);
    runs = calloc(n, sizeof(*runs));
    if (!runs)
        return 1;
    long bad_slots = 0;
    for (long r = 0; r < rounds; r++) {
        for (size_t i = 0; i < n; i++)
            atomic_store(&runs[i], 0);
        int rc = run_on(WORKERS, round_root, NULL);
        if (rc != 0) {
            fprintf(stderr, "steal_batch: round %ld: weft_run returned %d\n", r, rc);
            atomic_fetch_add(&errors, 1);
        }
        for (size_t i = 0; i < n; i++) {
            int k = atomic_load(&runs[i]);
            if (k != 1 && bad_slots++ < 10)
                fprintf(stderr, "steal_batch: round %ld: child %zu ran %d times\n", r, i, k);
        }
    }
    free(runs);
    long e = atomic_load(&errors) + bad_slots;
    printf("steal_batch: %s: %ld rounds of %zu children on %d workers, %ld errors\n",
           e ? "FAILED" : "OK", rounds, n, WORKERS, e);
    return e ? 1 : 0;
}
