// SPDX-License-Identifier: MIT
/*
 * A worker's sleep: in the poller when it can take it and descriptors are registered, else on
 * its futex word; see idle.h.
 *
 * No lost wake-up across the two: the sleeper marks itself in the poller, then looks at its
 * count; a waker bumps the count, then looks at the mark. Both with sequentially consistent
 * accesses, so at least one of them sees the other: either the sleeper sees the new count and
 * does not sleep, or the waker sees the mark and interrupts the poller (whose eventfd ends the
 * epoll_wait, or the next one).
 */
#include "idle.h"

#include "futex.h"

void weft__idle_init(weft__idle *i, weft__poller *p)
{
    atomic_init(&i->seq, 0);
    atomic_init(&i->in_poller, 0);
    i->poller = p;
}

int weft__idle_sleep(weft__idle *i, uint32_t ticket, weft_time deadline)
{
    weft__poller *p = i->poller;
    if (p && weft__poll_take_or_want(p)) {
        atomic_store_explicit(&i->in_poller, 1, memory_order_seq_cst);
        if (atomic_load_explicit(&i->seq, memory_order_seq_cst) == ticket)
            weft__poll_wait(p, deadline);
        atomic_store_explicit(&i->in_poller, 0, memory_order_relaxed);
        return weft__poll_release(p);
    }
    weft__futex_wait(&i->seq, ticket, deadline);
    return 0;
}

void weft__idle_wake(weft__idle *i)
{
    atomic_fetch_add_explicit(&i->seq, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&i->in_poller, memory_order_seq_cst))
        weft__poll_interrupt(i->poller);
    else
        weft__futex_wake(&i->seq);
}
