// SPDX-License-Identifier: MIT
/* Chase-Lev deque; see deque.h for the contract and the memory reclamation argument. */
#include "deque.h"
#include "alloc.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>

#include "barrier.h"

static weft__deque_ring *ring_new(int64_t capacity)
{
    weft__deque_ring *r = weft__alloc_malloc(sizeof(*r) + (size_t)capacity * sizeof(r->slot[0]));
    if (!r)
        return NULL;
    r->mask = capacity - 1;
    r->older = NULL;
    return r;
}

int weft__deque_init(weft__deque *d, int64_t capacity_log2)
{
    weft__deque_ring *r = ring_new((int64_t)1 << capacity_log2);
    if (!r)
        return -ENOMEM;
    atomic_init(&d->top, 0);
    atomic_init(&d->bottom, 0);
    d->top_seen = 0;
    atomic_init(&d->ring, r);
    d->retired = NULL;
    d->solo = 0;
    /* Every item published until weft__deque_set_private says otherwise. */
    d->split_own = INT64_MAX;
    atomic_init(&d->split, INT64_MAX);
    atomic_init(&d->request, 0);
    return 0;
}

void weft__deque_set_private(weft__deque *d)
{
    d->split_own = 0;
    atomic_store_explicit(&d->split, 0, memory_order_relaxed);
}

void weft__deque_destroy(weft__deque *d)
{
    free(atomic_load_explicit(&d->ring, memory_order_relaxed));
    for (weft__deque_ring *r = d->retired, *next; r; r = next) {
        next = r->older;
        free(r);
    }
}

weft__deque_ring *weft__deque_grow(weft__deque *d, weft__deque_ring *old, int64_t t, int64_t b)
{
    weft__deque_ring *r = ring_new((old->mask + 1) * 2);
    if (!r)
        return NULL;
    for (int64_t i = t; i < b; i++) {
        void *x = atomic_load_explicit(&old->slot[i & old->mask], memory_order_relaxed);
        atomic_store_explicit(&r->slot[i & r->mask], x, memory_order_relaxed);
    }
    old->older = d->retired;
    d->retired = old;
    atomic_store_explicit(&d->ring, r, memory_order_release);
    return r;
}

/* The rescue's barrier (barrier.h). The deque's model check, tests/deque_model.c, puts a fence
 * of its own in its place. */
#ifndef WEFT__DEQUE_HEAVY_BARRIER
#define WEFT__DEQUE_HEAVY_BARRIER() weft__barrier_heavy()
#endif

/* A thief's claim of item `t`, known to be there. */
static void *claim(weft__deque *d, int64_t t)
{
    weft__deque_ring *r = atomic_load_explicit(&d->ring, memory_order_acquire);
    void *x = atomic_load_explicit(&r->slot[t & r->mask], memory_order_relaxed);
    if (!atomic_compare_exchange_strong_explicit(&d->top, &t, t + 1, memory_order_seq_cst,
                                                 memory_order_relaxed))
        return WEFT__DEQUE_ABORT;
    return x;
}

void *weft__deque_steal_any(weft__deque *d)
{
    assert(!d->solo); /* its owner takes items without racing for them */
    int64_t t = atomic_load_explicit(&d->top, memory_order_acquire);
    atomic_thread_fence(memory_order_seq_cst);
    int64_t b = atomic_load_explicit(&d->bottom, memory_order_acquire);
    if (t >= b)
        return WEFT__DEQUE_EMPTY;
    if (t >= atomic_load_explicit(&d->split, memory_order_acquire)) {
        /* Asked once: a thief that spins over the queue must not take the owner's line away
         * at every look. */
        if (!atomic_load_explicit(&d->request, memory_order_relaxed))
            atomic_store_explicit(&d->request, 1, memory_order_release); /* see publish */
        return WEFT__DEQUE_PRIVATE;
    }
    return claim(d, t);
}

void *weft__deque_steal_rescue(weft__deque *d)
{
    assert(!d->solo);
    int64_t t = atomic_load_explicit(&d->top, memory_order_acquire);
    atomic_thread_fence(memory_order_seq_cst);
    /* The owner's pops of private items do not fence: this barrier, run on its CPU, stands in
     * for it (deque.h). Without it nothing may be taken. */
    if (atomic_load_explicit(&d->split, memory_order_relaxed) != INT64_MAX &&
        WEFT__DEQUE_HEAVY_BARRIER() != 0)
        return WEFT__DEQUE_EMPTY;
    int64_t b = atomic_load_explicit(&d->bottom, memory_order_acquire);
    if (t >= b)
        return WEFT__DEQUE_EMPTY;
    return claim(d, t);
}
