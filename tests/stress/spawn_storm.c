// SPDX-License-Identifier: MIT
/*
 * Spawn/join storm: random trees of tasks on 4 workers (more workers than the 2 cores of a
 * small machine, on purpose: preemption in the middle of the runtime's protocols is the point).
 *
 * Every node of a tree is a task with a slot of its own; it counts its run in its slot, then
 * spawns 0-4 children in one of three ways, at random:
 *   JOIN      open a scope, spawn the children into it, join it, check that the whole subtree
 *             below has ended, release it;
 *   CLOSE     the same with weft_scope_close (join and release in one call), checked after it;
 *   IMPLICIT  open one scope (or two nested ones), spawn the children into it, and return
 *             without joining: the runtime must join before the task counts as ended;
 *   SIBLINGS  spawn the children into the scope the node itself runs in (a spawn by a task
 *             that does not own the scope), so the node's parent scope joins them.
 * After each join (and at the end of each tree) every node below must have run exactly once
 * and finished: a join that returned early, a lost child or a child run twice shows up there.
 *
 * Two phases: a mixed storm of the three ways, and an implicit-join storm where every inner
 * node returns with its scopes still open.
 *
 * Usage: spawn_storm [trees per phase] [nodes per tree]   (default 24 6000; 3 300 under TSan)
 * Prints one summary line; exits 0 on success, 1 on any failure.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../support.h"
#include "weft.h"

#define WORKERS 4
#define MAX_DEPTH 12
#define TOP_NODES 4

/* Defaults: under ThreadSanitizer every task that starts on a stack of its own costs a TSan
 * fiber (milliseconds each), so the trees are fewer and smaller there to stay within about
 * 20 s on 2 cores; the interleavings TSan checks are the same. */
#ifdef UNDER_TSAN
#define DEFAULT_TREES 3
#define DEFAULT_BUDGET 300
#else
#define DEFAULT_TREES 24
#define DEFAULT_BUDGET 6000
#endif

enum { JOIN = 0, IMPLICIT = 1, SIBLINGS = 2, CLOSE = 3, LEAF = 4 };
enum { PHASE_MIXED = 0, PHASE_IMPLICIT = 1 };

typedef struct node {
    atomic_int runs;
    atomic_int done; /* set as the node's function returns (before any implicit join) */
    int depth;       /* written by the spawner before the spawn */
    int first_child; /* written by the node before it spawns its children */
    int nchild;
} node;

static node *nodes;
static int budget; /* nodes per tree at most */
static atomic_int next_id;
static int phase;
static uint64_t tree_seed;

static atomic_long total_runs;
static atomic_long errors;
static atomic_long early_joins;
static atomic_long joins_checked;
static atomic_long mode_count[5];

