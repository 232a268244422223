// SPDX-License-Identifier: MIT
/*
 * The scheduler: worker threads, their queues, switching, stealing and idle parking.
 *
 * Design
 * ------
 * One OS thread per worker. Each worker owns two Chase-Lev deques:
 *   spawnq  unstarted tasks, pushed by spawn. The owner pops the newest (depth-first, so a
 *           fork-join program keeps few stacks live, as in Cilk); thieves take the oldest, which
 *           in such a program is the largest piece of work left.
 *   readyq  tasks that hold a stack: woken or yielded. Served oldest first (the owner steals from
 *           its own top), so yields rotate fairly and no task hogs the worker.
 * plus a hand-off slot of one task (see push_woken), and one runtime-wide injection queue (linked
 * through the records, so it never needs memory) for work that arrives from threads that are not
 * workers, and for woken tasks beyond the WEFT__READY_LOCAL_MAX a ready queue holds (a cancel that
 * wakes 100,000 sleepers). A worker takes from it in batches onto its ready queue. Every runnable
 * task sits in one of these four, so every runnable task is stealable. Taking a task from the
 * ready queue prefetches the records and stack tops of the next few (prefetch_ready): resuming many
 * parked tasks is memory-bound. In a runtime of one worker nobody steals, so both deques are solo
 * (deque.h): the owner's pops need no fence and no CAS. With more workers a spawn queue keeps its
 * tasks private until a thief asks (deque.h): its owner's pops need no fence while nobody asks,
 * every pick answers a request, and a thief that is not answered before it gives up takes a task
 * anyway with a rescue steal (steal.c). So every unstarted task is stealable, some at the price
 * of a process-wide barrier.
 *
 * The order in which a worker picks its next task (pick_local):
 *   1. every 61st pick, the injection queue and the timers first, so that neither starves while
 *      local work never runs out (61, a prime, as in Go: it does not beat in step with loops);
 *   2. the hand-off slot (at most HANDOFF_STREAK times in a row), then the ready queue, together
 *      at most READY_STREAK times in a row: a task that already holds a stack
 *      is cheaper to run than a new one (a first touch of a fresh stack page costs microseconds),
 *      and running it first keeps the number of live stacks near what the program needs;
 *   3. the spawn queue; 4. the slot and the ready queue; 5. the injection queue.
 * Then, from the scheduler context only: due timers, stealing from random victims (one task, or
 * from a long spawn queue a batch: see steal.c), sleeping.
 *
 * Switching. A task that suspends picks its successor itself and switches straight to it (or to
 * the worker's scheduler context when there is none): one switch per yield, not two. What must
 * happen after the old context is saved (queue the yielder, finish a park handshake, recycle a
 * finished task's stack) is left in w->after and done by the context that takes over, in
 * after_switch(). That context may be on any worker, so nothing here keeps a thread-local address
 * across a switch: weft__sched_worker() is called afresh after each one.
 *
 * Sleeping without lost wake-ups. An idle worker first spins over the queues for a while, if
 * another thread may bring it work soon: a neighbour that runs tasks, or a blocking call's pool
 * thread (steal.c); readiness of descriptors it waits for in the poller instead. nspinning counts
 * spinners, so producers do not wake sleepers while someone is looking. Then:
 *     seq = value of its event count; set its bit in idle_mask (a seq_cst RMW);
 *     re-check every queue and its timers; sleep on the event count unless seq changed.
 * A producer on a foreign thread publishes its work, issues a seq_cst fence, then reads
 * idle_mask and wakes one sleeper (clears its bit, increments its event count). Either the
 * producer sees the bit, or the worker's re-check sees the work: the store-load pairs are fenced
 * on both sides. A producer that is itself a worker skips the fence (a spawn would pay for it every
 * time): if it wakes nobody, its own loop runs the work, so nothing is lost, only parallelism for a
 * moment; a thief that finds work wakes another sleeper, which restores it. Unless the producer's
 * task holds the worker until that very work has run elsewhere (it spawns a child, then waits for
 * it in a plain loop or a blocking system call): its worker's loop never comes back to it. So a
 * worker that goes to sleep while another is awake, and so may have spawned unfenced, sleeps at
 * most UNFENCED_SPAWN_WAIT first and looks again: by then the spawn is visible to it (a store
 * reaches the other CPUs within far less). One more wake-up per idle spell at most; a worker that
 * sees every other asleep sleeps at once for as long as its timers let it.
 *
 * Rejected designs. A single shared run queue (contended on every spawn). Switching through the
 * scheduler context on every yield (twice the switches). Treating woken tasks like new ones in
 * one deque (LIFO pops would start new work before resuming parked work, and each new start
 * costs a stack: with 100,000 tasks waiting on a semaphore of 64, that is the difference between
 * 64 and 100,000 live stacks). Busy-polling timers (burns a core when idle).
 *
 * Shutdown invariant: the workers stop only when the runtime's root scope has no child left, so
 * every queue is empty and every task record and stack is back in a cache when they exit.
 */
