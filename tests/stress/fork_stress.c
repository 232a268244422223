// SPDX-License-Identifier: MIT
/*
 * weft_fork_join under load, for the sanitizers (ThreadSanitizer cannot run Criterion): random
 * fork trees on four workers, several at once, whose functions yield, sleep, fail, open scopes
 * and leave them open, while their scopes are cancelled from outside.
 *
 * Invariants, each round:
 *   - every forked function and every `here` runs exactly once (a mark per node of the tree);
 *   - a tree that nothing failed or cancelled sums to the serial sum of its nodes;
 *   - a node's fork returns the forked function's code if it failed, else `here`'s (where no
 *     leaf below left a scope open, whose failure surfaces where that scope ends);
 *   - each call returns only after both of its functions ended (their marks are set before the
 *     caller reads them, checked in the caller).
 *
 * Usage: fork_stress [rounds [seed]]
 */
#define STRESS_NAME "fork_stress"
#define STRESS_SEEDED

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../support.h"
#include "weft.h"

#define WORKERS 4
#define TREES 3 /* trees forking at once in a round */

#ifdef UNDER_TSAN
#define DEFAULT_ROUNDS 40
#define MAX_NODES 600
#else
#define DEFAULT_ROUNDS 200
#define MAX_NODES 6000
#endif

/* What a node does besides forking its two subtrees. */
enum { DO_NOTHING, DO_YIELD, DO_SLEEP, DO_FAIL, DO_LEAVE_SCOPE, DO_KINDS };

typedef struct tree tree;

typedef struct node {
    tree *t;
    int index;
    int lo, hi; /* the node covers [lo, hi): a leaf when hi - lo == 1 */
    long sum;
    int rc;
    int left_open; /* a leaf below left a scope open (DO_LEAVE_SCOPE) */
    uint64_t task; /* weft_task_id() where it started */
} node;

static atomic_long taken; /* forked functions that ran as another task than their caller */

struct tree {
    weft_scope *scope;
    int n;
    unsigned char *action; /* per index */
    atomic_int *runs;      /* per index: how many times the node of that index ran */
    atomic_int cancelled;  /* its scope was cancelled (results then may be cancel codes) */
    int rc;
    long sum;
};

static int run_node(void *p);

static int child_fails(void *p)
{
    (void)p;
    return -EDOM;
}

/* A node's own work: a leaf (or an inner node's extra) by its action. Returns its own code. */
static int act(node *x)
{
    tree *t = x->t;
    switch (t->action[x->lo]) {
    case DO_YIELD:
        return weft_yield() == 0 ? 0 : weft_checkpoint();
    case DO_SLEEP: {
        int rc = weft_sleep_for(20 * 1000);
        return rc == -ECANCELED ? rc : 0;
    }
    case DO_FAIL:
        return -EIO;
    case DO_LEAVE_SCOPE: {
        weft_scope *s;
        if (weft_scope_open(&s, NULL) == 0 && weft_spawn(s, child_fails, NULL) != 0)
            weft_scope_close(s);
        return 0; /* the scope is left open: its -EDOM becomes this node's code */
    }
    default:
        return 0;
    }
}

static int run_node(void *p)
{
    node *x = p;
    tree *t = x->t;
    atomic_fetch_add_explicit(&t->runs[x->index], 1, memory_order_relaxed);
    x->task = weft_task_id();
    if (x->hi - x->lo == 1) {
        x->sum = x->lo;
        x->left_open = t->action[x->lo] == DO_LEAVE_SCOPE;
        x->rc = act(x);
        return x->rc;
    }
    int mid = x->lo + (x->hi - x->lo) / 2;
    /* Children's indexes: the tree's nodes are numbered in preorder, left subtree first. */
    node left = {.t = t, .index = x->index + 1, .lo = x->lo, .hi = mid};
    node right = {.t = t, .index = x->index + 2 * (mid - x->lo), .lo = mid, .hi = x->hi};
    int rc = weft_fork_join(run_node, &right, run_node, &left);
    if (right.task != weft_task_id())
        atomic_fetch_add_explicit(&taken, 1, memory_order_relaxed);
    /* Both ended: their marks are set and their results written. */
    CHECK(atomic_load_explicit(&t->runs[left.index], memory_order_relaxed) == 1 &&
              atomic_load_explicit(&t->runs[right.index], memory_order_relaxed) == 1,
          "node %d returned before its children ended", x->index);
    /* A scope left open is a failure that surfaces where the scope ends (with the forked
     * function, with the task): the codes are checked where none was left open below. */
    int want = right.rc ? right.rc : left.rc;
    if (!right.left_open && !left.left_open)
        CHECK(rc == want, "node %d: fork returned %d, forked %d, here %d", x->index, rc, right.rc,
              left.rc);
    x->left_open = right.left_open || left.left_open;
    x->sum = left.sum + right.sum;
    x->rc = rc;
    return rc;
}

