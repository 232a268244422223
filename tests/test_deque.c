// SPDX-License-Identifier: MIT
/*
 * The Chase-Lev deque (lib/deque.h), on one thread: the owner's end is LIFO, the thieves' end
 * FIFO, the ring grows past its first capacity without losing or reordering anything, and peek
 * shows what the next pop returns. The concurrent contract is in stress/deque_stress.c.
 */
#include <criterion/criterion.h>
#include <stdint.h>

#include "deque.h"

/* Items are addresses in this array: never NULL, never WEFT__DEQUE_ABORT. */
#define N 5000
static char items[N];

static void *item(int i)
{
    return &items[i];
}

static int index_of(void *x)
{
    return (int)((char *)x - items);
}

static void *steal(weft__deque *d)
{
    /* With one thread nothing can make a steal lose a race. */
    void *x = weft__deque_steal_any(d);
    cr_assert_neq(x, WEFT__DEQUE_ABORT, "a steal aborted with no other thread");
    return x;
}

Test(deque, empty)
{
    weft__deque d;
    cr_assert_eq(weft__deque_init(&d, 3), 0);
    cr_assert_null(weft__deque_pop_owner(&d));
    cr_assert_eq(weft__deque_steal_any(&d), WEFT__DEQUE_EMPTY);
    cr_assert_null(weft__deque_peek_owner(&d));
    cr_assert_eq(weft__deque_size_estimate(&d), 0);
    weft__deque_destroy(&d);
}

Test(deque, pop_is_lifo)
{
    weft__deque d;
    cr_assert_eq(weft__deque_init(&d, 4), 0);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(weft__deque_push_owner(&d, item(i)), 0);
    cr_assert_eq(weft__deque_size_estimate(&d), 10);
    for (int i = 9; i >= 0; i--) {
        void *x = weft__deque_pop_owner(&d);
        cr_assert_eq(x, item(i), "pop %d returned item %d", 9 - i, x ? index_of(x) : -1);
    }
    cr_assert_null(weft__deque_pop_owner(&d));
    cr_assert_eq(weft__deque_size_estimate(&d), 0);
    weft__deque_destroy(&d);
}

Test(deque, steal_is_fifo)
{
    weft__deque d;
    cr_assert_eq(weft__deque_init(&d, 4), 0);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(weft__deque_push_owner(&d, item(i)), 0);
    for (int i = 0; i < 10; i++) {
        void *x = steal(&d);
        cr_assert_eq(x, item(i), "steal %d returned item %d", i,
                     x == WEFT__DEQUE_EMPTY ? -1 : index_of(x));
    }
    cr_assert_eq(weft__deque_steal_any(&d), WEFT__DEQUE_EMPTY);
    cr_assert_null(weft__deque_pop_owner(&d));
    weft__deque_destroy(&d);
}

Test(deque, both_ends_meet)
{
    /* Steals take the oldest, pops the newest, and the last item goes to exactly one of them. */
    weft__deque d;
    cr_assert_eq(weft__deque_init(&d, 3), 0);
    for (int i = 0; i < 7; i++)
        cr_assert_eq(weft__deque_push_owner(&d, item(i)), 0);
    cr_assert_eq(steal(&d), item(0));
    cr_assert_eq(weft__deque_pop_owner(&d), item(6));
    cr_assert_eq(steal(&d), item(1));
    cr_assert_eq(weft__deque_pop_owner(&d), item(5));
    cr_assert_eq(weft__deque_pop_owner(&d), item(4));
    cr_assert_eq(steal(&d), item(2));
    cr_assert_eq(weft__deque_size_estimate(&d), 1);
    cr_assert_eq(weft__deque_pop_owner(&d), item(3)); /* the last item, through the CAS */
    cr_assert_eq(weft__deque_steal_any(&d), WEFT__DEQUE_EMPTY);
    cr_assert_null(weft__deque_pop_owner(&d));
    /* Usable again after running empty from both ends. */
    cr_assert_eq(weft__deque_push_owner(&d, item(42)), 0);
    cr_assert_eq(steal(&d), item(42));
    cr_assert_eq(weft__deque_push_owner(&d, item(43)), 0);
    cr_assert_eq(weft__deque_pop_owner(&d), item(43));
    weft__deque_destroy(&d);
}

