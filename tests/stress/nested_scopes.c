// SPDX-License-Identifier: MIT
/*
 * Nested scopes, 10,000 deep: level d opens a scope and spawns level d+1 into it, then joins it;
 * the deepest level opens none. The root is level 0.
 *
 * Phase "join": the deepest level returns at once; every level's join must return 0, in order
 * from the bottom up, and the depth must be reached.
 * Phase "cancel": the deepest level waits (yielding) until it is cancelled; the root, once the
 * depth is reached, cancels its own scope, the top of the chain, once. The cancel must reach
 * every level: each join returns -ECANCELED, and each level sees -ECANCELED at weft_checkpoint()
 * afterwards, with the reason EXPLICIT for level 1 (whose scope the root cancelled) and PARENT
 * below it. The scope tree's fan-out must not need a stack frame per level.
 *
 * Usage: nested_scopes [depth] [repeats] [stack_kib]
 *        (default 10000 1, the runtime's stack size; under TSan the default depth is 600)
 * Prints one summary line; exits 0 on success, 1 on any failure.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "../support.h"
#include "weft.h"

#define WORKERS 2

/* Under ThreadSanitizer every level that starts on a stack of its own costs a TSan fiber
 * (milliseconds each): a shallower default keeps the run near 20 s on 2 cores. The depth
 * limits this program is about (frames per level, the iterative cancel fan-out) are checked at
 * the full depth in the other builds. */
#ifdef UNDER_TSAN
#define DEFAULT_DEPTH 600
#else
#define DEFAULT_DEPTH 10000
#endif

enum { PHASE_JOIN = 0, PHASE_CANCEL = 1 };

static long depth;
static size_t stack_size;
static int phase;
static atomic_long reached;
static atomic_long joins_ok;     /* joins that returned what the phase expects */
static atomic_long saw_cancel;   /* levels whose checkpoint said -ECANCELED after the join */
static atomic_long right_reason; /* ... with the expected cancel reason */
static atomic_long errors;

static void fail(const char *what, long level, int rc)
{
    if (atomic_fetch_add(&errors, 1) < 10)
        fprintf(stderr, "nested_scopes: %s (level %ld, rc %d)\n", what, level, rc);
}

static void after_cancel(long level)
{
    int rc = weft_checkpoint();
    if (rc == -ECANCELED)
        atomic_fetch_add(&saw_cancel, 1);
    else
        fail("no -ECANCELED at the checkpoint", level, rc);
    weft_cancel_reason expect = level == 1 ? WEFT_CANCEL_EXPLICIT : WEFT_CANCEL_PARENT;
    if (weft_cancel_reason_self() == expect)
        atomic_fetch_add(&right_reason, 1);
    else
        fail("unexpected cancel reason", level, (int)weft_cancel_reason_self());
}

static int level_fn(void *arg)
{
    long d = (long)(intptr_t)arg;
    if (d == depth) {
        atomic_store(&reached, d);
        if (phase == PHASE_CANCEL) {
            int rc;
            while ((rc = weft_yield()) == 0) {
            }
            if (rc != -ECANCELED)
                fail("the deepest level's yield", d, rc);
            after_cancel(d);
            return rc;
        }
        return 0;
    }
    weft_scope *s;
    int rc = weft_scope_open(&s, NULL);
    if (rc) {
        fail("scope_open", d, rc);
        return rc;
    }
    rc = weft_spawn(s, level_fn, (void *)(intptr_t)(d + 1));
    if (rc)
        fail("spawn", d, rc);
    int jrc = weft_scope_join(s);
    int expect = phase == PHASE_CANCEL ? -ECANCELED : 0;
    if (jrc == expect)
        atomic_fetch_add(&joins_ok, 1);
    else
        fail("join", d, jrc);
    if (atomic_load(&reached) != depth)
        fail("joined before the depth was reached", d, 0);
    weft_scope_release(s);
    if (phase == PHASE_CANCEL && d > 0)
        after_cancel(d);
    return rc ? rc : jrc;
}

static int root(void *arg)
{
    (void)arg;
    if (phase == PHASE_JOIN) {
        int rc = level_fn((void *)(intptr_t)0);
        return rc;
    }
    weft_scope *s;
    int rc = weft_scope_open(&s, NULL);
    if (rc)
        return rc;
    if ((rc = weft_spawn(s, level_fn, (void *)(intptr_t)1))) {
        fail("spawn", 0, rc);
        weft_scope_release(s);
        return rc;
    }
    while (atomic_load(&reached) != depth)
        weft_yield();
    weft_scope_cancel(s);
    int jrc = weft_scope_join(s);
    if (jrc == -ECANCELED)
        atomic_fetch_add(&joins_ok, 1);
    else
        fail("join", 0, jrc);
    weft_scope_release(s);
    return 0;
}

int main(int argc, char **argv)
{
    depth = argc > 1 ? atol(argv[1]) : DEFAULT_DEPTH;
    long repeats = argc > 2 ? atol(argv[2]) : 1;
    stack_size = argc > 3 ? (size_t)atol(argv[3]) * 1024 : 0;
    if (depth < 1 || repeats < 1) {
        fprintf(stderr, "usage: %s [depth] [repeats]\n", argv[0]);
        return 2;
    }
    long expect[2][3] = {
        /* joins_ok, saw_cancel, right_reason per run */
        {depth, 0, 0},
        {depth, depth, depth},
    };
    long got[2][3] = {{0}};
    for (long r = 0; r < repeats && atomic_load(&errors) == 0; r++) {
        for (phase = PHASE_JOIN; phase <= PHASE_CANCEL; phase++) {
            atomic_store(&reached, 0);
            atomic_store(&joins_ok, 0);
            atomic_store(&saw_cancel, 0);
            atomic_store(&right_reason, 0);
            weft_config cfg = {.workers = WORKERS, .stack_size = stack_size};
            int rc = weft_run(&cfg, root, NULL);
            if (rc)
                fail("weft_run", -1, rc);
            if (atomic_load(&reached) != depth)
                fail("depth not reached", atomic_load(&reached), 0);
            got[phase][0] = atomic_load(&joins_ok);
            got[phase][1] = atomic_load(&saw_cancel);
            got[phase][2] = atomic_load(&right_reason);
            for (int k = 0; k < 3; k++)
                if (got[phase][k] != expect[phase][k])
                    fail(k == 0   ? "joins"
                         : k == 1 ? "levels that saw the cancel"
                                  : "levels with the right reason",
                         got[phase][k], (int)expect[phase][k]);
        }
    }
    long errs = atomic_load(&errors);
    printf("nested_scopes: %s: depth %ld, %ld repeats; join phase: %ld/%ld joins; cancel "
           "phase: %ld/%ld joins cancelled, %ld/%ld levels saw -ECANCELED, %ld with the right "
           "reason; errors %ld\n",
           errs ? "FAILED" : "OK", depth, repeats, got[0][0], depth, got[1][0], depth, got[1][1],
           depth, got[1][2], errs);
    return errs ? 1 : 0;
}
