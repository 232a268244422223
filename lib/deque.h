// SPDX-License-Identifier: MIT
/*
 * Chase-Lev work-stealing deque of pointers (Chase & Lev, SPAA 2005), with the C11 memory orders
 * proven correct by Lê, Pop, Cohen and Zappa Nardelli (PPoPP 2013).
 *
 * Contract (the names say who may call): the one owner thread pushes and pops at the bottom
 * (LIFO); any thread, the owner included, steals at the top (FIFO). Written with <stdatomic.h>
 * rather than ck_pr so that ThreadSanitizer sees every order it relies on.
 *
 * A deque no thief will ever touch (every deque of a runtime with one worker) is marked solo:
 * its owner then pops and takes the oldest with plain loads and stores, without the StoreLoad
 * fence and the CAS on `top` that only a concurrent thief makes necessary (on skynet with one
 * worker the fence alone was a tenth of the time and more).
 *
 * A deque with private items (a spawn queue of a runtime with several workers, where the kernel has
 * membarrier(2)) keeps the fence off its owner's common pop as well. Its items below `split` are
 * published: thieves steal them as from any Chase-Lev deque, and the owner pops them with the
 * fence. Items at `split` and above are private: no ordinary steal takes them, so the owner pops
 * them with a compiler barrier only. A thief that finds items but none published raises `request`;
 * the owner, at its next push or pop (or its worker's next pick of a task, weft__deque_answer),
 * publishes what it holds, only the older items of a longer queue (a release store of `split`,
 * which never goes down: every later pop below it fences, so the owner publishes what thieves take
 * first, the oldest, and keeps the fence off the rest; a thief that wants more asks again). An
 * owner that makes none of those (a task computing for a long while after its spawns) would keep
 * its items to itself; so a thief about to give up takes the oldest one anyway, with a rescue
 * steal: the Chase-Lev steal with its fence replaced by the asymmetric barrier (barrier.h), which
 * falls somewhere in the owner's pop and, wherever it falls, orders the pop's store of `bottom` and
 * load of `top` as the fence would have. An ordinary thief never races an unfenced pop for an item,
 * since it takes only items below a `split` that the owner stored and never lowers, and the owner
 * pops unfenced only at or above it. Rescues cost some 10 us (an interrupt to each CPU running the
 * process) and are rare: in fork-join code the owner pushes or pops every few nanoseconds and
 * answers a request at once (benchmarks/LOG.md, "A spawn queue with private items").
 *
 * Where that barrier is not to be had (ThreadSanitizer builds, kernels without membarrier) every
 * deque stays public: `split` then stays at INT64_MAX, every item is published, every pop
 * fences, and nothing asks. One code path serves both.
 *
 * Growth doubles the ring. A thief may still be reading the old ring, so old rings are kept
 * until the deque is destroyed: their total size is less than the final ring's, so this bounds
 * the memory at twice the high-water mark without an epoch scheme on the steal path.
 */
#ifndef WEFT_DEQUE_H
#define WEFT_DEQUE_H

#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct weft__deque_ring {
    int64_t mask;
    struct weft__deque_ring *older;
    _Atomic(void *) slot[];
} weft__deque_ring;

typedef struct weft__deque {
    _Alignas(64) _Atomic int64_t top;
    _Alignas(64) _Atomic int64_t bottom;
    int64_t top_seen;  /* owner only: `top` as last loaded; top never decreases */
    int64_t split_own; /* owner only: `split` as last stored */
    _Atomic(weft__deque_ring *) ring;
    weft__deque_ring *retired; /* owner only: rings replaced by growth */
    int solo;                  /* no thief: see weft__deque_set_solo */
    /* Read by every steal, written by the owner when it publishes and by a thief that asks: a
     * line of their own, away from `top`, which every steal writes, and `bottom`. */
    _Alignas(64) _Atomic int64_t split; /* items below it are published */
    _Atomic int request;                /* a thief found only private items */
} weft__deque;