#include "sched.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "blocking.h"
#include "chaos.h"
#include "eh.h"
#include "errno_keep.h"
#include "fork.h"
#include "inject.h"
#include "records.h"
#include "steal.h"
#include "tsan.h"
#include "wtimers.h"

#ifdef WEFT_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

/* 64 KiB: deep enough for ordinary C (printf, getaddrinfo and a parser fit with room to spare),
 * and stacks spaced 144 KiB apart (with their guard gaps and the room joins use, stack.h) share
 * page-table pages 14 to a page: with 256 KiB stacks, a million parked tasks needed a page-table
 * page for every 8 of them, as many fresh pages again as the stacks themselves. Tasks that need
 * more ask for it (weft_spawn_opts.stack_size). */
#define WEFT__DEFAULT_STACK (64 * 1024)

/* Picks of the hand-off slot in a row before the ready queue gets a turn: two tasks that hand
 * work back and forth (a channel's round trip) refill the slot at each step, and would otherwise
 * keep the tasks queued behind them waiting for as long as they go on. */
#define HANDOFF_STREAK 8
/* Picks of the ready queue in a row before the spawn queue gets a turn. 16 keeps the starting
 * of new work at one pick in 17 at worst when resumed tasks never run out, and is long enough
 * that a pipeline of woken tasks runs mostly without starting new stacks. */
#define READY_STREAK 16
/* Every this many picks the injection queue and the timers go first (see above). */
#define GLOBAL_CHECK_INTERVAL 61
/* The first sleep of a worker while another is awake (see "Sleeping without lost wake-ups"):
 * far longer than a store takes to reach every CPU, and a tick of the kernel's usual 250 Hz, so
 * that the timer seldom comes before one the CPU has anyway. With 1 ms, http at two workers served
 * 4% fewer requests per CPU-second; with 4 ms and 10 ms no fewer (benchmarks/LOG.md). */
#define UNFENCED_SPAWN_WAIT (4 * WEFT_MSEC)
/* ---- thread-local access ---------------------------------------------------------------- */

/* Read through weft__sched_worker (sched.h), which says why it is reached only through a call. */
_Thread_local weft__worker *weft__tls_worker;

/* ---- waking sleepers -------------------------------------------------------------------- */

int weft__sched_wake_one(weft_runtime *rt)
{
    unsigned words = (rt->nworkers + 63) / 64;
    for (unsigned i = 0; i < words; i++) {
        uint64_t bits = atomic_load_explicit(&rt->idle_mask[i], memory_order_relaxed);
        while (bits) {
            unsigned b = (unsigned)__builtin_ctzll(bits);
            uint64_t bit = (uint64_t)1 << b;
            if (atomic_fetch_and_explicit(&rt->idle_mask[i], ~bit, memory_order_acq_rel) & bit) {
                weft__idle_wake(&rt->workers[i * 64 + b].idle);
                return 1;
            }
            bits = atomic_load_explicit(&rt->idle_mask[i], memory_order_relaxed);
        }
    }
    return 0;
}

/* ---- queues ------------------------------------------------------------------------------ */

/* Queues a runnable task on the worker's ready queue, or on the injection queue when the ready
 * queue already holds WEFT__READY_LOCAL_MAX tasks or cannot grow (see sched.h). */

static void push_ready(weft__worker *w, weft__task *t)
{
    if (weft__deque_size_owner(&w->readyq, WEFT__READY_LOCAL_MAX) >= WEFT__READY_LOCAL_MAX ||
        weft__deque_push_owner(&w->readyq, t) != 0) {
        weft__inject_task(w->rt, t);
        return;
    }
    weft__sched_notify_local(w->rt);
}

/* The hand-off. A task woken by the task running on this worker (a channel's receiver, the next
 * holder of a semaphore) most often runs next here: its waker is about to wait for it in turn.
 * Queued on the ready queue it was taken by an idle neighbour, woken up for it, and every step of
 * a round trip between two tasks crossed cores and cost a futex wake. So it goes into the
 * worker's slot instead, served before the ready queue (at most HANDOFF_STREAK times in a row),
 * and a thief takes it only once it has stood still: the same task in the slot, and the worker
 * not switched since the thief last looked (steal.c; Go's runnext, whose thieves wait 3 us). A
 * task the new one displaces goes to the ready queue. The sleepers are told as for any ready
 * task, so that a slot behind a task that runs on for long is taken by someone. At one worker
 * the slot serves too, for what it saves: the waker's park switches straight to the task it just
 * woke (Go's runnext at one P), without a trip through the ready queue; and with no thief, the
 * owner moves it with plain loads and stores. Wakes from the scheduler's own context (timers,
 * the poller) use the ready queue: nothing there is about to wait for them. */
