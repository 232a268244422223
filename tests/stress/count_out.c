// SPDX-License-Identifier: MIT
/*
 * Batched count-outs never hold a joiner hostage, on 2 workers.
 *
 * A worker takes the children of one scope that end on it off the scope's balance in batches,
 * and holds a count only while it runs siblings of those children. This program builds the case
 * where holding it longer would hang: each round, the root's scope gets many trivial children,
 * and an unrelated task (in a scope of its own) spins, without any suspension point, until the
 * root's join has returned. A worker that ended a few children and then picked the spinner while
 * still holding their count would never let the join return; the spinner would spin forever and
 * the program would hang (CTest's timeout reports it).
 *
 * Checked besides: every child ran exactly once, every join returned 0.
 *
 * Usage: count_out [rounds] [children per round]   (default 2000 256; 20 64 under TSan)
 * Prints one summary line; exits 0 on success, 1 on any failure.
 */
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "../support.h"
#include "weft.h"

#define WORKERS 2

/* Under ThreadSanitizer a round takes long enough for the watchdog to name the spinner (each
 * stolen child is a TSan fiber): a few small rounds. */
#ifdef UNDER_TSAN
#define DEFAULT_ROUNDS 20
#define DEFAULT_CHILDREN 64
#else
#define DEFAULT_ROUNDS 2000
#define DEFAULT_CHILDREN 256
#endif

static long rounds, children;
static atomic_long ran, errors;
static atomic_int joined; /* the round's join has returned */

static int child(void *arg)
{
    (void)arg;
    /* A little work, so that the other worker steals some children and ends them. */
    volatile unsigned x = 0;
    for (unsigned i = 0; i < 2000; i++)
        x += i;
    atomic_fetch_add(&ran, 1);
    return 0;
}

/* Spins on the OS, never on weft: a suspension point would let its worker move on. */
static int spinner(void *arg)
{
    (void)arg;
    while (!atomic_load(&joined))
        sched_yield();
    return 0;
}

static int spinner_owner(void *arg)
{
    (void)arg;
    weft_scope *t;
    int rc = weft_scope_open(&t, NULL);
    if (rc != 0)
        return rc;
    rc = weft_spawn(t, spinner, NULL);
    int jrc = weft_scope_join(t);
    weft_scope_release(t);
    return rc ? rc : jrc;
}

static int root(void *arg)
{
    (void)arg;
    for (long r = 0; r < rounds; r++) {
        atomic_store(&joined, 0);
        weft_scope *s, *side;
        if (weft_scope_open(&side, NULL) != 0 || weft_scope_open(&s, NULL) != 0) {
            atomic_fetch_add(&errors, 1);
            return -1;
        }
        for (long i = 0; i < children; i++) {
            if (weft_spawn(s, child, NULL) != 0)
                atomic_fetch_add(&errors, 1);
            if (i == children / 2 && weft_spawn(side, spinner_owner, NULL) != 0)
                atomic_fetch_add(&errors, 1);
        }
        if (weft_scope_join(s) != 0)
            atomic_fetch_add(&errors, 1);
        atomic_store(&joined, 1);
        if (weft_scope_join(side) != 0)
            atomic_fetch_add(&errors, 1);
        weft_scope_release(s);
        weft_scope_release(side);
    }
    return 0;
}

int main(int argc, char **argv)
{
    rounds = argc > 1 ? atol(argv[1]) : DEFAULT_ROUNDS;
    children = argc > 2 ? atol(argv[2]) : DEFAULT_CHILDREN;
    if (rounds < 1 || children < 2) {
        fprintf(stderr, "usage: count_out [rounds] [children per round]\n");
        return 1;
    }
    int rc = run_on(WORKERS, root, NULL);
    if (rc != 0)
        atomic_fetch_add(&errors, 1);
    long e = atomic_load(&errors);
    long expect = rounds * children;
    if (atomic_load(&ran) != expect) {
        fprintf(stderr, "count_out: %ld children ran, %ld spawned\n", atomic_load(&ran), expect);
        e++;
    }
    printf("count_out: %s: %ld rounds of %ld children and a spinner on %d workers, %ld errors\n",
           e ? "FAILED" : "OK", rounds, children, WORKERS, e);
    return e ? 1 : 0;
}
