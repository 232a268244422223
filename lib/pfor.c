// SPDX-License-Identifier: MIT
/*
 * Parallel loops: weft_parallel_for and weft_parallel_reduce, built on the public scope API.
 *
 * Splitting. A task that holds a range keeps its lower half and spawns the upper half as a
 * child, then halves what it kept again, down its left spine, until what it keeps is at most
 * the grain. It runs that piece itself, then joins the halves it gave away. The halves it spawned
 * sit in its queue oldest (largest) first, and a thief takes the oldest: one steal moves half of
 * what is left, so steals stay few and each one carries much work. A half nobody took runs in
 * the join, inline on the owner's stack, without a switch. Each task opens one scope for its
 * whole spine rather than one per halving, so a task costs one open and one close however deep
 * its spine runs. The default grain (a few pieces per worker) leaves room for stealing to even
 * out workers that run at different speeds, at a cost of a few dozen tasks per loop.
 *
 * Stopping. The loop's own scope (`top`, opened by the caller, fail-fast) is the one to cancel:
 * the first piece to fail records its code in the loop and cancels `top`, which reaches every
 * task of the loop however deep, also those in other branches than the failing one (a failure
 * that only climbed the joins would reach them late). Each piece and each halving checks the
 * recorded failure and weft_checkpoint() before it starts, so a piece that was not started when
 * the loop stopped never starts; a cancel or deadline of the caller reaches `top` through the
 * tree and stops it the same way. What the loop returns is its own record of the first failure,
 * not what the scope saw: the scope also counts the stopped tasks' codes.
 *
 * Reduce. A task's partial result for its whole range is built in the buffer its parent gave it:
 * its own piece maps into it, then the partials of the halves it spawned are folded in,
 * nearest first, which is index order. A task combines only when its join returned 0, that is
 * when every half it spawned covered its whole range: a stopped task never returns 0, so a
 * partial that was never written is never handed to `combine`.
 */
#include <errno.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "cancel.h"
#include "eh.h"
#include "errno_keep.h"
#include "errors.h"
#include "sched.h"
#include "scope.h"
#include "task.h"
#include "weft.h"

/* weft.h's bound on result_size. */
#define RESULT_MAX 4096
/* A 64-bit length halves at most 64 times. */
#define SPINE_MAX 64
/* Partial results a task keeps on its own stack before it allocates (bytes). */
#define LOCAL_PARTIALS 512

typedef struct loop {
    weft_range_fn fn; /* parallel_for; a reduce has a partial result to map into instead */
    weft_map_fn map;
    weft_combine_fn combine;
    void *arg;
    const void *identity;
    size_t size;   /* result_size; 0 for parallel_for */
    size_t stride; /* size rounded up to max_align_t, the distance between partials */
    uint64_t grain;
    weft_scope *top;    /* NULL while the loop is a single piece */
    atomic_int failure; /* the first failure, 0 while there is none */
    char *message;      /* what its piece recorded with weft_fail, or NULL (written once) */
} loop;

/* A half given to a child task; lives in the spawning task's frame until its join. */
typedef struct half {
    loop *l;
    int64_t begin;
    uint64_t len;
    void *acc; /* the half's partial result (reduce) */
} half;

static int run_half(void *p);

static int is_cancel(int rc)
{
    return rc == -ECANCELED || rc == -ETIMEDOUT;
}

/* `piece`: what the failing piece recorded with weft_fail, or NULL. */
static void record_failure(loop *l, int rc, const weft__failure *piece)
{
    int none = 0;
    if (!atomic_compare_exchange_strong(&l->failure, &none, rc))
        return;
    const char *m = weft__errors_message_for(piece, rc);
    if (m)
        l->message = weft__alloc_strdup(m); /* read after the joins; lost with the memory */
    /* With the reason a fail-fast scope gives when a child fails: to the pieces it stops, the
     * loop is one scope, however many the halving opened. */
    if (l->top)
        weft__cancel_scope(l->top, WEFT_CANCEL_FAILURE, -ECANCELED);
}

