// SPDX-License-Identifier: MIT
/*
 * A join's close against a spawn into the same scope by a task that does not own it (scope.c:
 * close_if_empty, others_arrive). At two workers and more a join that finds no child left closes
 * the scope without a locked instruction unless another task has ever counted a child into it;
 * the first to do so pays for a process-wide barrier and waits out a close in progress. Here
 * that first spawn and the close meet, round after round.
 *
 * A round: the owner opens a scope, publishes it, spawns a child of its own (its join runs it
 * inline), waits a random while (up to tens of microseconds) and joins; then marks the round
 * joined, waits for the racer to let go of the scope, and releases it. The racer, a task on the
 * other worker (both wait with checkpoints, never yields, so neither worker's yield takes the other
 * task), spawns into each published scope until a spawn is refused (-EINVAL: joined) or it has made
 * three. Every child the racer's spawns admitted must run exactly once and before the join
 * returned (it looks at the round's mark); a spawn must be admitted or refused with -EINVAL,
 * nothing else. A close that missed an admission would return with the child still to run (or
 * the child would run in a scope already released).
 *
 * Usage: close_admit [rounds]   (default 10000; 2000 under TSan, whose runtime keeps the CAS)
 * Prints one summary line; exits 0 when every check held, 1 otherwise.
 */
#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "../support.h"
#include "weft.h"

#ifdef UNDER_TSAN
#define DEFAULT_ROUNDS 2000
#else
#define DEFAULT_ROUNDS 10000
#endif
#define RACER_SPAWNS 3

typedef struct race {
    long rounds;
    weft_scope *_Atomic scope; /* the round's scope while the racer may use it */
    atomic_long round;         /* the round `scope` belongs to */
    atomic_int joined;         /* the round's join has returned */
    atomic_int racer_done;     /* the racer let go of the round's scope */
    atomic_int stop;
    atomic_long admitted, refused, ran, late, own_ran, other_errors;
    atomic_long rounds_admitted; /* rounds in which the racer got at least one child in */
} race;

static int racer_child(void *p)
{
    race *r = p;
    if (atomic_load(&r->joined))
        atomic_fetch_add(&r->late, 1);
    atomic_fetch_add(&r->ran, 1);
    return 0;
}

static int own_child(void *p)
{
    race *r = p;
    atomic_fetch_add(&r->own_ran, 1);
    return 0;
}

static int racer(void *p)
{
    race *r = p;
    long seen = 0;
    while (!atomic_load(&r->stop)) {
        weft_scope *s = atomic_load(&r->scope);
        long round = atomic_load(&r->round);
        if (!s || round == seen) {
            /* Not weft_yield: that would let the owner's worker take this task. The thread's
             * yield lets the owner run where the two share a CPU (a loaded machine). */
            weft_checkpoint();
            sched_yield();
            continue;
        }
        seen = round;
        int got = 0;
        for (int i = 0; i < RACER_SPAWNS; i++) {
            int rc = weft_spawn(s, racer_child, r);
            if (rc == 0) {
                got++;
                atomic_fetch_add(&r->admitted, 1);
            } else {
                if (rc == -EINVAL)
                    atomic_fetch_add(&r->refused, 1);
                else
                    atomic_fetch_add(&r->other_errors, 1);
                break;
            }
        }
        if (got)
            atomic_fetch_add(&r->rounds_admitted, 1);
        atomic_store(&r->racer_done, 1);
    }
    return 0;
}

static int owner(void *p)
{
    race *r = p;
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    for (long i = 1; i <= r->rounds; i++) {
        weft_scope *s;
        int rc = weft_scope_open(&s, NULL);
        if (rc) {
            atomic_fetch_add(&r->other_errors, 1);
            break;
        }
        atomic_store(&r->joined, 0);
        atomic_store(&r->racer_done, 0);
        atomic_store(&r->scope, s);
        atomic_store(&r->round, i);
        if (weft_spawn(s, own_child, r) != 0)
            atomic_fetch_add(&r->other_errors, 1);
        /* 0-65,000 loop steps: some rounds join before the racer's first spawn has passed its
         * barrier (about 10 us), some after, some while it is passing it. */
        for (volatile unsigned k = below(&rng, 65536); k > 0; k--)
            ;
        if (weft_scope_join(s) != 0)
            atomic_fetch_add(&r->other_errors, 1);
        atomic_store(&r->joined, 1);
        while (!atomic_load(&r->racer_done)) {
            weft_checkpoint(); /* the racer runs on the other worker (see racer) */
            sched_yield();
        }
        atomic_store(&r->scope, NULL);
        weft_scope_release(s);
    }
    atomic_store(&r->stop, 1);
    return 0;
}

static int root(void *p)
{
    weft_scope *s;
    int rc = weft_scope_open(&s, NULL);
    if (rc)
        return rc;
    rc = weft_spawn(s, racer, p);
    if (rc == 0)
        rc = weft_spawn(s, owner, p);
    else
        atomic_store(&((race *)p)->stop, 1);
    int jrc = weft_scope_close(s);
    return rc ? rc : jrc;
}

int main(int argc, char **argv)
{
    static race r;
    r.rounds = argc > 1 ? atol(argv[1]) : DEFAULT_ROUNDS;
    if (r.rounds < 1) {
        fprintf(stderr, "usage: %s [rounds]\n", argv[0]);
        return 2;
    }
    int rc = run_on(2, root, &r);
    long admitted = atomic_load(&r.admitted), ran = atomic_load(&r.ran);
    long late = atomic_load(&r.late), errors = atomic_load(&r.other_errors);
    int ok = rc == 0 && admitted == ran && late == 0 && errors == 0 &&
             atomic_load(&r.own_ran) == r.rounds;
    printf("close_admit: %s: %ld rounds, the racer's spawns admitted %ld (in %ld rounds), "
           "refused %ld; children run %ld, after their join %ld; own children run %ld; other "
           "errors %ld; weft_run %d\n",
           ok ? "OK" : "FAILED", r.rounds, admitted, atomic_load(&r.rounds_admitted),
           atomic_load(&r.refused), ran, late, atomic_load(&r.own_ran), errors, rc);
    return ok ? 0 : 1;
}