static void fail(const char *what, int id, int rc)
{
    if (atomic_fetch_add(&errors, 1) < 10)
        fprintf(stderr, "spawn_storm: %s (node %d, rc %d)\n", what, id, rc);
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

/* 1 if every node below `id` has run exactly once and finished. Only called once a join that
 * covers the subtree has returned, so the children's fields are visible. */
static int subtree_done(int id)
{
    const node *n = &nodes[id];
    for (int c = n->first_child; c < n->first_child + n->nchild; c++) {
        if (atomic_load(&nodes[c].done) != 1 || atomic_load(&nodes[c].runs) != 1)
            return 0;
        if (!subtree_done(c))
            return 0;
    }
    return 1;
}

static int node_fn(void *arg);

/* After `what` (a join or a close of node `id`'s scope) returned `rc`: it succeeded, and every
 * node below has ended. */
static void check_ended(int id, int rc, const char *what)
{
    if (rc) {
        char msg[32];
        snprintf(msg, sizeof(msg), "%s failed", what);
        fail(msg, id, rc);
    }
    atomic_fetch_add_explicit(&joins_checked, 1, memory_order_relaxed);
    if (!subtree_done(id)) {
        atomic_fetch_add(&early_joins, 1);
        char msg[64];
        snprintf(msg, sizeof(msg), "%s returned before the subtree ended", what);
        fail(msg, id, 0);
    }
}

static int spawn_children(weft_scope *s, int id, int from, int to)
{
    for (int c = from; c < to; c++) {
        nodes[c].depth = nodes[id].depth + 1;
        int rc = weft_spawn(s, node_fn, (void *)(intptr_t)c);
        if (rc) {
            fail("spawn failed", c, rc);
            return rc;
        }
    }
    return 0;
}

static int node_fn(void *arg)
{
    int id = (int)(intptr_t)arg;
    node *n = &nodes[id];
    if (atomic_fetch_add(&n->runs, 1) != 0)
        fail("node ran twice", id, 0);
    atomic_fetch_add_explicit(&total_runs, 1, memory_order_relaxed);

    uint64_t r = mix(tree_seed ^ (uint64_t)id * 0x9e3779b97f4a7c15ull);
    int want = n->depth < MAX_DEPTH ? (int)(r % 5) : 0;
    int first = want ? atomic_fetch_add(&next_id, want) : 0;
    if (first + want > budget)
        want = first < budget ? budget - first : 0;
    n->first_child = first;
    n->nchild = want;
    int mode = phase == PHASE_IMPLICIT ? IMPLICIT : (int)((r >> 8) % 4);
    if (want == 0)
        mode = LEAF;
    atomic_fetch_add_explicit(&mode_count[mode], 1, memory_order_relaxed);
    if ((r >> 16) % 4 == 0)
        weft_yield();

    int rc = 0;
    if (want > 0 && mode == SIBLINGS) {
        rc = spawn_children(weft_current_scope(), id, first, first + want);
    } else if (want > 0) {
        weft_scope *a, *b = NULL;
        if ((rc = weft_scope_open(&a, NULL))) {
            fail("scope_open failed", id, rc);
            return rc;
        }
        int half = want / 2;
        if (mode == IMPLICIT && (r >> 24) % 2 && half > 0) {
            /* Two nested scopes, both left open. */
            rc = spawn_children(a, id, first, first + half);
            if (!rc && !(rc = weft_scope_open(&b, NULL)))
                rc = spawn_children(b, id, first + half, first + want);
        } else {
            rc = spawn_children(a, id, first, first + want);
        }
        if (!rc && (r >> 32) % 3 == 0)
            weft_yield();
        if (mode == JOIN) {
            check_ended(id, weft_scope_join(a), "join");
            weft_scope_release(a);
        } else if (mode == CLOSE) {
            check_ended(id, weft_scope_close(a), "close");
        }
        /* IMPLICIT: return with `a` (and `b`) open. */
    }
    atomic_store(&n->done, 1);
    return rc;
}

static int tree_root(void *arg)
{
    (void)arg;
    weft_scope *s;
    int rc = weft_scope_open(&s, NULL);
    if (rc)
        return rc;
    int first = atomic_fetch_add(&next_id, TOP_NODES);
    for (int c = first; c < first + TOP_NODES; c++) {
        nodes[c].depth = 0;
        if ((rc = weft_spawn(s, node_fn, (void *)(intptr_t)c)))
            fail("spawn failed", c, rc);
    }
    int jrc = weft_scope_join(s);
    weft_scope_release(s);
    return rc ? rc : jrc;
}

/* One tree on a fresh runtime; returns its number of nodes, or -1 on failure. */
static long run_tree(uint64_t seed)
{
    memset(nodes, 0, sizeof(*nodes) * (size_t)budget);
    atomic_store(&next_id, 0);
    tree_seed = seed;
    long before = atomic_load(&total_runs);
    weft_config cfg = {.workers = WORKERS};
    int rc = weft_run(&cfg, tree_root, NULL);
    if (rc) {
        fail("weft_run failed", -1, rc);
        return -1;
    }
    int used = atomic_load(&next_id);
    if (used > budget)
        used = budget;
    long bad = 0;
    for (int i = 0; i < used; i++)
        bad += atomic_load(&nodes[i].runs) != 1 || atomic_load(&nodes[i].done) != 1;
    if (bad) {
        fail("nodes not run exactly once when weft_run returned", (int)bad, 0);
        return -1;
    }
    if (atomic_load(&total_runs) - before != used) {
        fail("total runs differ from the nodes spawned", used, 0);
        return -1;
    }
    return used;
}

int main(int argc, char **argv)
{
    long trees = argc > 1 ? atol(argv[1]) : DEFAULT_TREES;
    budget = argc > 2 ? atoi(argv[2]) : DEFAULT_BUDGET;
    if (trees < 1 || budget < TOP_NODES) {
        fprintf(stderr, "usage: %s [trees per phase] [nodes per tree]\n", argv[0]);
        return 2;
    }
    nodes = calloc((size_t)budget, sizeof(*nodes));
    if (!nodes) {
        fprintf(stderr, "spawn_storm: out of memory\n");
        return 1;
    }
    long nodes_total[2] = {0, 0};
    for (phase = PHASE_MIXED; phase <= PHASE_IMPLICIT; phase++) {
        for (long t = 0; t < trees && atomic_load(&errors) == 0; t++) {
            long n = run_tree(mix(0x5eed + (uint64_t)t * 7919 + (uint64_t)phase * 104729));
            if (n > 0)
                nodes_total[phase] += n;
        }
    }
    long errs = atomic_load(&errors);
    printf("spawn_storm: %s: %d workers, %ld trees per phase of at most %d nodes; mixed: %ld "
           "tasks, implicit: %ld "
           "tasks; inner nodes join %ld/implicit %ld/siblings %ld/close %ld, leaves %ld; subtree "
           "checks "
           "%ld, early joins %ld, errors %ld\n",
           errs ? "FAILED" : "OK", WORKERS, trees, budget, nodes_total[0], nodes_total[1],
           atomic_load(&mode_count[JOIN]), atomic_load(&mode_count[IMPLICIT]),
           atomic_load(&mode_count[SIBLINGS]), atomic_load(&mode_count[CLOSE]),
           atomic_load(&mode_count[LEAF]), atomic_load(&joins_checked), atomic_load(&early_joins),
           errs);
    free(nodes);
    return errs ? 1 : 0;
}