Test(deque, grows_past_initial_capacity)
{
    /* Capacity 2^1: N items force ten or more doublings. */
    weft__deque d;
    cr_assert_eq(weft__deque_init(&d, 1), 0);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(weft__deque_push_owner(&d, item(i)), 0);
        cr_assert_eq(weft__deque_size_estimate(&d), i + 1);
    }
    /* Half from the top in FIFO order, the rest from the bottom in LIFO order. */
    for (int i = 0; i < N / 2; i++)
        cr_assert_eq(steal(&d), item(i), "steal %d after growth", i);
    for (int i = N - 1; i >= N / 2; i--)
        cr_assert_eq(weft__deque_pop_owner(&d), item(i), "pop of item %d after growth", i);
    cr_assert_null(weft__deque_pop_owner(&d));
    weft__deque_destroy(&d);
}

Test(deque, grows_with_wrapped_indices)
{
    /* Steal some first so that top is not 0 and the live items wrap around the ring when it
     * grows: the copy must follow the indices, not the slots. */
    weft__deque d;
    cr_assert_eq(weft__deque_init(&d, 2), 0);
    int next = 0, oldest = 0;
    for (int round = 0; round < 50; round++) {
        for (int k = 0; k < 3 + round; k++)
            cr_assert_eq(weft__deque_push_owner(&d, item(next++)), 0);
        for (int k = 0; k < 2; k++)
            cr_assert_eq(steal(&d), item(oldest++), "round %d", round);
    }
    cr_assert_eq(weft__deque_size_estimate(&d), next - oldest);
    while (oldest < next)
        cr_assert_eq(steal(&d), item(oldest++));
    cr_assert_eq(weft__deque_steal_any(&d), WEFT__DEQUE_EMPTY);
    weft__deque_destroy(&d);
}

Test(deque, peek_shows_next_pop)
{
    weft__deque d;
    cr_assert_eq(weft__deque_init(&d, 2), 0);
    for (int i = 0; i < 20; i++) {
        cr_assert_eq(weft__deque_push_owner(&d, item(i)), 0);
        cr_assert_eq(weft__deque_peek_owner(&d), item(i), "peek after pushing %d", i);
    }
    cr_assert_eq(weft__deque_size_estimate(&d), 20, "peek must not take anything");
    cr_assert_eq(steal(&d), item(0));
    for (int i = 19; i >= 1; i--) {
        void *p = weft__deque_peek_owner(&d);
        cr_assert_eq(p, item(i));
        cr_assert_eq(weft__deque_pop_owner(&d), p);
    }
    cr_assert_null(weft__deque_peek_owner(&d));
    weft__deque_destroy(&d);
}

/* The spawn path's push: room is claimed only while the ring surely has it, items pushed that
 * way pop and steal like any other, and a push that grows the ring makes room again. */
Test(deque, room_check_and_unchecked_push)
{
    weft__deque d;
    cr_assert_eq(weft__deque_init(&d, 2), 0); /* four slots */
    for (int i = 0; i < 4; i++) {
        cr_assert(weft__deque_has_room_owner(&d), "room for item %d of 4", i);
        weft__deque_push_owner_room(&d, item(i));
    }
    cr_assert_not(weft__deque_has_room_owner(&d), "a full ring claimed room");
    cr_assert_eq(steal(&d), item(0));
    /* `top` moved, but the owner has not looked at it since: still no room claimed. */
    cr_assert_not(weft__deque_has_room_owner(&d));
    cr_assert_eq(weft__deque_push_owner(&d, item(4)), 0); /* looks at `top`: fits */
    cr_assert_eq(weft__deque_push_owner(&d, item(5)), 0); /* grows */
    cr_assert(weft__deque_has_room_owner(&d));
    weft__deque_push_owner_room(&d, item(6));
    for (int i = 6; i >= 1; i--)
        cr_assert_eq(weft__deque_pop_owner(&d), item(i));
    cr_assert_null(weft__deque_pop_owner(&d));
    weft__deque_destroy(&d);
}

/* A deterministic pseudo-random mix of push, pop and steal, checked against an array model of
 * the deque. A solo deque takes the oldest with steal_owner (no thief may call steal_any). */
