// SPDX-License-Identifier: MIT
/*
 * The per-worker timer heap (lib/timer.h) on its own: lazy cancellation, the compaction that
 * keeps a heap of cancelled timers from growing, and firing order after both.
 */
#include <criterion/criterion.h>

#include "timer.h"

#define N 1000

static weft__timer timers[N];
static int fired[N];
static int fire_order[N], nfired;

static void on_fire(weft__timer *t)
{
    int i = (int)(t - timers);
    fired[i]++;
    fire_order[nfired++] = i;
}

Test(timer, arm_and_cancel_cycles_keep_the_heap_within_its_live_timers)
{
    weft__timer_heap h;
    weft__timer_heap_init(&h);
    for (int round = 0; round < 50; round++) {
        for (int i = 0; i < N; i++)
            cr_assert_eq(weft__timer_arm(&h, &timers[i], 1000000 + i, on_fire), 0);
        for (int i = 0; i < N; i++)
            cr_assert_eq(weft__timer_cancel(&timers[i]), 1, "an armed timer is disarmed");
    }
    /* 50,000 arms, never more than 1,000 live: the stale items were dropped, not kept. */
    cr_assert_leq(h.capacity, 4 * N, "capacity %u for %d live timers", h.capacity, N);
    cr_assert_eq(weft__timer_heap_run(&h, WEFT_NEVER - 1), 0, "a cancelled timer never fires");
    for (int i = 0; i < N; i++)
        cr_assert_eq(fired[i], 0);
    weft__timer_heap_destroy(&h);
}

Test(timer, live_timers_fire_once_in_deadline_order_among_stale_ones)
{
    weft__timer_heap h;
    weft__timer_heap_init(&h);
    /* Deadlines in a scrambled order; every third timer is cancelled, and re-armed timers leave
     * a stale item of their earlier arming behind. */
    for (int i = 0; i < N; i++)
        cr_assert_eq(weft__timer_arm(&h, &timers[i], (i * 7919) % N + 1, on_fire), 0);
    for (int i = 0; i < N; i += 3)
        cr_assert_eq(weft__timer_cancel(&timers[i]), 1);
    for (int i = 1; i < N; i += 3) {
        cr_assert_eq(weft__timer_cancel(&timers[i]), 1);
        cr_assert_eq(weft__timer_arm(&h, &timers[i], (i * 7919) % N + 1, on_fire), 0);
    }
    int expect = N - (N + 2) / 3;
    cr_assert_eq(weft__timer_heap_run(&h, N), expect);
    cr_assert_eq(nfired, expect);
    for (int i = 0; i < N; i++)
        cr_assert_eq(fired[i], i % 3 == 0 ? 0 : 1, "timer %d fired %d times", i, fired[i]);
    for (int k = 1; k < nfired; k++) {
        weft_time a = (fire_order[k - 1] * 7919) % N + 1, b = (fire_order[k] * 7919) % N + 1;
        cr_assert_leq(a, b, "fired out of deadline order at %d", k);
    }
    for (int i = 0; i < N; i++)
        weft__timer_cancel(&timers[i]); /* fired ones: 0, and nothing waits */
    weft__timer_heap_destroy(&h);
}
