// SPDX-License-Identifier: MIT
/*
 * Stealing: an idle (or yielding) worker takes work from a random victim. From a victim's spawn
 * queue first (its oldest unstarted task, or a batch of a flat fan-out), then from its ready queue.
 * Victims are visited from a random start so that thieves spread over them. A spawn queue may hold
 * its tasks private (deque.h): a steal then asks for them, and the victim publishes them (the older
 * ones of a longer queue) at its next spawn, join or pick; a thief that is about to sleep, or has
 * gone 20 us without an answer, takes them anyway with rescue steals, one task a process-wide
 * barrier.
 */
#include "steal.h"

#include <sched.h>

#include "blocking.h"
#include "fork.h"
#include "inject.h"
#include "poll.h"
#include "sched.h"

static uint64_t next_rand(weft__worker *w)
{
    /* xorshift64*: victims only need to be spread, not unpredictable. */
    uint64_t x = w->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    w->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* A spawn queue longer than this is a flat fan-out (a loop of spawns), not the spine of a
 * recursion (fib(30) keeps at most 30 there, skynet 60): its oldest tasks are no larger than the
 * others, and taking them one steal at a time costs the thief the victim's queue lines once per
 * task. So a thief takes up to STEAL_BATCH of them at once (Go and tokio take half) and queues
 * the rest on its own spawn queue. A short queue gives one task: in a recursion the oldest is the
 * largest piece left, and the victim's join runs the others inline, which it could not if they
 * were taken. */
#define STEAL_BATCH_FROM 64
#define STEAL_BATCH 128

/* The task in v's hand-off slot, if it stood still since this thief last looked: the same task,
 * and v has not switched since (its `progress`). A task that has just been handed off is about to
 * run on v, and taken it would cross cores for nothing; one that stays there sits behind a task
 * that runs on. See push_woken in sched.c. */
static weft__task *steal_handoff(weft__worker *w, weft__worker *v)
{
    weft__task *x = atomic_load_explicit(&v->handoff, memory_order_relaxed);
    if (!x)
        return NULL;
    uint64_t p = atomic_load_explicit(&v->progress, memory_order_relaxed);
    if (w->seen_victim == v && w->seen_handoff == x && w->seen_progress == p) {
        w->seen_handoff = NULL;
        if (atomic_compare_exchange_strong_explicit(&v->handoff, &x, NULL, memory_order_acquire,
                                                    memory_order_relaxed))
            return x;
        return NULL;
    }
    w->seen_victim = v;
    w->seen_handoff = x;
    w->seen_progress = p;
    return NULL;
}

/* A ready queue at least this long is more than its worker turns round at once: a thief takes
 * from it without looking at what the worker does. */
#define STEAL_READY_FROM 4
/* How long a thief watches a worker with less ready work than that (Go's thieves wait 3 us
 * before they take a runnext), and how often it looks meanwhile. */
#define STILL_NS 4000
#define STILL_PAUSES 16

/* Whether v, which holds a little ready work, stood still while the thief watched: no switch, so
 * its running task runs on and what waits behind it would wait. A worker that switches is about
 * to run that work itself, most often tasks that hand items to each other through a channel;
 * taken, they would go on doing so from two cores, each item moving the channel's lines across.
 * Timed, not counted in pauses, whose length differs tenfold between CPUs. */
static int stands_still(weft__worker *v)
{
    uint64_t p = atomic_load_explicit(&v->progress, memory_order_relaxed);
    weft_time until = weft_now() + STILL_NS;
    do {
        for (int i = 0; i < STILL_PAUSES; i++)
            ck_pr_stall();
        if (atomic_load_explicit(&v->progress, memory_order_relaxed) != p)
            return 0;
    } while (weft_now() < until);
    return 1;
}

/* A task of v's, or NULL. `rescue`: take a private spawn too (steal.h). *asked is set when v
 * held only private spawns (and was asked for them). */
static weft__task *steal_from(weft__worker *w, weft__worker *v, int rescue, int *asked)
{
    for (int attempt = 0; attempt < 4; attempt++) {
        void *x = weft__deque_steal_any(&v->spawnq);
        if (x == WEFT__DEQUE_PRIVATE) {
            *asked = 1;
            if (!rescue)
                break;
            /* v holds its spawns to itself and has not answered (deque.h). */
            x = weft__deque_steal_rescue(&v->spawnq);
        }
        if (x == WEFT__DEQUE_EMPTY)
            break;
        if (x == WEFT__DEQUE_ABORT)
            continue;
        int64_t more = weft__deque_size_estimate(&v->spawnq);
        if (more >= STEAL_BATCH_FROM) {
            more = more / 2 < STEAL_BATCH - 1 ? more / 2 : STEAL_BATCH - 1;
            for (int64_t i = 0; i < more; i++) {
                void *y = weft__deque_steal_any(&v->spawnq);
                if (y == WEFT__DEQUE_EMPTY || y == WEFT__DEQUE_ABORT || y == WEFT__DEQUE_PRIVATE)
                    break;
                if (weft__deque_push_owner(&w->spawnq, y) != 0) {
                    weft__task *t = weft__fork_task_of(w, y);
                    if (t)
                        weft__inject_task(w->rt, t);
                    break;
                }
            }
        }
        return weft__fork_task_of(w, x);
    }
    int64_t ready = weft__deque_size_estimate(&v->readyq);
    if (ready <= 0 && !atomic_load_explicit(&v->handoff, memory_order_relaxed))
        return NULL;
    if (ready < STEAL_READY_FROM && !stands_still(v))
        return NULL;
    for (int attempt = 0; attempt < 4; attempt++) {
        void *x = weft__deque_steal_any(&v->readyq);
        if (x == WEFT__DEQUE_EMPTY)
            break;
        if (x != WEFT__DEQUE_ABORT)
            return x;
    }
    return steal_handoff(w, v);
}

static weft__task *steal_round_from(weft__worker *w, int rescue, int *asked)
{
    weft_runtime *rt = w->rt;
    unsigned n = rt->nworkers;
    unsigned start = (unsigned)(next_rand(w) % n);
    for (unsigned i = 0; i < n; i++) {
        weft__worker *v = &rt->workers[(start + i) % n];
        if (v == w)
            continue;
        weft__task *t = steal_from(w, v, rescue, asked);
        if (t) {
            w->counts.stolen++;
            if (__builtin_expect(w->trace != NULL, 0))
                weft__trace_add(w->trace, WEFT__TR_STEAL, t->id, v->index);
            return t;
        }
    }
    return NULL;
}

/* How long a thief goes on finding a neighbour's spawns private, its requests unanswered, before
 * it takes them with rescue steals anyway: a neighbour that spawns answers within the time of a
 * spawn, one that computes (or sits in a system call) may not for as long as it does. Short
 * beside the latency of a wake-up, long beside the barrier's 10 us. From then on the thief
 * rescues at every round, one task a barrier, until no neighbour holds private spawns: a thief
 * that waited again for each task left behind a neighbour that no longer answers (count_out's
 * spinner) took one per spin, and on a loaded machine a spin is milliseconds of yields. */
#define RESCUE_AFTER_NS 20000

weft__task *weft__steal_round(weft__worker *w, int rescue)
{
    weft_runtime *rt = w->rt;
    unsigned n = rt->nworkers;
    if (n < 2)
        return NULL;
    int asked = 0;
    weft__task *t = steal_round_from(w, rescue, &asked);
    if (!asked) {
        w->private_since = 0;
        return t;
    }
    weft_time now = weft_now();
    if (!w->private_since)
        w->private_since = now;
    if (t || now - w->private_since < RESCUE_AFTER_NS)
        return t;
    return steal_round_from(w, 1, &asked);
}

/* Steal rounds over all victims before a worker sleeps: some 6 us of pauses and two yields on
 * the development machine, enough to catch the next spawn of a busy neighbour. Longer spins buy
 * nothing that a wake-up would not, and their CPU is the server's: with 64 rounds, http at 100
 * connections on two workers served 4% fewer requests per CPU-second, and fork-join, channels
 * and the blocking pool ran no faster (benchmarks/LOG.md, "Shorter spins"). */
#define SPIN_ROUNDS 16
/* Every this many rounds a spinner gives its CPU up for a moment instead of pausing: the work it
 * waits for may come from a thread that needs this very CPU (a blocking call's pool thread, on a
 * machine with no CPU to spare). Pinned to one CPU with its pool thread, a worker that only
 * paused made a blocking round trip cost tens of times more. On an idle CPU the yield returns at
 * once. */
#define SPIN_YIELD_EVERY 8

/* Whether an idle worker's spin can find anything: work comes to a spinner from other threads
 * only, a neighbour that runs tasks (spawns, wake-ups) or a blocking call's pool thread (its
 * caller's wake-up). As in Go, spinners are at most as many as the neighbours that run tasks.
 * Readiness of descriptors comes from the kernel, and the poller is the place to wait for it: a
 * worker alone with tasks that wait on sockets, which spun its tens of microseconds after every
 * reply, used a whole CPU to serve what a sleeping one serves with a fraction (benchmarks/LOG.md,
 * pg-add). With neighbours, though, one of them keeps looking while descriptors are watched and
 * nobody runs: the worker that wakes in the poller with a batch of connections to serve finds a
 * helper awake to steal from it, where a sleeping one cost a wake-up per burst (http at 100
 * connections, two workers: a quarter fewer requests per CPU-second, p99 five times longer).
 * `spinning` is the caller's own count in rt->nspinning (0 or 1). */
static int worth_spinning(weft__worker *w, unsigned spinning)
{
    weft_runtime *rt = w->rt;
    if (weft__blocking_in_flight(rt))
        return 1;
    unsigned n = rt->nworkers;
    if (n < 2)
        return 0;
    unsigned sleeping = 0;
    for (unsigned i = 0; i < (n + 63) / 64; i++)
        sleeping += (unsigned)__builtin_popcountll(
            atomic_load_explicit(&rt->idle_mask[i], memory_order_relaxed));
    unsigned spinners = atomic_load_explicit(&rt->nspinning, memory_order_relaxed) - spinning;
    unsigned awake = n - 1 - (sleeping < n - 1 ? sleeping : n - 1);
    unsigned running = awake > spinners ? awake - spinners : 0;
    if (running == 0)
        return spinners == 0 && weft__poll_active(&rt->poller);
    return spinners <= running;
}

weft__task *weft__steal_spin(weft__worker *w)
{
    weft_runtime *rt = w->rt;
    if (!worth_spinning(w, 0))
        return weft__inject_take(w);
    atomic_fetch_add_explicit(&rt->nspinning, 1, memory_order_relaxed);
    weft__task *t = NULL;
    for (int round = 0; round < SPIN_ROUNDS && !t; round++) {
        if ((t = weft__steal_round(w, 0)) || (t = weft__inject_take(w)))
            break;
        if (round % SPIN_YIELD_EVERY == SPIN_YIELD_EVERY - 1) {
            if (!worth_spinning(w, 1)) {
                /* The neighbours went to sleep, or the blocking call came back: its caller may
                 * be in the injection queue already. */
                t = weft__inject_take(w);
                break;
            }
            sched_yield();
            continue;
        }
        for (int i = 0; i < 32; i++)
            ck_pr_stall();
    }
    /* Before giving up: spawns that a neighbour keeps private and did not publish when asked
     * (it computes without spawning, deque.h). The round finds none at once where nobody holds
     * any, and costs a barrier per neighbour that does. */
    if (!t)
        t = weft__steal_round(w, 1);
    /* The last spinner to find work hands the search on, so work left behind it is found. */
    if (atomic_fetch_sub_explicit(&rt->nspinning, 1, memory_order_acq_rel) == 1 && t)
        weft__sched_notify_local(rt);
    return t;
}