static void push_woken(weft__worker *w, weft__task *t)
{
    if (!weft__sched_current(w)) {
        push_ready(w, t);
        return;
    }
    if (w->rt->nworkers < 2) {
        weft__task *old = atomic_load_explicit(&w->handoff, memory_order_relaxed);
        atomic_store_explicit(&w->handoff, t, memory_order_relaxed);
        if (old)
            push_ready(w, old);
        return;
    }
    weft__task *old = atomic_exchange_explicit(&w->handoff, t, memory_order_acq_rel);
    if (old)
        push_ready(w, old);
    else
        weft__sched_notify_local(w->rt);
}

/* The task in this worker's slot, taken, or NULL. */
static weft__task *take_handoff(weft__worker *w)
{
    weft__task *t = atomic_load_explicit(&w->handoff, memory_order_relaxed);
    if (!t)
        return NULL;
    if (w->rt->nworkers < 2) { /* no thief: the owner's alone */
        atomic_store_explicit(&w->handoff, NULL, memory_order_relaxed);
        return t;
    }
    return atomic_exchange_explicit(&w->handoff, NULL, memory_order_acquire);
}

void weft__sched_ready_batch(weft_runtime *rt, weft__ready_batch *b)
{
    weft__task *t = b->head, *last = b->tail;
    long n = b->n;
    b->head = b->tail = NULL;
    b->n = 0;
    for (int i = 0; i < WEFT__HINT_AHEAD; i++) {
        if (b->recent[i])
            weft__task_set_hint(b->recent[i], NULL); /* the last few: none that far on */
        b->recent[i] = NULL;
    }
    if (!t)
        return;
    weft__worker *w = weft__sched_worker();
    if (w && w->rt == rt) {
        long pushed = 0;
        while (t &&
               weft__deque_size_owner(&w->readyq, WEFT__READY_LOCAL_MAX) < WEFT__READY_LOCAL_MAX) {
            /* The link first: once queued, the task may be stolen, run and recycled at once. */
            weft__task *next = t->next;
            if (weft__deque_push_owner(&w->readyq, t) != 0)
                break;
            t = next;
            pushed++;
        }
        n -= pushed;
        if (pushed)
            weft__sched_notify_local(rt);
    }
    if (t)
        weft__inject_list(rt, t, last, n); /* the rest of the list: its tail is still the batch's */
}

void weft__sched_ready(weft_runtime *rt, weft__task *t)
{
    weft__worker *w = weft__sched_worker();
    if (w && w->rt == rt)
        push_woken(w, t);
    else
        weft__inject_task(rt, t);
}

int weft__sched_spawn(weft_runtime *rt, weft__task *t)
{
    return weft__sched_spawn_on(weft__sched_worker(), rt, t);
}

int weft__sched_spawn_on(weft__worker *w, weft_runtime *rt, weft__task *t)
{
    if (w && w->rt == rt)
        return weft__sched_spawn_own(w, rt, t);
    weft__inject_task(rt, t);
    return 0;
}

static weft__task *steal_own(weft__deque *q)
{
    for (;;) {
        void *x = weft__deque_steal_owner(q);
        if (x != WEFT__DEQUE_ABORT)
            return x;
    }
}

/* Resuming a parked task touches its record, its stack's record and the top of its stack.
 * After a wake-up of many tasks (a cancel of 100,000 sleepers) all of it is cold, and a resume
 * waited for each line in turn. The ready queue says which tasks come next, so their lines are
 * prefetched a few places ahead, in two steps: the record first, then (a few places later, when
 * the record has arrived) the stack it points to. */
#define PREFETCH_RECORD_AHEAD 8
#define PREFETCH_STACK_AHEAD 4
#define PREFETCH_STACK_BYTES 1024
/* A shorter ready queue, with nothing waiting on the injection queue (where a mass wake-up
 * spills, to come back 32 at a time), is not a mass wake-up: its tasks' lines (about 1.3 KiB
 * each) stay in the caches as they take turns (64 yielding tasks, for one), and the prefetches
 * were a tenth of the cost of each turn. */
#define PREFETCH_FROM 256

static void prefetch_ready(weft__worker *w)
{
#ifndef WEFT_TSAN /* the reads race with the tasks' owners by design: hints only */
    if (weft__deque_size_estimate(&w->readyq) < PREFETCH_FROM &&
        !atomic_load_explicit(&w->rt->inject_len, memory_order_relaxed))
        return;
    weft__task *far = weft__deque_peek_oldest_owner(&w->readyq, PREFETCH_RECORD_AHEAD);
    if (far) /* every line of it: the resume, the wait's end and the completion touch all four */
        for (size_t i = 0; i < sizeof(*far); i += 64)
            __builtin_prefetch((char *)far + i, 1);
    weft__task *near = weft__deque_peek_oldest_owner(&w->readyq, PREFETCH_STACK_AHEAD);
    weft__task *host = near ? near->host : NULL;
    if (!host)
        return;
    __builtin_prefetch(host->stack, 1); /* written at the switch (its owner) */
    char *sp = host->ctx.sp;
    for (int i = 0; i < PREFETCH_STACK_BYTES; i += 64)
        __builtin_prefetch(sp + i, 1);
#else
    (void)w;
#endif
}

