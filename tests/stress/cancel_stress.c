// SPDX-License-Identifier: MIT
/*
 * Cancellation stress: random scope trees on four workers, with cancels from random tasks (of
 * their own or an ancestor's scope, at random moments), random deadlines, shielded scopes, and a
 * foreign thread that cancels the whole tree at a random point. Cancels race with completions,
 * with deadline timers firing and with work being stolen.
 *
 * Checked: every task that was spawned starts and ends exactly once, a refused spawn never runs;
 * suspension points report only -ECANCELED or -ETIMEDOUT and then a cancel reason; a child that
 * ended by its scope's cancel is never recorded as a failure; a join reports 0 only if every
 * child returned 0, and otherwise the scope is cancelled.
 *
 * Usage: cancel_stress [trees [seed]]
 */
#define STRESS_NAME "cancel_stress"
#define STRESS_SEEDED

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../support.h"
#include "weft.h"

/* Under TSan every task that gets a stack of its own costs a millisecond or more (a TSan fiber
 * is created for it): fewer trees keep the default run within its time budget. */
#ifdef UNDER_TSAN
#define DEFAULT_TREES 20
#else
#define DEFAULT_TREES 300
#endif

#define MAX_NODES 600
#define MAX_DEPTH 4
#define MAX_KIDS 5

typedef struct node {
    struct node *parent; /* the node whose task spawned this one; NULL at the top */
    weft_scope *scope;   /* the scope this node was spawned into */
    uint64_t seed;
    int depth;
    atomic_int started, ended;
    int refused; /* the spawn was refused (then the task must never run) */
    int used;
    int rc; /* what the task returned */
    int nkids;
    struct node *kids[MAX_KIDS];
} node;

static node nodes[MAX_NODES];
static atomic_int nodes_used;

static struct {
    atomic_long tasks, refused, cancels, joins, joins_timedout, joins_cancelled, shielded;
    atomic_long observed;
} stats;

static atomic_int tree_done;
static atomic_int tasks_started;

static node *new_node(node *parent, weft_scope *s, uint64_t seed)
{
    int i = atomic_fetch_add(&nodes_used, 1);
    if (i >= MAX_NODES)
        return NULL;
    node *n = &nodes[i];
    n->parent = parent;
    n->scope = s;
    n->seed = seed;
    n->depth = parent ? parent->depth + 1 : 0;
    n->used = 1;
    return n;
}

/* Cancels the scope of this node or of one of its ancestors: all alive, since every one of them
 * waits for this task to end before it can be released. */
static void cancel_some_ancestor(node *n, uint64_t *rng)
{
    unsigned up = below(rng, (unsigned)n->depth + 1);
    node *a = n;
    while (up-- && a->parent)
        a = a->parent;
    CHECK(weft_scope_cancel(a->scope) == 0, "cancel of an alive scope");
    atomic_fetch_add(&stats.cancels, 1);
}

static void check_code(int code)
{
    CHECK(code == -ECANCELED || code == -ETIMEDOUT, "a suspension point returned %d", code);
    weft_cancel_reason r = weft_cancel_reason_self();
    CHECK(r != WEFT_CANCEL_NONE, "code %d with reason NONE", code);
    atomic_fetch_add(&stats.observed, 1);
}

/* A few random suspension points on the task's current scope; returns the first cancel code. */
static int churn(node *n, uint64_t *rng, int steps)
{
    for (int i = 0; i < steps; i++) {
        int code = 0;
        switch (below(rng, 8)) {
        case 0:
        case 1:
            code = weft_yield();
            break;
        case 2:
        case 3:
            code = weft_sleep_for((weft_time)below(rng, 200) * WEFT_USEC);
            break;
        case 4:
            code = weft_checkpoint();
            break;
        case 5:
            code = weft_sleep_until(weft_now() + (weft_time)below(rng, 50) * WEFT_USEC);
            break;
        default:
            if (below(rng, 16) == 0)
                cancel_some_ancestor(n, rng);
            break;
        }
        if (code) {
            check_code(code);
            /* Level-triggered: the state does not go away. */
            int again = weft_checkpoint();
            CHECK(again == code, "checkpoint after %d says %d", code, again);
            return code;
        }
    }
    return 0;
}

static int node_fn(void *p);