static void check_against_model(int solo)
{
    weft__deque d;
    cr_assert_eq(weft__deque_init(&d, 1), 0);
    weft__deque_set_solo(&d, solo);
    static int model[200000];
    int lo = 0, hi = 0, next = 0;
    uint64_t rng = 0x243f6a8885a308d3ull;
    for (int step = 0; step < 200000; step++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        unsigned op = (unsigned)(rng % 8);
        if (op < 4 && next < N) {
            model[hi++] = next;
            cr_assert_eq(weft__deque_push_owner(&d, item(next++)), 0);
        } else if (op < 6) {
            void *x = weft__deque_pop_owner(&d);
            if (lo == hi) {
                cr_assert_null(x, "step %d: pop of an empty deque", step);
            } else {
                cr_assert_eq(x, item(model[--hi]), "step %d: pop", step);
            }
        } else {
            void *x = solo ? weft__deque_steal_owner(&d) : weft__deque_steal_any(&d);
            if (lo == hi) {
                cr_assert_eq(x, WEFT__DEQUE_EMPTY, "step %d: steal of an empty deque", step);
            } else {
                cr_assert_eq(x, item(model[lo++]), "step %d: steal", step);
            }
        }
        cr_assert_eq(weft__deque_size_estimate(&d), hi - lo, "step %d: size", step);
        if (lo == hi)
            lo = hi = 0, next = next >= N ? 0 : next;
    }
    weft__deque_destroy(&d);
}

Test(deque, interleaved_matches_a_model)
{
    check_against_model(0);
}

Test(deque, solo_interleaved_matches_a_model)
{
    check_against_model(1);
}

/* A deque with private items answers a thief's request with what it holds, but keeps back the
 * newer half of a longer queue: `split` never goes down, and every later pop below it pays the
 * fence. A short queue goes out whole, so that a thief need not ask again for each of a few items;
 * a long one keeps back no more than 32. */
Test(deque, an_answer_publishes_the_older_half_of_a_long_queue)
{
    weft__deque d;
    cr_assert_eq(weft__deque_init(&d, 4), 0);
    weft__deque_set_private(&d);
    for (int i = 0; i < 8; i++)
        cr_assert_eq(weft__deque_push_owner(&d, item(i)), 0);
    cr_assert_eq(steal(&d), WEFT__DEQUE_PRIVATE, "a steal took a private item");

    /* The next push answers: 9 items, the older 5 published. */
    cr_assert_eq(weft__deque_push_owner(&d, item(8)), 0);
    for (int i = 0; i < 5; i++) {
        void *x = steal(&d);
        cr_assert_eq(x, item(i), "steal %d got %s", i,
                     x == WEFT__DEQUE_PRIVATE ? "nothing (private)" : "another item");
    }
    cr_assert_eq(steal(&d), WEFT__DEQUE_PRIVATE, "the newer half was published too");

    /* A pop answers for the items below the one it takes: 5, 6 and 7, few enough to go out
     * whole. */
    cr_assert_eq(weft__deque_pop_owner(&d), item(8));
    for (int i = 5; i < 8; i++)
        cr_assert_eq(steal(&d), item(i), "a short queue was not published whole");
    cr_assert_eq(steal(&d), WEFT__DEQUE_EMPTY);
    cr_assert_null(weft__deque_pop_owner(&d));

    /* A long queue (a flat fan-out) keeps back no more than WEFT__DEQUE_KEEP_PRIVATE: of 100,
     * 68 go out. */
    for (int i = 100; i < 200; i++)
        cr_assert_eq(weft__deque_push_owner(&d, item(i)), 0);
    cr_assert_eq(steal(&d), WEFT__DEQUE_PRIVATE);
    weft__deque_answer(&d);
    for (int i = 100; i < 168; i++)
        cr_assert_eq(steal(&d), item(i), "a long queue kept back more than its newest 32");
    cr_assert_eq(steal(&d), WEFT__DEQUE_PRIVATE);
    for (int i = 199; i >= 168; i--)
        cr_assert_eq(weft__deque_pop_owner(&d), item(i));
    cr_assert_null(weft__deque_pop_owner(&d));
    weft__deque_destroy(&d);

    /* One item, published by the answer of a worker between its tasks. */
    cr_assert_eq(weft__deque_init(&d, 4), 0);
    weft__deque_set_private(&d);
    cr_assert_eq(weft__deque_push_owner(&d, item(9)), 0);
    cr_assert_eq(steal(&d), WEFT__DEQUE_PRIVATE);
    weft__deque_answer(&d);
    cr_assert_eq(steal(&d), item(9));
    cr_assert_eq(steal(&d), WEFT__DEQUE_EMPTY);
    weft__deque_destroy(&d);
}