/* Readiness of descriptors, without blocking, when some are registered and no other worker
 * holds the poller: a busy worker looks every GLOBAL_CHECK_INTERVAL picks, and before it spins
 * for work, so that I/O is not starved while CPU work never runs out (the woken tasks join this
 * worker's ready queue, where they can be stolen). A worker that went to sleep meanwhile, while
 * this one held the poller, is woken to take it (poll.h). */
static void poll_io(weft__worker *w)
{
    weft__poller *p = &w->rt->poller;
    if (weft__poll_active(p) && weft__poll_take(p)) {
        weft__poll_now(p);
        if (weft__poll_release(p))
            weft__sched_wake_one(w->rt);
    }
}

/* The queues in the order of the essay above; pick_local adds the count-out rule. Out of line:
 * inlined into pick_local, it made that too large to inline into the worker's loop, and the
 * extra call cost a channel round trip between two workers 5%. */
static __attribute__((noinline)) weft__task *pick_local_queues(weft__worker *w)
{
    weft__task *t;
    /* A worker that runs woken tasks for a while touches its spawn queue only after its ready
     * queue's streak: a thief that asked for the spawns waiting there gets them now. */
    weft__deque_answer(&w->spawnq);
    if (weft__chaos_hit(w, 8) && (t = weft__steal_round(w, weft__chaos_hit(w, 4))))
        return t; /* forced steal (now and then a rescue): a neighbour's work before our own */
    if (++w->tick % GLOBAL_CHECK_INTERVAL == 0) {
        weft__wtimers_run(w);
        poll_io(w);
        if ((t = weft__inject_take(w)))
            return t;
    }
    if (w->ready_streak < READY_STREAK) {
        if (w->handoff_streak < HANDOFF_STREAK && (t = take_handoff(w))) {
            w->handoff_streak++;
            w->ready_streak++;
            return t;
        }
        w->handoff_streak = 0;
        if ((t = steal_own(&w->readyq))) {
            w->ready_streak++;
            prefetch_ready(w);
            return t;
        }
    }
    w->ready_streak = 0;
    w->handoff_streak = 0;
    void *item = weft__deque_pop_owner(&w->spawnq);
    if (item && (t = weft__fork_task_of(w, item)))
        return t;
    if ((t = take_handoff(w)) || (t = steal_own(&w->readyq)))
        return t;
    return weft__inject_take(w);
}

/* The next task of this worker's own queues, or NULL. Callable from a task or the scheduler. */
static weft__task *pick_local(weft__worker *w)
{
    weft__task *t = pick_local_queues(w);
    if (w->held_for && (!t || t->scope != w->held_for))
        w->release_held(w);
    return t;
}

static int any_work_visible(weft__worker *w)
{
    weft_runtime *rt = w->rt;
    if (atomic_load_explicit(&rt->inject_len, memory_order_relaxed))
        return 1;
    for (unsigned i = 0; i < rt->nworkers; i++) {
        weft__worker *v = &rt->workers[i];
        if (weft__deque_size_estimate(&v->spawnq) > 0 ||
            weft__deque_size_estimate(&v->readyq) > 0 ||
            atomic_load_explicit(&v->handoff, memory_order_relaxed))
            return 1;
    }
    return weft__timer_heap_earliest(&w->timers) <= weft_now();
}

/* ---- switching ------------------------------------------------------------------------- */

static void stack_bounds(weft__worker *w, weft__task *to, void **lo, size_t *size)
{
    if (to) {
        *lo = to->host->stack->lo;
        *size = to->host->stack->size;
    } else {
        *lo = w->thread_stack_lo;
        *size = w->thread_stack_size;
    }
}

/* The trace of a switch on `w` from `from` to `to` (either NULL: the scheduler), for the reason
 * w->after gives. */
static __attribute__((noinline)) void trace_switch(weft__worker *w, weft__task *from,
                                                   weft__task *to)
{
    if (from) {
        uint32_t why = WEFT__TR_WHY_PARK;
        if (w->after == WEFT__AFTER_READY)
            why = WEFT__TR_WHY_YIELD;
        else if (w->after == WEFT__AFTER_FINISH)
            why = WEFT__TR_WHY_END;
        weft__trace_leave(w, from, why);
    }
    if (to)
        weft__trace_resume(w, to);
}

/* Switches from the context running on `w` to `to` (NULL: the scheduler context). The caller has
 * set w->after. `dying`: the leaving context will never be resumed. */