/** What a steal returned when it did not get an item. */
#define WEFT__DEQUE_EMPTY ((void *)0)
#define WEFT__DEQUE_ABORT ((void *)1)   /* lost a race with another thief or the owner; retry */
#define WEFT__DEQUE_PRIVATE ((void *)2) /* items, none published: the owner was asked to */

int weft__deque_init(weft__deque *d, int64_t capacity_log2);
void weft__deque_destroy(weft__deque *d);

/** Before the first push: no thread but the owner will ever use `d` (weft__deque_steal_any
 *  must then not be called on it), so the owner's operations need no synchronisation. */
static inline void weft__deque_set_solo(weft__deque *d, int solo)
{
    d->solo = solo;
}

/** Before the first push, and only where weft__barrier_supported (barrier.h) said yes: the owner
 *  keeps its items private until a thief asks for them (see above). */
void weft__deque_set_private(weft__deque *d);

/** Any thread. The oldest published item, WEFT__DEQUE_EMPTY, WEFT__DEQUE_ABORT, or
 *  WEFT__DEQUE_PRIVATE when every item is private (the owner is asked to publish them). */
void *weft__deque_steal_any(weft__deque *d);

/** Any thread, rarely (it interrupts every CPU running the process): the oldest item, private
 *  or not, or WEFT__DEQUE_EMPTY or WEFT__DEQUE_ABORT. For a thief that found only private items
 *  and is about to give up. */
void *weft__deque_steal_rescue(weft__deque *d);

/** Any thread: a racy estimate of the number of items (exact for the owner when no thief runs). */
static inline int64_t weft__deque_size_estimate(weft__deque *d)
{
    int64_t b = atomic_load_explicit(&d->bottom, memory_order_relaxed);
    int64_t t = atomic_load_explicit(&d->top, memory_order_relaxed);
    return b - t;
}

/* ---- the owner's operations, inline: they are on every spawn and join ------------------- */

weft__deque_ring *weft__deque_grow(weft__deque *d, weft__deque_ring *old, int64_t t, int64_t b);

/** What a thief's request publishes (weft__deque_publish): a queue of at most
 *  WEFT__DEQUE_PUBLISH_WHOLE items whole; of a longer one, all but its newer half, and never more
 *  than WEFT__DEQUE_KEEP_PRIVATE of the newest kept back. */
#define WEFT__DEQUE_PUBLISH_WHOLE 4
#define WEFT__DEQUE_KEEP_PRIVATE 32

/** Owner only, when a thief asked: publishes items below `b`, the older ones (see above). Inline
 *  although rare: a call here, even one not taken, made the spawn that holds it keep more
 *  registers. */
static inline void weft__deque_publish(weft__deque *d, int64_t b)
{
    /* The request first: a thief that asks again after this sees what is published now, or asks
     * the next push or pop. */
    atomic_store_explicit(&d->request, 0, memory_order_relaxed);
    /* Not all of them: `split` never goes down, and every later pop below it pays the fence. In
     * fork-join code the queue holds one item per level of the recursion, and the owner is asked
     * while deep: nearly all its later forks push below the bottom it had then, and with
     * everything published, nearly every pop after the first steal fenced (a quarter of fib's
     * time at two workers). The older items are the largest pieces, which are what thieves
     * take. A short queue goes out whole: a thief that took its one published item would ask
     * again at once for the next (a flat fan-out of short tasks, where the queue stays short
     * and thieves take from it all the time, ran 5% slower). A long one (a flat fan-out again,
     * thousands of spawns) keeps back no more than a recursion's spine: an owner that spawns and
     * then computes does not answer, and what it kept back goes one rescue at a time. A `top`
     * older than the true one only publishes less; the acquire pairs with the thief's release
     * of `request`, so that `top` is at least what the thief saw, and the answer publishes at
     * least one item it could not take. */
    atomic_thread_fence(memory_order_acquire);
    int64_t t = atomic_load_explicit(&d->top, memory_order_relaxed);
    int64_t n = b - t;
    int64_t keep = n <= WEFT__DEQUE_PUBLISH_WHOLE ? 0 : n / 2;
    if (keep > WEFT__DEQUE_KEEP_PRIVATE)
        keep = WEFT__DEQUE_KEEP_PRIVATE;
    int64_t s = b - keep;
    if (s > d->split_own) {
        d->split_own = s;
        atomic_store_explicit(&d->split, s, memory_order_release);
    }
}