static int tree_root(void *p)
{
    tree *t = p;
    node top = {.t = t, .index = 0, .lo = 0, .hi = t->n};
    t->rc = run_node(&top);
    t->sum = top.sum;
    return t->rc;
}

typedef struct round_arg {
    uint64_t seed;
    tree trees[TREES];
} round_arg;

static int round_root(void *p)
{
    round_arg *r = p;
    weft_scope *outer;
    if (weft_scope_open(&outer, &(weft_scope_opts){.policy = WEFT_COLLECT}) != 0)
        return -ENOMEM;
    for (int i = 0; i < TREES; i++) {
        tree *t = &r->trees[i];
        if (weft_scope_open(&t->scope, &(weft_scope_opts){.policy = WEFT_COLLECT}) != 0)
            continue;
        weft_spawn(t->scope, tree_root, t);
    }
    /* Cancel one tree now and then, after some yields so that it is under way. */
    int victim = (int)below(&r->seed, TREES * 2);
    int wait = (int)below(&r->seed, 40);
    for (int i = 0; i < wait; i++)
        weft_yield();
    for (int i = TREES - 1; i >= 0; i--) {
        tree *t = &r->trees[i];
        if (i == victim) {
            atomic_store(&t->cancelled, 1);
            weft_scope_cancel(t->scope);
        }
        weft_scope_close(t->scope);
    }
    weft_scope_close(outer);
    return 0;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : DEFAULT_ROUNDS;
    run_seed = argc > 2 ? strtoull(argv[2], NULL, 10) : 20261207;
    uint64_t seed = run_seed;
    for (int round = 0; round < rounds; round++) {
        round_arg *r = calloc(1, sizeof(*r));
        r->seed = next_rand(&seed);
        for (int i = 0; i < TREES; i++) {
            tree *t = &r->trees[i];
            t->n = 1 + (int)below(&seed, MAX_NODES / 2);
            t->action = calloc((size_t)t->n, 1);
            t->runs = calloc((size_t)(2 * t->n), sizeof(atomic_int));
            /* Mostly plain leaves, so that forks are popped back as often as taken. */
            unsigned mix = below(&seed, 4);
            for (int k = 0; k < t->n; k++)
                t->action[k] =
                    below(&seed, 8) < mix ? (unsigned char)below(&seed, DO_KINDS) : DO_NOTHING;
        }
        unsigned workers = 1 + below(&seed, WORKERS);
        int rc = run_on(workers, round_root, r);
        CHECK(rc == 0, "round %d: weft_run returned %d", round, rc);
        for (int i = 0; i < TREES; i++) {
            tree *t = &r->trees[i];
            /* Preorder numbering uses 2n - 1 indexes. */
            for (int k = 0; k < 2 * t->n - 1; k++)
                CHECK(atomic_load(&t->runs[k]) == 1, "round %d tree %d: node %d ran %d times",
                      round, i, k, atomic_load(&t->runs[k]));
            int quiet = !atomic_load(&t->cancelled);
            for (int k = 0; k < t->n; k++)
                if (t->action[k] == DO_FAIL || t->action[k] == DO_LEAVE_SCOPE)
                    quiet = 0;
            if (quiet) {
                CHECK(t->rc == 0, "round %d tree %d: %d without a failure", round, i, t->rc);
                CHECK(t->sum == (long)t->n * (t->n - 1) / 2, "round %d tree %d: sum %ld", round, i,
                      t->sum);
            }
            free(t->action);
            free(t->runs);
        }
        free(r);
        if (atomic_load(&failures))
            break;
    }
    if (atomic_load(&failures)) {
        fprintf(stderr, "fork_stress: %d check(s) failed\n", atomic_load(&failures));
        return 1;
    }
    /* Taken forks are what the test is about: where none was, it tried nothing. */
    if (rounds >= 20 && atomic_load(&taken) == 0) {
        fprintf(stderr, "fork_stress: no fork was ever taken by another worker\n");
        return 1;
    }
    printf("fork_stress: %d rounds, every function ran once, %ld forks taken\n", rounds,
           atomic_load(&taken));
    return 0;
}