static void switch_to(weft__worker *w, weft__task *to, int dying)
{
    weft__task *from = weft__sched_current(w);
    weft__ctx *from_ctx = from ? &from->host->ctx : &w->sched_ctx;
    weft__ctx *to_ctx = to ? &to->host->ctx : &w->sched_ctx;
    if (from && from->host->stack->guard == WEFT__GUARD_CANARY)
        weft__stack_check_canary(from->host->stack);
    if (__builtin_expect(w->trace != NULL, 0))
        trace_switch(w, from, to);
    /* A task's errno is its own (errno_keep.h): the one arriving finds its own value, put in
     * this thread's errno before the switch. The one leaving kept its value when it began to
     * park or yield (keep_errno), before the scheduler's work in its context (a drain of the
     * poller's wake-up counter ends in EAGAIN). */
    if (to)
        *w->errno_of_thread = to->errno_value;
    weft__sched_set_current(w, to);
    weft__sched_progress(w);
    void *lo;
    size_t size;
    stack_bounds(w, to, &lo, &size);
    (void)lo;
    (void)size;
    (void)dying;
#ifdef WEFT_ASAN
    void *fake = NULL;
    __sanitizer_start_switch_fiber(dying ? NULL : &fake, lo, size);
#endif
#ifdef WEFT_TSAN
    __tsan_switch_to_fiber(to ? to->host->tsan_fiber : w->tsan_fiber, 0);
#endif
    weft__ctx_switch(from_ctx, to_ctx);
#ifdef WEFT_ASAN
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
}

static void after_switch(void);
static int prepare_to_run(weft__worker *w, weft__task *t);

/* `t`, running on `w`, keeps its errno while it is switched out (switch_to puts it back). */
static inline void keep_errno(weft__worker *w, weft__task *t)
{
    t->errno_value = *w->errno_of_thread;
}

/* The next local task, ready to be switched to (given a stack if it had none), or NULL: the
 * scheduler. A task that cannot get a stack ends unrun (weft__task_end_without_stack), and the
 * next is picked. Queued again instead, it was picked again at once, and its worker spun for
 * ever where no stack could ever be mapped (an address-space limit, the map count used up) or
 * where the stacks in use come back only when their tasks, waiting for this one, end. */
static weft__task *pick_runnable(weft__worker *w)
{
    weft__task *next;
    while ((next = pick_local(w)) && prepare_to_run(w, next) != 0)
        weft__task_end_without_stack(next);
    return next;
}

static void task_entry(void *arg)
{
    weft__task *t = arg;
#ifdef WEFT_ASAN
    __sanitizer_finish_switch_fiber(NULL, NULL, NULL);
#endif
    after_switch();
    weft__task_main(t);
    /* Gone for good: pick a successor and let it recycle this stack. */
    weft__worker *w = weft__sched_worker();
    weft__task *next = pick_runnable(w);
    w->after = WEFT__AFTER_FINISH;
    w->after_task = t;
    switch_to(w, next, 1);
    __builtin_unreachable();
}

/* Gives `t` a stack (the one set aside for it, if any) and a fresh context if it has none.
 * Returns 0 or -ENOMEM. */
static int prepare_to_run(weft__worker *w, weft__task *t)
{
    if (t->host)
        return 0;
    weft__stack *s;
    if (t->flags & WEFT__TASK_STACK_HELD) {
        t->flags &= ~(uint32_t)WEFT__TASK_STACK_HELD;
        s = t->stack;
    } else if (!(s = weft__stack_get(&w->rt->stacks, &w->stacks, t->stack_size))) {
        return -ENOMEM;
    }
    t->host = t;
    t->stack = s;
    t->errno_value = 0; /* a task starts as a thread does, not with its record's last value */
    w->counts.started++;
#ifdef WEFT_ASAN
    /* The last task on this stack ended inside switch_to, whose frame never returned: clear the
     * poison its locals left behind. */
    ASAN_UNPOISON_MEMORY_REGION(s->lo, s->size);
#endif
    weft__ctx_make(&t->ctx, s->lo, s->size, task_entry, t);
#ifdef WEFT_TSAN
    t->tsan_fiber = __tsan_create_fiber(0);
#endif
    return 0;
}

int weft__sched_hold_stack(weft__worker *w, weft_runtime *rt, weft__task *t)
{
    weft__stack_cache none = {0}; /* off the runtime's workers: from the pool */
    weft__stack *s =
        weft__stack_get(&rt->stacks, w && w->rt == rt ? &w->stacks : &none, t->stack_size);
    if (!s)
        return -ENOMEM;
    t->stack = s;
    t->flags |= WEFT__TASK_STACK_HELD;
    return 0;
}

void weft__sched_drop_stack(weft__worker *w, weft_runtime *rt, weft__task *t)
{
    if (!(t->flags & WEFT__TASK_STACK_HELD))
        return;
    t->flags &= ~(uint32_t)WEFT__TASK_STACK_HELD;
    weft__stack_put(&rt->stacks, w && w->rt == rt ? &w->stacks : NULL, t->stack);
}