/* Owner only: whether a thief asked for the private items (never, in a deque without any). */
static inline int weft__deque_asked(weft__deque *d)
{
    return __builtin_expect(atomic_load_explicit(&d->request, memory_order_relaxed), 0);
}

/** Owner only: publishes its items (the older ones of a longer queue) if a thief asked. After each
 *  push, and where the owner is between pushes and pops (its worker picking its next task), so that
 *  a thief need not wait for its next spawn or join. */
static inline void weft__deque_answer(weft__deque *d)
{
    if (weft__deque_asked(d))
        weft__deque_publish(d, atomic_load_explicit(&d->bottom, memory_order_relaxed));
}

/** Owner only. Returns 0, or -ENOMEM if the ring had to grow and could not. */
static inline int weft__deque_push_owner(weft__deque *d, void *item)
{
    int64_t b = atomic_load_explicit(&d->bottom, memory_order_relaxed);
    weft__deque_ring *r = atomic_load_explicit(&d->ring, memory_order_relaxed);
    /* The ring has room if it had with an older `top` (top only grows), so `top` is loaded only
     * when that says full: a thief's CAS on top then costs the owner no cache miss per push. */
    if (__builtin_expect(b - d->top_seen > r->mask, 0)) {
        int64_t t = atomic_load_explicit(&d->top, memory_order_acquire);
        d->top_seen = t;
        if (b - t > r->mask) {
            r = weft__deque_grow(d, r, t, b);
            if (!r)
                return -ENOMEM;
        }
    }
    atomic_store_explicit(&r->slot[b & r->mask], item, memory_order_relaxed);
    /* A release store rather than the paper's release fence plus relaxed store: the same
     * instruction on x86 and AArch64 (stlr), and ThreadSanitizer understands it. */
    atomic_store_explicit(&d->bottom, b + 1, memory_order_release);
    weft__deque_answer(d);
    return 0;
}

/** Owner only: 1 when a push needs neither to look at `top` nor to grow the ring (it had room
 *  with an older `top`, and `top` only grows). */
static inline int weft__deque_has_room_owner(const weft__deque *d)
{
    int64_t b = atomic_load_explicit(&d->bottom, memory_order_relaxed);
    const weft__deque_ring *r = atomic_load_explicit(&d->ring, memory_order_relaxed);
    return b - d->top_seen <= r->mask;
}

/** Owner only, after weft__deque_has_room_owner said yes: weft__deque_push_owner without the
 *  room check, so without a call. */
static inline void weft__deque_push_owner_room(weft__deque *d, void *item)
{
    int64_t b = atomic_load_explicit(&d->bottom, memory_order_relaxed);
    weft__deque_ring *r = atomic_load_explicit(&d->ring, memory_order_relaxed);
    atomic_store_explicit(&r->slot[b & r->mask], item, memory_order_relaxed);
    atomic_store_explicit(&d->bottom, b + 1, memory_order_release);
    weft__deque_answer(d);
}