/* Opens a scope with random options, spawns children into it, maybe cancels it, joins. */
static void subtree(node *n, uint64_t *rng)
{
    weft_scope_opts o = {0};
    if (below(rng, 4) == 0)
        o.timeout_ns = (weft_time)(50 + below(rng, 2000)) * WEFT_USEC;
    if (below(rng, 10) == 0)
        o.shield = 1;
    weft_scope *s;
    int rc = weft_scope_open(&s, &o);
    if (rc) {
        check_code(rc);
        return;
    }
    if (o.shield)
        atomic_fetch_add(&stats.shielded, 1);
    int want = n->depth < 2 ? 2 + (int)below(rng, MAX_KIDS - 1) : (int)below(rng, MAX_KIDS);
    for (int i = 0; i < want; i++) {
        node *k = new_node(n, s, next_rand(rng));
        if (!k)
            break;
        n->kids[n->nkids++] = k;
        rc = weft_spawn(s, node_fn, k);
        if (rc) {
            CHECK(rc == -ECANCELED || rc == -ETIMEDOUT, "spawn returned %d", rc);
            CHECK(weft_scope_cancel_reason(s) != WEFT_CANCEL_NONE, "spawn refused, not cancelled");
            k->refused = 1;
            atomic_fetch_add(&stats.refused, 1);
        }
        if (below(rng, 40) == 0) {
            weft_scope_cancel(s);
            atomic_fetch_add(&stats.cancels, 1);
        }
        if (below(rng, 3) == 0)
            (void)weft_yield(); /* may be cancelled already: fine */
    }
    int jr = weft_scope_join(s);
    atomic_fetch_add(&stats.joins, 1);
    CHECK(jr == 0 || jr == -ECANCELED || jr == -ETIMEDOUT, "join returned %d", jr);
    CHECK(weft_scope_error_count(s) == 0, "%zu failures recorded, children only end by cancels",
          weft_scope_error_count(s));
    if (jr == 0) {
        for (int i = 0; i < n->nkids; i++)
            if (!n->kids[i]->refused)
                CHECK(n->kids[i]->rc == 0, "join 0 but a child returned %d", n->kids[i]->rc);
    } else {
        CHECK(weft_scope_cancel_reason(s) != WEFT_CANCEL_NONE, "join %d, scope not cancelled", jr);
        atomic_fetch_add(jr == -ETIMEDOUT ? &stats.joins_timedout : &stats.joins_cancelled, 1);
    }
    CHECK(weft_scope_join(s) == jr, "a second join changed its answer");
    CHECK(weft_scope_release(s) == 0, "release");
}

static int node_fn(void *p)
{
    node *n = p;
    int st = atomic_fetch_add(&n->started, 1);
    CHECK(st == 0, "a task started %d times", st + 1);
    CHECK(!n->refused, "a refused spawn ran");
    atomic_fetch_add(&tasks_started, 1);
    atomic_fetch_add(&stats.tasks, 1);
    uint64_t rng = n->seed;
    CHECK(weft_current_scope() == n->scope, "current scope");

    int rc = churn(n, &rng, (int)below(&rng, 5));
    if (!rc && n->depth < MAX_DEPTH)
        subtree(n, &rng);
    if (!rc)
        rc = churn(n, &rng, (int)below(&rng, 3));
    n->rc = rc;
    int en = atomic_fetch_add(&n->ended, 1);
    CHECK(en == 0, "a task ended %d times", en + 1);
    return rc;
}

/* ---- the foreign canceller ------------------------------------------------------------------- */

/* One plain thread per run, handed each tree in turn: it waits until `after` tasks of the tree
 * have started (or the tree is done) and cancels the tree's top scope. The root releases the top
 * scope only after the thread has acknowledged the tree. */
static struct {
    _Atomic(weft_scope *) top;
    atomic_int after;
    atomic_int generation, acked;
    atomic_int quit;
    atomic_long fired;
} fc;

static void *foreign_main(void *p)
{
    (void)p;
    int seen = 0;
    for (;;) {
        int g;
        while ((g = atomic_load(&fc.generation)) == seen && !atomic_load(&fc.quit))
            sched_yield();
        if (g == seen)
            return NULL;
        seen = g;
        int after = atomic_load(&fc.after);
        while (atomic_load(&tasks_started) < after && !atomic_load(&tree_done))
            sched_yield();
        if (!atomic_load(&tree_done) || after % 2) {
            /* Cancelling a joined (not yet released) scope is allowed too. */
            CHECK(weft_scope_cancel(atomic_load(&fc.top)) == 0, "foreign cancel");
            atomic_fetch_add(&fc.fired, 1);
        }
        atomic_store(&fc.acked, g);
    }
}