static void recycle(weft__worker *w, weft__task *t)
{
#ifdef WEFT_TSAN
    if (t->tsan_fiber)
        __tsan_destroy_fiber(t->tsan_fiber);
#endif
    weft__stack_put(&w->rt->stacks, &w->stacks, t->stack);
    weft__records_free_task_on(w, t);
}

static void after_switch(void)
{
    weft__worker *w = weft__sched_worker();
    weft__task *t = w->after_task;
    switch (w->after) {
    case WEFT__AFTER_READY:
        push_ready(w, t);
        break;
    case WEFT__AFTER_PARK:
        if (atomic_fetch_add_explicit(&t->park_sync, 1, memory_order_acq_rel) == 1)
            push_ready(w, t);
        break;
    case WEFT__AFTER_FINISH:
        recycle(w, t);
        break;
    case WEFT__AFTER_SPURIOUS:
        /* Leaves park_sync alone: no waker can make the task runnable while it is queued. */
        push_ready(w, t);
        break;
    default:
        break;
    }
    w->after = WEFT__AFTER_NONE;
    w->after_task = NULL;
}

/* switch_from_task in a program with the C++ runtime: the task's exception state goes with it
 * (eh.h), out of this thread as it leaves, back into the thread it resumes on. A path of its
 * own, so that a program without it pays one test per switch. */
static inline __attribute__((always_inline)) void switch_from_task_cxx(weft__worker *w,
                                                                       weft__task *next)
{
    weft__task *self = weft__sched_current(w);
    weft__eh_take(w->eh, &self->eh);
    switch_to(w, next, 0);
    weft__eh_give(weft__sched_worker_leaf()->eh, &self->eh);
    after_switch();
}

/* Switches from the running task to `next` (from pick_runnable: NULL means the scheduler). */
static void switch_from_task(weft__worker *w, weft__task *next)
{
    if (__builtin_expect(w->eh != NULL, 0)) {
        switch_from_task_cxx(w, next);
        return;
    }
    switch_to(w, next, 0);
    after_switch();
}

/* ---- park / wake -------------------------------------------------------------------------- */

int weft__sched_unprepare_park(weft__task *t)
{
    uint32_t expect = WEFT__WAIT_PARKED;
    return atomic_compare_exchange_strong_explicit(&t->wait, &expect, WEFT__WAIT_NONE,
                                                   memory_order_acq_rel, memory_order_acquire);
}

/* A resumed task tells a wake from a spurious resume by park_sync: after a wake both halves of the
 * handshake are in (2); after a spurious resume at most the waker's is (0 or 1), so it parks
 * again, and whichever of the waker and the new park comes second makes it runnable. */
uint32_t weft__sched_park(weft__task *t)
{
    for (;;) {
        /* Woken already and the waker has done its half: no need to leave. */
        uint32_t one = 1;
        if (atomic_load_explicit(&t->wait, memory_order_acquire) != WEFT__WAIT_PARKED &&
            atomic_compare_exchange_strong_explicit(&t->park_sync, &one, 0, memory_order_acq_rel,
                                                    memory_order_relaxed))
            break;
        /* For a dump of the tree (since when it waits): the coarse clock, a read of the vDSO's
         * last tick with no TSC read, so that a park pays little for it. Ticks lag weft_now() by
         * at most a few milliseconds, enough to say how long a task has waited. */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
        t->parked_at = (weft_time)ts.tv_sec * WEFT_SEC + ts.tv_nsec;
        weft__worker *w = weft__sched_worker();
        keep_errno(w, t);
        w->counts.parked++;
        w->after = weft__chaos_hit(w, 8) ? WEFT__AFTER_SPURIOUS : WEFT__AFTER_PARK;
        w->after_task = t;
        switch_from_task(w, pick_runnable(w));
        if (atomic_load_explicit(&t->park_sync, memory_order_acquire) == 2) {
            atomic_store_explicit(&t->park_sync, 0, memory_order_relaxed);
            break;
        }
    }
    uint32_t reason = atomic_load_explicit(&t->wait, memory_order_acquire);
    atomic_store_explicit(&t->wait, WEFT__WAIT_NONE, memory_order_relaxed);
    return reason;
}

static __attribute__((noinline, cold)) void trace_wake(weft__worker *w, weft__task *t,
                                                       uint32_t reason)
{
    weft__trace_add(w->trace, WEFT__TR_WAKE, t->id, reason);
}

/* The waker's half of the handshake on `t`, whose wait it won, counted (and traced) before the
 * task can run: once runnable, its record may be reused. 1 when it was the second half (see
 * weft__sched_park): the caller must queue the task. `w`: the caller's worker, just looked up. */