/** Owner only. The newest item, or NULL. */
static inline void *weft__deque_pop_owner(weft__deque *d)
{
    int64_t b = atomic_load_explicit(&d->bottom, memory_order_relaxed) - 1;
    weft__deque_ring *r = atomic_load_explicit(&d->ring, memory_order_relaxed);
    if (d->solo) {
        if (b < atomic_load_explicit(&d->top, memory_order_relaxed))
            return NULL;
        atomic_store_explicit(&d->bottom, b, memory_order_relaxed);
        return atomic_load_explicit(&r->slot[b & r->mask], memory_order_relaxed);
    }
    if (weft__deque_asked(d))
        weft__deque_publish(d, b); /* all but the item this pop takes */
    atomic_store_explicit(&d->bottom, b, memory_order_relaxed);
    if (b < d->split_own) {
        atomic_thread_fence(memory_order_seq_cst); /* published: ordinary thieves may race */
    } else {
        /* Private: only a rescue steal may race, and its membarrier orders this pop's store and
         * load (see above). The compiler must keep them in this order all the same. */
        atomic_signal_fence(memory_order_seq_cst);
    }
    int64_t t = atomic_load_explicit(&d->top, memory_order_relaxed);
    if (t > b) {
        atomic_store_explicit(&d->bottom, b + 1, memory_order_relaxed);
        return NULL;
    }
    void *x = atomic_load_explicit(&r->slot[b & r->mask], memory_order_relaxed);
    if (t == b) {
        /* The last item: race the thieves for it on top. */
        if (!atomic_compare_exchange_strong_explicit(&d->top, &t, t + 1, memory_order_seq_cst,
                                                     memory_order_relaxed))
            x = NULL;
        atomic_store_explicit(&d->bottom, b + 1, memory_order_relaxed);
    }
    return x;
}

/** Owner only: the item the next pop_owner would return, without taking it (a thief may still
 *  take it first). NULL when empty. */
static inline void *weft__deque_peek_owner(weft__deque *d)
{
    int64_t b = atomic_load_explicit(&d->bottom, memory_order_relaxed);
    int64_t t = atomic_load_explicit(&d->top, memory_order_relaxed);
    if (b <= t)
        return NULL;
    weft__deque_ring *r = atomic_load_explicit(&d->ring, memory_order_relaxed);
    return atomic_load_explicit(&r->slot[(b - 1) & r->mask], memory_order_relaxed);
}

/** Owner only: at least the number of items (exact when no thief took one since the owner last
 *  looked at `top`); `top` is loaded again only when the answer would reach `limit`. */
static inline int64_t weft__deque_size_owner(weft__deque *d, int64_t limit)
{
    int64_t b = atomic_load_explicit(&d->bottom, memory_order_relaxed);
    if (b - d->top_seen >= limit)
        d->top_seen = atomic_load_explicit(&d->top, memory_order_acquire);
    return b - d->top_seen;
}

/** Owner only, a hint: the item `k` places after the oldest, NULL when there are fewer. A thief
 *  may take it meanwhile, so it may only be used for prefetching. */
static inline void *weft__deque_peek_oldest_owner(weft__deque *d, int64_t k)
{
    int64_t t = atomic_load_explicit(&d->top, memory_order_relaxed);
    int64_t b = atomic_load_explicit(&d->bottom, memory_order_relaxed);
    if (t + k >= b)
        return NULL;
    weft__deque_ring *r = atomic_load_explicit(&d->ring, memory_order_relaxed);
    return atomic_load_explicit(&r->slot[(t + k) & r->mask], memory_order_relaxed);
}

/** Owner only: the oldest item, like a steal, but without the fence a thief needs (the owner
 *  knows `bottom`, since only it writes it). Thieves may still race for the item: the CAS on
 *  `top` settles that. NULL when empty; WEFT__DEQUE_ABORT when a thief won. */
static inline void *weft__deque_steal_owner(weft__deque *d)
{
    int64_t t = atomic_load_explicit(&d->top, memory_order_acquire);
    int64_t b = atomic_load_explicit(&d->bottom, memory_order_relaxed);
    if (t >= b)
        return WEFT__DEQUE_EMPTY;
    weft__deque_ring *r = atomic_load_explicit(&d->ring, memory_order_relaxed);
    void *x = atomic_load_explicit(&r->slot[t & r->mask], memory_order_relaxed);
    if (d->solo) {
        atomic_store_explicit(&d->top, t + 1, memory_order_relaxed);
        return x;
    }
    if (!atomic_compare_exchange_strong_explicit(&d->top, &t, t + 1, memory_order_seq_cst,
                                                 memory_order_relaxed))
        return WEFT__DEQUE_ABORT;
    return x;
}

#endif