/* 0 while the loop may go on; else the code to stop with. */
static int stop_code(loop *l)
{
    int rc = atomic_load_explicit(&l->failure, memory_order_relaxed);
    return rc ? rc : weft_checkpoint();
}

static int64_t index_at(int64_t begin, uint64_t offset)
{
    /* In unsigned arithmetic: the offset may exceed INT64_MAX when begin is negative. */
    return (int64_t)((uint64_t)begin + offset);
}

/* `own_task`: the piece runs in a task of the loop's (a half), or in the caller inside the
 * loop's scope: the scopes it leaves open end with it. A loop of one piece runs it in the caller
 * with no scope of its own, as a plain call: what it leaves open is the caller's. */
static int run_piece(loop *l, int64_t begin, uint64_t len, void *acc, int own_task)
{
    int rc = stop_code(l);
    if (rc)
        return rc;
    int64_t end = index_at(begin, len);
    /* The piece's weft_fail records into a failure of its own: the task running it may be the
     * loop's caller, whose failure it must not take over (nor leave a message on). */
    weft__task *t = weft__task_self();
    weft__failure *outer = t->failure;
    t->failure = NULL;
    /* Nor does it see an exception its caller is handling (eh.h), as a piece another task runs
     * does not. */
    weft__eh_state caller = {NULL, 0};
    weft__eh_take(weft__sched_worker_leaf()->eh, &caller);
    weft_scope *mark = t->owned;
    if (!acc) {
        rc = l->fn(begin, end, l->arg);
    } else {
        memcpy(acc, l->identity, l->size);
        rc = l->map(begin, end, acc, l->arg);
    }
    /* Scopes the piece opened and left open end with it, as a task's do (weft.h): the loop's
     * scope is nested around them and could not close, and the halves this frame spawned
     * would outlive it. Their failures become the piece's. */
    if (__builtin_expect(t->owned != mark, 0) && own_task)
        rc = weft__scope_release_owned_since(t, mark, rc);
    weft__eh_give(weft__sched_worker_leaf()->eh, &caller);
    weft__failure *piece = t->failure;
    t->failure = outer;
    if (rc)
        record_failure(l, rc, piece);
    if (piece)
        weft__errors_free_failure(piece);
    return rc;
}

/* Runs [begin, begin + len) in the calling task, which owns the open scope `s`, and closes `s`.
 * Returns 0 only when the whole range ran (and, for a reduce, its result is in `acc`). */
static int run_range(loop *l, weft_scope *s, int64_t begin, uint64_t len, void *acc)
{
    half halves[SPINE_MAX];
    alignas(max_align_t) unsigned char local[LOCAL_PARTIALS];
    unsigned char *partials = NULL;
    int rc = 0;
    if (l->size) {
        size_t depth = 0;
        for (uint64_t k = len; k > l->grain; k /= 2)
            depth++;
        size_t need = depth * l->stride;
        partials = need <= sizeof(local) ? local : weft__alloc_malloc(need);
        if (!partials) {
            rc = -ENOMEM;
            record_failure(l, rc, NULL);
        }
    }
    int spawned = 0;
    while (!rc && len > l->grain) {
        if ((rc = stop_code(l)))
            break;
        uint64_t keep = len / 2;
        half *h = &halves[spawned];
        h->l = l;
        h->begin = index_at(begin, keep);
        h->len = len - keep;
        h->acc = partials ? partials + (size_t)spawned * l->stride : NULL;
        if ((rc = weft_spawn(s, run_half, h))) {
            if (!is_cancel(rc))
                record_failure(l, rc, NULL);
            break;
        }
        spawned++;
        len = keep;
    }
    if (!rc)
        rc = run_piece(l, begin, len, acc, 1);
    int joined = weft_scope_close(s);
    if (!rc)
        rc = joined;
    if (!rc && l->size)
        for (int i = spawned - 1; i >= 0; i--)
            l->combine(acc, halves[i].acc, l->arg);
    if (partials != local)
        free(partials);
    return rc;
}