static int wake_handshake(weft__worker *w, weft__task *t, uint32_t reason)
{
    weft_runtime *rt = t->rt;
    if (w && w->rt == rt) {
        w->counts.woken++;
        if (__builtin_expect(w->trace != NULL, 0))
            trace_wake(w, t, reason); /* out of line: its buffer's registers cost every wake */
    } else {
        atomic_fetch_add_explicit(&rt->foreign_wakes, 1, memory_order_relaxed);
    }
    /* 1: the task's context is saved and no waker has come, so nobody but this waker, which won
     * the park word, can touch the handshake before the task runs again (not queued, it cannot
     * park anew): a plain store completes it, without the locked add. The common case: the
     * task's park was over before its waker ran. */
    if (atomic_load_explicit(&t->park_sync, memory_order_acquire) == 1) {
        atomic_store_explicit(&t->park_sync, 2, memory_order_release);
        return 1;
    }
    return atomic_fetch_add_explicit(&t->park_sync, 1, memory_order_acq_rel) == 1;
}

/* 1 if this call woke `t`; *runnable is then set when it was also the second half of the
 * handshake (see weft__sched_park), whose maker must queue the task. */
static int wake(weft__worker *w, weft__task *t, uint32_t reason, int *runnable)
{
    uint32_t expect = WEFT__WAIT_PARKED;
    if (!atomic_compare_exchange_strong_explicit(&t->wait, &expect, reason, memory_order_acq_rel,
                                                 memory_order_relaxed))
        return 0;
    *runnable = wake_handshake(w, t, reason);
    return 1;
}

/* Queues `t`, made runnable by a wake from the caller's worker `w` (or a foreign thread). */
static void ready_from(weft__worker *w, weft__task *t)
{
    if (w && w->rt == t->rt)
        push_woken(w, t);
    else
        weft__inject_task(t->rt, t);
}

int weft__sched_wake(weft__task *t, uint32_t reason)
{
    int runnable = 0;
    weft__worker *w = weft__sched_worker();
    int woke = wake(w, t, reason, &runnable);
    if (runnable)
        ready_from(w, t);
    return woke;
}

int weft__sched_wake_claim(weft__task *t, uint32_t reason)
{
    uint32_t expect = WEFT__WAIT_PARKED;
    return atomic_compare_exchange_strong_explicit(&t->wait, &expect, reason, memory_order_acq_rel,
                                                   memory_order_relaxed);
}

void weft__sched_wake_finish(weft__worker *w, weft__task *t)
{
    if (wake_handshake(w, t, atomic_load_explicit(&t->wait, memory_order_relaxed)))
        ready_from(w, t);
}

int weft__sched_wake_into(weft__task *t, uint32_t reason, weft__ready_batch *b)
{
    int runnable = 0;
    int woke = wake(weft__sched_worker(), t, reason, &runnable);
    if (runnable) {
        t->next = NULL;
        if (b->tail)
            b->tail->next = t;
        else
            b->head = t;
        b->tail = t;
        weft__task **r = &b->recent[b->n % WEFT__HINT_AHEAD];
        if (*r)
            weft__task_set_hint(*r, t);
        *r = t;
        b->n++;
    }
    return woke;
}

/* ---- what tasks call ---------------------------------------------------------------------- */

int weft__sched_yield(void)
{
    weft__worker *w = weft__sched_worker();
    weft__task *self = weft__sched_current(w);
    keep_errno(w, self);
    weft__task *next = pick_runnable(w);
    if (!next) {
        /* Nothing of our own: a yield must still let work that waits elsewhere run, or a task
         * queued behind a neighbour that never suspends waits as long as that neighbour runs
         * while this worker goes round its yielder. */
        next = weft__steal_round(w, 0);
        if (next && prepare_to_run(w, next) != 0) {
            weft__inject_task(w->rt, next);
            next = NULL;
        }
    }
    if (!next) {
        /* A suspension point reached: alive, even with nothing to switch to. */
        weft__sched_progress(w);
        *w->errno_of_thread = self->errno_value; /* the looks around may have set it */
        return 0;
    }
    w->after = WEFT__AFTER_READY;
    w->after_task = self;
    switch_from_task(w, next);
    return 1;
}

/* ---- the worker loop ------------------------------------------------------------------------ */

static void resume(weft__worker *w, weft__task *t)
{
    if (prepare_to_run(w, t) != 0) {
        weft__task_end_without_stack(t); /* see pick_runnable */
        return;
    }
    switch_to(w, t, 0);
    after_switch();
}

/* Whether a worker other than `w` was awake when `w` set its bit in the idle mask, whose word
 * was `was` before. The word of `w` from the RMW itself, which comes before or after each other
 * worker's own RMW of it in their one order; the other words read after it. */
