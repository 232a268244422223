// SPDX-License-Identifier: MIT
/*
 * A task that spawns a child and then holds its worker until the child has run, outside weft (a
 * plain loop on a flag, or a blocking poll(2) of a pipe only the child writes to), while the other
 * worker is on its way to sleep. A spawn from a task skips the StoreLoad fence that would make its
 * wake-up of a sleeper certain (sched.c, "Sleeping without lost wake-ups"): the sleeper may miss
 * the child as the spawn misses the sleeper, and the spawner's worker, held, does not come back to
 * run the child itself. The other worker must find it all the same.
 *
 * A round: open a scope, spin a random 0-60 us (so that the other worker is anywhere between
 * ending the last round's child and sleeping), spawn the child, wait for it outside weft for at
 * most HOLD_LIMIT, join. Every 8th round waits in poll(2), the others in a loop. Checks: every
 * child ran before its spawner stopped waiting. The first round that fails ends the run (the join
 * then runs the child). Prints the rounds, the worst wait and how many waits took over 1 ms.
 *
 * Usage: spawn_then_hold [rounds]   (default 10000, a second or so; 2000 under TSan; at most
 * BUDGET on a loaded machine)
 * Exits 0 when every check held, 1 otherwise.
 */
#include <poll.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define STRESS_NAME "spawn_then_hold"
#include "../support.h"
#include "weft.h"

#ifdef UNDER_TSAN
#define DEFAULT_ROUNDS 2000
#else
#define DEFAULT_ROUNDS 10000
#endif
/* On a machine loaded far beyond its CPUs a round takes milliseconds: the run stops after this
 * long, with the rounds it made (before the fix, a run failed within 1,100 to 2,800 rounds). */
#define BUDGET (40 * WEFT_SEC)
#define HOLD_LIMIT (5 * WEFT_SEC)
#define DELAY_MAX_NS 60000
#define POLL_EVERY 8

typedef struct hold {
    long rounds;
    int pipe[2];
    atomic_int ran;
    long done, slow;
    weft_time worst;
} hold;

static int child(void *p)
{
    hold *h = p;
    if (h->pipe[1] >= 0)
        CHECK(write(h->pipe[1], "x", 1) == 1, "the child's write to the pipe failed");
    atomic_store_explicit(&h->ran, 1, memory_order_release);
    return 0;
}

static void spin_for(weft_time ns)
{
    weft_time until = weft_now() + ns;
    while (weft_now() < until) {
    }
}

/* Waits for the child outside weft: 1 if it ran within HOLD_LIMIT. */
static int hold_until_ran(hold *h, int in_poll, weft_time t0)
{
    if (in_poll) {
        struct pollfd pf = {.fd = h->pipe[0], .events = POLLIN};
        int n = poll(&pf, 1, (int)(HOLD_LIMIT / WEFT_MSEC));
        return n == 1;
    }
    /* sched_yield(2) holds the worker as well, and lets the other worker's thread have the CPU
     * on a loaded machine. */
    while (!atomic_load_explicit(&h->ran, memory_order_acquire)) {
        if (weft_now() - t0 > HOLD_LIMIT)
            return 0;
        sched_yield();
    }
    return 1;
}

static int root(void *p)
{
    hold *h = p;
    uint64_t seed = 20261206;
    int write_end = h->pipe[1];
    weft_time end = weft_now() + BUDGET;
    for (long i = 0; i < h->rounds && atomic_load(&failures) == 0 && weft_now() < end; i++) {
        int in_poll = i % POLL_EVERY == 0;
        h->pipe[1] = in_poll ? write_end : -1; /* only this round's child writes */
        atomic_store(&h->ran, 0);
        weft_scope *s;
        CHECK(weft_scope_open(&s, NULL) == 0, "open");
        spin_for(below(&seed, DELAY_MAX_NS));
        weft_time t0 = weft_now();
        CHECK(weft_spawn(s, child, h) == 0, "spawn");
        int ran = hold_until_ran(h, in_poll, t0);
        weft_time waited = weft_now() - t0;
        CHECK(ran,
              "round %ld (%s): the child had not started after %lld ms while its spawner "
              "held its worker",
              i, in_poll ? "poll" : "loop", (long long)(waited / WEFT_MSEC));
        CHECK(weft_scope_close(s) == 0, "close");
        if (in_poll) {
            char c;
            CHECK(read(h->pipe[0], &c, 1) == 1, "read of the child's byte");
        }
        if (waited > h->worst)
            h->worst = waited;
        h->slow += waited > WEFT_MSEC;
        h->done++;
    }
    h->pipe[1] = write_end;
    return 0;
}

int main(int argc, char **argv)
{
    hold h = {.rounds = argc > 1 ? atol(argv[1]) : DEFAULT_ROUNDS};
    if (h.rounds <= 0 || pipe(h.pipe) != 0) {
        fprintf(stderr, "usage: spawn_then_hold [rounds > 0] (or no pipe)\n");
        return 1;
    }
    /* The watchdog would report a failing round's spawner: the check says it better. */
    weft_config cfg = {.workers = 2, .watchdog_ns = 2 * HOLD_LIMIT};
    int rc = weft_run(&cfg, root, &h);
    CHECK(rc == 0, "weft_run returned %d", rc);
    printf("spawn_then_hold: %ld rounds, worst wait %.3f ms, %ld over 1 ms: %s\n", h.done,
           (double)h.worst / WEFT_MSEC, h.slow, atomic_load(&failures) ? "FAILED" : "ok");
    return atomic_load(&failures) ? 1 : 0;
}