static void check_tree(int tree)
{
    int used = atomic_load(&nodes_used);
    if (used > MAX_NODES)
        used = MAX_NODES;
    for (int i = 0; i < used; i++) {
        node *n = &nodes[i];
        if (n->refused) {
            CHECK(atomic_load(&n->started) == 0 && atomic_load(&n->ended) == 0,
                  "tree %d node %d: refused but ran", tree, i);
        } else {
            CHECK(atomic_load(&n->started) == 1 && atomic_load(&n->ended) == 1,
                  "tree %d node %d: started %d ended %d", tree, i, atomic_load(&n->started),
                  atomic_load(&n->ended));
        }
    }
}

typedef struct run_arg {
    uint64_t seed;
    int trees;
    int first_tree;
} run_arg;

static int one_tree(uint64_t *rng, int tree)
{
    memset(nodes, 0, sizeof(nodes));
    atomic_store(&nodes_used, 0);
    atomic_store(&tree_done, 0);
    atomic_store(&tasks_started, 0);
    weft_scope_opts o = {0};
    if (below(rng, 3) == 0)
        o.timeout_ns = (weft_time)(200 + below(rng, 3000)) * WEFT_USEC;
    weft_scope *top;
    if (weft_scope_open(&top, &o) != 0) {
        CHECK(0, "open top");
        return -1;
    }
    atomic_store(&fc.top, top);
    atomic_store(&fc.after, 1 + (int)below(rng, 300));
    atomic_fetch_add(&fc.generation, 1);
    int ntop = 2 + (int)below(rng, 4);
    for (int i = 0; i < ntop; i++) {
        node *k = new_node(NULL, top, next_rand(rng));
        if (!k)
            break;
        int rc = weft_spawn(top, node_fn, k);
        if (rc) {
            k->refused = 1;
            CHECK(rc == -ECANCELED || rc == -ETIMEDOUT, "top spawn %d", rc);
        }
    }
    int jr = weft_scope_join(top);
    CHECK(jr == 0 || jr == -ECANCELED || jr == -ETIMEDOUT, "top join %d", jr);
    atomic_store(&tree_done, 1);
    /* Outside `top` again: the root's own suspension points are not cancelled. */
    while (atomic_load(&fc.acked) != atomic_load(&fc.generation))
        CHECK(weft_yield() == 0, "root yield");
    CHECK(weft_scope_release(top) == 0, "release top");
    check_tree(tree);
    return 0;
}

static int root(void *p)
{
    run_arg *a = p;
    uint64_t rng = a->seed;
    for (int t = 0; t < a->trees && atomic_load(&failures) == 0; t++)
        one_tree(&rng, a->first_tree + t);
    return 0;
}

int main(int argc, char **argv)
{
    int trees = argc > 1 ? atoi(argv[1]) : DEFAULT_TREES;
    uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 0) : (uint64_t)weft_now();
    run_seed = (unsigned long long)seed;
    /* First, so that a run a sanitizer aborts can still be repeated with the same seed. */
    printf("cancel_stress: seed %llu\n", run_seed);
    fflush(stdout);
    pthread_t th;
    if (pthread_create(&th, NULL, foreign_main, NULL) != 0) {
        fprintf(stderr, "cancel_stress: pthread_create failed\n");
        return 1;
    }
    /* A few runtimes, many trees each: starting a runtime is the slow part under TSan. */
    const int runs = 3;
    for (int r = 0; r < runs && atomic_load(&failures) == 0; r++) {
        run_arg a = {.seed = next_rand(&seed),
                     .trees = trees / runs + (r < trees % runs),
                     .first_tree = r * (trees / runs)};
        weft_config cfg = {.workers = 4, .watchdog_ns = -1};
        int rc = weft_run(&cfg, root, &a);
        CHECK(rc == 0, "weft_run returned %d", rc);
    }
    atomic_store(&fc.quit, 1);
    pthread_join(th, NULL);
    int bad = atomic_load(&failures);
    printf("cancel_stress: %s: %d trees, %ld tasks, %ld refused spawns, %ld cancels (%ld foreign), "
           "%ld cancel codes seen, %ld joins (%ld timed out, %ld cancelled), %ld shielded "
           "scopes, %d failed checks, seed %llu\n",
           bad ? "FAIL" : "ok", trees, atomic_load(&stats.tasks), atomic_load(&stats.refused),
           atomic_load(&stats.cancels) + atomic_load(&fc.fired), atomic_load(&fc.fired),
           atomic_load(&stats.observed), atomic_load(&stats.joins),
           atomic_load(&stats.joins_timedout), atomic_load(&stats.joins_cancelled),
           atomic_load(&stats.shielded), bad, run_seed);
    return bad ? 1 : 0;
}