static int neighbour_awake(weft__worker *w, uint64_t was)
{
    weft_runtime *rt = w->rt;
    unsigned words = (rt->nworkers + 63) / 64;
    for (unsigned i = 0; i < words; i++) {
        unsigned in_word = i + 1 < words ? 64 : rt->nworkers - 64 * i;
        uint64_t all = in_word == 64 ? ~(uint64_t)0 : ((uint64_t)1 << in_word) - 1;
        uint64_t bits = i == w->index / 64
                            ? was | (uint64_t)1 << (w->index % 64)
                            : atomic_load_explicit(&rt->idle_mask[i], memory_order_seq_cst);
        if (bits != all)
            return 1;
    }
    return 0;
}

static int nothing_to_do(weft__worker *w)
{
    return !any_work_visible(w) && !atomic_load_explicit(&w->rt->stopping, memory_order_acquire);
}

static void sleep_until_work(weft__worker *w)
{
    weft_runtime *rt = w->rt;
    uint32_t ticket = weft__idle_ticket(&w->idle);
    uint64_t bit = (uint64_t)1 << (w->index % 64);
    _Atomic uint64_t *word = &rt->idle_mask[w->index / 64];
    int handover = 0;
    uint64_t was = atomic_fetch_or_explicit(word, bit, memory_order_seq_cst);
    weft__stack_trim(&rt->stacks); /* nothing else to do: the time to give pages back */
    weft_time until = weft__wtimers_next(w);
    /* A neighbour awake may have spawned just now without the fence, and hold its worker (the
     * essay above): its spawn is visible to all after a moment, so look again after that. */
    if (rt->nworkers > 1 && neighbour_awake(w, was)) {
        weft_time soon = weft_now() + UNFENCED_SPAWN_WAIT;
        /* Until then, unless woken: a signal may end a sleep early. */
        while (soon < until && !handover && weft__idle_ticket(&w->idle) == ticket &&
               nothing_to_do(w) && weft_now() < soon)
            handover = weft__idle_sleep(&w->idle, ticket, soon);
    }
    /* Woken meanwhile (the ticket moved on), this sleep returns at once. */
    if (!handover && nothing_to_do(w))
        handover = weft__idle_sleep(&w->idle, ticket, until);
    atomic_fetch_and_explicit(word, ~bit, memory_order_acq_rel);
    /* Left the poller, perhaps for a task that never comes back: one that sleeps takes it. */
    if (handover)
        weft__sched_wake_one(rt);
}

/* A worker's idle time for weft_runtime_metrics: a period begins (c->idle_since set) and ends
 * (moved into c->idle_ns) under idle_seq, a sequence lock whose one writer is the worker, with
 * the clock read inside the odd count: a snapshot then reads the words and its own clock either
 * wholly before the change or wholly after it (metrics.c), and never counts as busy a time that
 * the next one counts as idle, nor the other way. */
static void idle_change_begin(weft__worker_counts *c)
{
    __atomic_store_n(&c->idle_seq, c->idle_seq + 1, __ATOMIC_RELAXED);
    atomic_thread_fence(memory_order_seq_cst); /* the odd count out before the clock is read */
}

static void idle_change_end(weft__worker_counts *c)
{
    __atomic_store_n(&c->idle_seq, c->idle_seq + 1, __ATOMIC_RELEASE);
}

static void idle_begins(weft__worker_counts *c)
{
    idle_change_begin(c);
    __atomic_store_n(&c->idle_since, weft_now(), __ATOMIC_RELAXED);
    idle_change_end(c);
}

static void idle_ends(weft__worker_counts *c)
{
    idle_change_begin(c);
    __atomic_store_n(&c->idle_ns, c->idle_ns + (weft_now() - c->idle_since), __ATOMIC_RELAXED);
    __atomic_store_n(&c->idle_since, 0, __ATOMIC_RELAXED);
    idle_change_end(c);
}

void weft__sched_run_worker(weft__worker *w)
{
    weft_runtime *rt = w->rt;
    weft__tls_worker = w;
    w->eh = weft__eh_thread();
    w->errno_of_thread = weft__errno_here();
    for (;;) {
        weft__task *t = pick_local(w);
        if (!t) {
            weft__wtimers_run(w);
            /* A worker alone that will not spin sleeps in the poller next, and that wait takes
             * what is ready as this look would: one system call per idle moment, not two. */
            if (rt->nworkers > 1 || weft__blocking_in_flight(rt))
                poll_io(w);
            t = pick_local(w);
        }
        if (!t) {
            /* Idle from here until a task is found (weft_metrics): spinning counts too. */
            if (!w->counts.idle_since)
                idle_begins(&w->counts);
            t = weft__steal_spin(w);
        }
        if (t) {
            if (w->counts.idle_since)
                idle_ends(&w->counts);
            resume(w, t);
            continue;
        }
        if (atomic_load_explicit(&rt->stopping, memory_order_acquire))
            break;
        sleep_until_work(w);
    }
    weft__tls_worker = NULL;
}