static int run_half(void *p)
{
    half *h = p;
    loop *l = h->l;
    if (h->len <= l->grain)
        return run_piece(l, h->begin, h->len, h->acc, 1);
    weft_scope *s;
    int rc = weft_scope_open(&s, NULL);
    if (rc) {
        if (!is_cancel(rc))
            record_failure(l, rc, NULL);
        return rc;
    }
    return run_range(l, s, h->begin, h->len, h->acc);
}

static int run_loop(loop *l, unsigned workers, int64_t begin, int64_t end, int64_t grain, void *acc)
{
    uint64_t len = (uint64_t)end - (uint64_t)begin;
    if (grain > 0) {
        l->grain = (uint64_t)grain;
    } else {
        l->grain = len / (8 * (uint64_t)workers);
        if (l->grain == 0)
            l->grain = 1;
    }
    atomic_init(&l->failure, 0);
    l->top = NULL;
    l->message = NULL;
    int rc;
    if (len <= l->grain) {
        rc = run_piece(l, begin, len, acc, 0); /* one piece: no scope to open */
    } else {
        rc = weft_scope_open(&l->top, &(weft_scope_opts){.policy = WEFT_FAIL_FAST});
        if (rc)
            return rc;
        rc = run_range(l, l->top, begin, len, acc);
        int first = atomic_load(&l->failure);
        rc = first ? first : rc;
    }
    /* The failing piece's message goes with the code the loop returns, as if the caller had
     * recorded it (weft_fail): a caller that returns that code fails with it. */
    if (l->message && rc == atomic_load(&l->failure))
        weft_fail(rc, "%s", l->message);
    free(l->message);
    return rc;
}

static int parallel_for_body(int64_t begin, int64_t end, int64_t grain, weft_range_fn fn, void *arg)
{
    if (!weft_current_scope())
        return -EPERM;
    unsigned workers = weft_workers();
    if (!fn || end < begin || grain < 0)
        return -EINVAL;
    if (end == begin)
        return 0;
    loop l = {.fn = fn, .arg = arg};
    return run_loop(&l, workers, begin, end, grain, NULL);
}

int weft_parallel_for(int64_t begin, int64_t end, int64_t grain, weft_range_fn fn, void *arg)
{
    int kept = weft__errno_keep();
    int rc = parallel_for_body(begin, end, grain, fn, arg);
    weft__errno_put_back(kept);
    return rc;
}

static int parallel_reduce_body(int64_t begin, int64_t end, int64_t grain, size_t result_size,
                                const void *identity, weft_map_fn map, weft_combine_fn combine,
                                void *arg, void *result)
{
    if (!weft_current_scope())
        return -EPERM;
    unsigned workers = weft_workers();
    if (end < begin || grain < 0 || result_size == 0 || result_size > RESULT_MAX || !identity ||
        !map || !combine || !result)
        return -EINVAL;
    if (end == begin) {
        memcpy(result, identity, result_size); /* the fold of nothing */
        return 0;
    }
    size_t align = alignof(max_align_t);
    loop l = {.map = map,
              .combine = combine,
              .arg = arg,
              .identity = identity,
              .size = result_size,
              .stride = (result_size + align - 1) / align * align};
    /* The result stays untouched unless every piece succeeded, so the fold goes elsewhere. */
    alignas(max_align_t) unsigned char local[LOCAL_PARTIALS];
    void *acc = result_size <= sizeof(local) ? local : weft__alloc_malloc(result_size);
    if (!acc)
        return -ENOMEM;
    int rc = run_loop(&l, workers, begin, end, grain, acc);
    if (rc == 0)
        memcpy(result, acc, result_size);
    if (acc != local)
        free(acc);
    return rc;
}

int weft_parallel_reduce(int64_t begin, int64_t end, int64_t grain, size_t result_size,
                         const void *identity, weft_map_fn map, weft_combine_fn combine, void *arg,
                         void *result)
{
    int kept = weft__errno_keep();
    int rc =
        parallel_reduce_body(begin, end, grain, result_size, identity, map, combine, arg, result);
    weft__errno_put_back(kept);
    return rc;
}
