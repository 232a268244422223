// SPDX-License-Identifier: MIT
/*
 * The scheduler (sched.c): workers, their queues, picking, stealing, switching, the park/wake
 * protocol and the worker loop. Its design essay is at the top of sched.c.
 *
 * Park/wake protocol (every wait is built on it, through wait.h):
 *   1. the task sets wait = WEFT__WAIT_PARKED (weft__sched_prepare_park), then registers where
 *      wakers will find it (a scope's parked list, a semaphore's queue, a timer), each under
 *      that structure's lock;
 *   2. it calls weft__sched_park(), which switches away; the worker that takes over performs the
 *      "saved" half of a two-party handshake on park_sync;
 *   3. a waker, holding the lock under which it found the task, CASes wait from PARKED to a
 *      WOKEN_* reason (weft__sched_wake); only the winner goes on, and performs the other half
 *      of the handshake.
 *   Whoever completes the handshake second makes the task runnable. So a task is never resumed
 *   before its context is saved, and each park is woken exactly once. A waker always wakes under
 *   the lock of the registration it found, and the woken task unregisters under the same lock, so
 *   no stale registration can wake a later park.
 *
 * Nothing here knows about scopes, the blocking pool or the watchdog: those files call down into
 * the scheduler, never the other way.
 */
#ifndef WEFT_SCHED_H
#define WEFT_SCHED_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "arch/ctx.h"
#include "deque.h"
#include "idle.h"
#include "runtime.h"
#include "stack.h"
#include "task.h"
#include "timer.h"
#include "trace.h"
#include "weft.h"
#include "wtimers.h"

/* What the context that takes over a worker does for the one that left it. */
enum weft__after {
    WEFT__AFTER_NONE = 0,
    WEFT__AFTER_READY,    /* the task yielded: queue it */
    WEFT__AFTER_PARK,     /* the task parked: finish its half of the handshake */
    WEFT__AFTER_FINISH,   /* the task ended: recycle its stack and record */
    WEFT__AFTER_SPURIOUS, /* chaos mode: resume the parked task without a wake (it parks again) */
};

/* What the kernel says of a worker's thread, for the watchdog: its time on a CPU and its time
 * waiting on a run queue so far (/proc/.../schedstat), and whether it is runnable now, running
 * or ready (state R in /proc/.../stat). `known` is 0 where the kernel does not say. */
typedef struct weft__thread_times {
    weft_time ran, waited;
    int runnable, known;
} weft__thread_times;

/* What a worker counts for weft_metrics (metrics.c). Only the worker writes them, with plain
 * increments (an atomic here would be on every spawn); the snapshot reads them from any thread
 * while they change, which on every architecture weft runs on returns either value of an
 * aligned word, never a torn one (metrics.c tells ThreadSanitizer so). */
typedef struct weft__worker_counts {
    /* Tasks spawned here are counted by the ids the worker gives out (records.c), which every
     * spawn takes anyway: those minus the ids of spawns that failed once they had one. */
    uint64_t ids_before;  /* ids of the blocks used up */
    uint32_t id_seq;      /* odd while the worker changes blocks */
    uint64_t unspawned;   /* ids given to spawns that then failed */
    uint64_t started;     /* tasks that first ran here on a stack of their own */
    uint64_t inline_runs; /* children a join ran here inline (started too) */
    uint64_t stolen;      /* tasks taken from other workers */
    uint64_t parked;      /* parks of tasks running here */
    uint64_t woken;       /* wake-ups made by code running here */
    weft_time born;       /* when the worker started */
    weft_time idle_ns;    /* time without work, before idle_since */
    weft_time idle_since; /* without work since then; 0: busy */
    uint32_t idle_seq;    /* odd while an idle period begins or ends (sched.c, idle_begins and
                           * idle_ends): a snapshot that read one word before the change and
                           * one after would miss a period, and the next would count it again
                           * (time going back between snapshots) */
} weft__worker_counts;

/* The released scope records a worker keeps (scope.c). */
typedef struct weft__scope_cache {
    weft_scope *top;
    unsigned count;
} weft__scope_cache;

struct weft__worker {
    weft__deque spawnq; /* unstarted tasks, newest at the bottom */
    weft__deque readyq; /* tasks holding a stack (woken, yielded); served oldest first */
    weft_runtime *rt;
    unsigned index;
    /* The task running on this worker (an inline child, inside its joiner's join), NULL in the
     * scheduler. Written by the worker alone; atomic because the watchdog reads it too. */
    weft__task *_Atomic current;
    weft__ctx sched_ctx;
    int after;
    weft__task *after_task;
    uint64_t tick;
    unsigned checkpoints; /* weft_checkpoint calls, to look at the timers every few of them */
    unsigned ready_streak;
    /* The hand-off slot (sched.c, push_woken): a task woken by a task running here, to run next
     * here. The owner swaps it; a thief takes it with a CAS once it has stood still. */
    weft__task *_Atomic handoff;
    unsigned handoff_streak; /* picks from the slot in a row */
    /* What this worker, as a thief, saw in a slot last (steal.c): the slot's worker, its task,
     * and that worker's `progress` then. */
    struct weft__worker *seen_victim;
    weft__task *seen_handoff;
    uint64_t seen_progress;
    /* Since when this worker's steal rounds found only spawns a neighbour keeps private (0: they
     * did not), to know when to take one anyway (steal.c). */
    weft_time private_since;
    /* Work a file above the scheduler holds back on this worker (the count-out of children of
     * one scope that ended here: weft__scope_count_out), to be finished before the worker runs a
     * task whose `scope` is not `held_for`, or sleeps: pick_local calls `release_held`. */
    void *held_for;
    void (*release_held)(weft__worker *w);
    uint32_t held_count;
    uint64_t rng;
    uint64_t chaos_rng;
    weft__trace_buf *trace; /* NULL: untraced (trace.h) */
    /* The C++ runtime's exception state of this worker's thread, NULL without it (eh.h). */
    struct weft__eh_globals *eh;
    int *errno_of_thread; /* errno of this worker's thread: a task's goes with it (sched.c) */
    weft__worker_counts counts;
    weft__task *task_cache;
    unsigned task_cache_count;
    unsigned chunks_made;
    char *carve, *carve_end; /* the part of its newest chunk no record was taken from yet */
    weft__stack_cache stacks;
    weft__scope_cache scopes;
    weft__timer_heap timers;
    weft__idle idle;            /* where it sleeps when it has nothing to do (idle.h) */
    _Atomic uint64_t progress;  /* switches and inline runs, for the watchdog */
    _Atomic uint64_t own_waits; /* in and out of the library's own waits (alloc.h): odd inside */
#ifdef WEFT_TSAN
    _Atomic uint64_t running_id; /* the id of `current` (see watchdog_main) */
#endif
    uint64_t next_id, end_id;      /* this worker's block of task ids */
    uint64_t watch_progress;       /* the watchdog's last sample of `progress` */
    weft__task *watch_task;        /* and of `current` */
    uint64_t watch_own_waits;      /* and of `own_waits` */
    weft_time watch_since;         /* when the watchdog first saw that sample */
    int watch_still;               /* it has seen the worker stand still since, */
    weft__thread_times watch_then; /* and the thread's times then (watchdog_main) */
    _Atomic int tid;               /* the worker's thread id, for the watchdog (0 until known) */
    pthread_t thread;
    void *altstack;
    void *thread_stack_lo; /* for the sanitizers' fiber switches */
    size_t thread_stack_size;
    void *tsan_fiber;
} __attribute__((aligned(64)));

/* The calling thread's worker (sched.c sets it). initial-exec: in the shared library the default
 * model calls __tls_get_addr at every access, and every spawn, open, join and release looks the
 * worker up; the cost is a few bytes of the static TLS reserve that a library loaded with dlopen
 * draws on. */
extern _Thread_local weft__worker *weft__tls_worker
    __attribute__((tls_model("initial-exec"), visibility("hidden")));

/** The worker running the caller, or NULL on a foreign thread. Never inlined, and the empty asm
 *  makes its result opaque: the compiler can neither hoist nor reuse it, so a green thread that
 *  moved to another OS thread between two calls reads that thread's value. Each file has its
 *  own copy so that the compiler sees what the call clobbers (only the result register) and
 *  keeps the caller's arguments in their registers across it, where a call to another file
 *  cost each of spawn, open, join and release a frame of saved registers. */
static __attribute__((noinline, unused)) weft__worker *weft__sched_worker(void)
{
    weft__worker *w = weft__tls_worker;
    __asm__ volatile("" : "+r"(w));
    return w;
}

/** weft__sched_worker for a fast path that must stay a leaf (no call, so no frame). On x86-64 one
 *  volatile asm reads the thread's slot through %fs every time it runs (the "memory" clobber
 *  orders it with calls and switches): no address of the thread-local can outlive a switch,
 *  even where the caller is inlined into a loop that parks. Elsewhere it is the call. */
static inline __attribute__((always_inline, unused)) weft__worker *weft__sched_worker_leaf(void)
{
#if defined(__x86_64__)
    weft__worker *w;
    __asm__ volatile("movq weft__tls_worker@gottpoff(%%rip), %0\n\t"
                     "movq %%fs:(%0), %0"
                     : "=r"(w)
                     :
                     : "memory");
    return w;
#else
    return weft__sched_worker();
#endif
}

/** The task running on `w` (the caller's worker, just looked up), NULL for none. */
static inline weft__task *weft__sched_current(weft__worker *w)
{
    return w ? atomic_load_explicit(&w->current, memory_order_relaxed) : NULL;
}

/** Makes `t` the task running on `w` (the caller's worker; NULL: the scheduler), for
 *  weft__task_self and the watchdog. The watchdog times a task from its first sample in which
 *  neither `current` nor `progress` moved, so where the change of `current` alone tells it that
 *  another task runs (an inline child handing its joiner back its stack), no bump is needed. */
static inline void weft__sched_set_current(weft__worker *w, weft__task *t)
{
    atomic_store_explicit(&w->current, t, memory_order_release);
#ifdef WEFT_TSAN
    atomic_store_explicit(&w->running_id, t ? t->id : 0, memory_order_release);
#endif
}

/** The watchdog's evidence that `w` (the caller's worker) moves on: bumped at every switch, at
 *  the start of every inline run and at every suspension point. Only the owner writes it, so a
 *  relaxed load and store (no RMW) suffice. */
static inline void weft__sched_progress(weft__worker *w)
{
    atomic_store_explicit(&w->progress,
                          atomic_load_explicit(&w->progress, memory_order_relaxed) + 1,
                          memory_order_release);
}

/** Step 1 of the protocol: the task will park. */
static inline void weft__sched_prepare_park(weft__task *t)
{
    atomic_store_explicit(&t->wait, WEFT__WAIT_PARKED, memory_order_release);
}

/** Takes back a prepared park that no waker found yet. Returns 1 if taken back; 0 if a waker
 *  already won, in which case the caller must still call weft__sched_park (it returns at once). */
int weft__sched_unprepare_park(weft__task *t);

/** Step 2: switches away until woken; returns the WEFT__WOKEN_* reason. Only `t` itself. */
uint32_t weft__sched_park(weft__task *t);

/** Step 3: wakes `t` if it is parked. Returns 1 if this call woke it. Any thread. */
int weft__sched_wake(weft__task *t, uint32_t reason);

/** Step 3 in two halves, for a waker that hands the task something once it has won it, which the
 *  task reads without taking the waker's lock again: the claim (1 if this call won the park word
 *  of `t`; nobody else can win it then, and the task cannot run yet), then, once the hand-over is
 *  written, weft__sched_wake_finish, which lets the task run (its acquire of the handshake sees
 *  what was written before). A claim that returned 1 is always finished. `w`: the caller's
 *  worker, looked up with weft__sched_worker() (NULL on a plain thread). Any thread. */
int weft__sched_wake_claim(weft__task *t, uint32_t reason);
void weft__sched_wake_finish(weft__worker *w, weft__task *t);

/** Whether the caller, on worker `w` (as for weft__sched_wake_finish), runs on a worker of the
 *  runtime of `t`. A waker that does not (a plain thread, a task of another runtime) is still in
 *  the runtime's code, queueing `t` and waking a sleeper, after `t` can run: were `t` then free
 *  to end, and the runtime with it, that waker would read freed memory. So such a waker leaves
 *  its lock for the woken task to take again, which the task cannot do before the waker is
 *  through. */
static inline int weft__sched_waker_is_own(weft__worker *w, weft__task *t)
{
    return w && w->rt == t->rt;
}

/* Steps between a task and its prefetch hint: about as many misses as a core keeps in flight. */
#define WEFT__HINT_AHEAD 8

/** Tasks of one runtime made runnable together (a cancel waking a scope's sleepers), linked
 *  through `next` and queued by one weft__sched_ready_batch: one lock of the injection queue and
 *  one wake-up for the lot instead of one each. */
typedef struct weft__ready_batch {
    weft__task *head, *tail;
    long n;
    weft__task *recent[WEFT__HINT_AHEAD]; /* the last ones added: each gets a later one as hint */
} weft__ready_batch;

/** weft__sched_wake, except that a task this call makes runnable joins `b` instead of a queue. */
int weft__sched_wake_into(weft__task *t, uint32_t reason, weft__ready_batch *b);

/** Queues the tasks of `b` (all of runtime `rt`) like weft__sched_ready, and empties `b`. */
void weft__sched_ready_batch(weft_runtime *rt, weft__ready_batch *b);

/* A worker's ready queue holds at most this many tasks; more go on the injection queue. A
 * wake-up of many tasks at once (a cancel of 100,000 sleepers) would otherwise grow the ring to a
 * megabyte of fresh pages, milliseconds of page faults, where the injection queue links the
 * records themselves; past that many, tasks are no fresher in one queue than in the other. */
#define WEFT__READY_LOCAL_MAX 4096

/** Makes a task runnable: the caller's worker's ready queue, or the injection queue. */
void weft__sched_ready(weft_runtime *rt, weft__task *t);

/** Wakes one sleeping worker of `rt`, if any: 1 if it woke one. */
int weft__sched_wake_one(weft_runtime *rt);

/** New work on the caller's worker: wakes a sleeping worker unless a spinning one will find it
 *  anyway (the wake-up protocol is in sched.c's essay). Inline: it is on every spawn. */
static inline void weft__sched_notify_local(weft_runtime *rt)
{
    if (rt->nworkers < 2)
        return;
    /* The idle mask first: it changes only when a worker sleeps or wakes, where the spinning
     * count changes each time a busy worker runs out of local work, and a spawn that read it
     * every time paid for the line moving over from that worker. Up to 64 workers it is one
     * word; the words of workers a runtime does not have stay 0, so more than 64 read them all
     * (one line) without a loop or a count of them. */
    uint64_t sleeping = atomic_load_explicit(&rt->idle_mask[0], memory_order_relaxed);
    if (__builtin_expect(rt->nworkers > 64, 0))
        for (unsigned i = 1; i < sizeof(rt->idle_mask) / sizeof(rt->idle_mask[0]); i++)
            sleeping |= atomic_load_explicit(&rt->idle_mask[i], memory_order_relaxed);
    if (sleeping && atomic_load_explicit(&rt->nspinning, memory_order_relaxed) == 0)
        weft__sched_wake_one(rt);
}

/** Sets a stack of t's size aside for `t`, an unstarted task not queued yet, so that it starts
 *  on it (WEFT__TASK_STACK_HELD): a task that could never get one is then refused where it is
 *  made, instead of ending unrun with -ENOMEM when it is first picked. `w`: the caller's worker,
 *  or NULL (any thread). 0 or -ENOMEM. */
int weft__sched_hold_stack(weft__worker *w, weft_runtime *rt, weft__task *t);
/** Gives back what weft__sched_hold_stack set aside, if anything, for a task that will not be
 *  queued after all. `w` as there. */
void weft__sched_drop_stack(weft__worker *w, weft_runtime *rt, weft__task *t);

/** weft__sched_spawn_on for the worker the caller runs on, `w`, of runtime `rt`: the new task
 *  goes on w's spawn queue. A task of its own stack size gets that stack now; for the others the
 *  worker's cache must hold one stack, which the first to start will take (the spawn fast path
 *  checks no more): one that finds none left ends with -ENOMEM (weft__task_end_without_stack).
 *  0 or -ENOMEM. Inline: it is on every spawn. */
static inline int weft__sched_spawn_own(weft__worker *w, weft_runtime *rt, weft__task *t)
{
    if (__builtin_expect(t->stack_size != 0, 0)) {
        if (weft__sched_hold_stack(w, rt, t) != 0)
            return -ENOMEM;
    } else if (weft__stack_reserve(&rt->stacks, &w->stacks) != 0) {
        return -ENOMEM;
    }
    if (weft__deque_push_owner(&w->spawnq, t) != 0) {
        weft__sched_drop_stack(w, rt, t);
        return -ENOMEM;
    }
    weft__sched_notify_local(rt);
    return 0;
}

/** Queues a new (unstarted) task on the caller's worker, or the injection queue. 0 or -ENOMEM. */
int weft__sched_spawn(weft_runtime *rt, weft__task *t);
/** weft__sched_spawn with the caller's worker (or NULL), already looked up in the same call. */
int weft__sched_spawn_on(weft__worker *w, weft_runtime *rt, weft__task *t);

/** Runs queued work of the caller's worker other than the running task, if any; 1 if it did. */
int weft__sched_yield(void);

/* A loop that polls weft_checkpoint never enters the scheduler, yet a deadline that passes
 * meanwhile must reach it: the deadline's timer may sit on this very worker's heap. So a
 * checkpoint also fires this worker's due timers, looking at the clock every this many calls (a
 * clock read costs about as much as the rest of a checkpoint; polled loops call it often). */
#define WEFT__CHECKPOINT_TIMER_EVERY 16

/** A checkpoint of the task running on `w` (the caller's worker, just looked up): tells the
 *  watchdog the worker moves on (the running task is the same, so only the count changes), and
 *  now and then fires due timers; returns 1 when it did (the caller may then look at the clock
 *  too). Inline: CPU loops poll it. */
static inline int weft__sched_checkpoint_on(weft__worker *w)
{
    atomic_store_explicit(&w->progress,
                          atomic_load_explicit(&w->progress, memory_order_relaxed) + 1,
                          memory_order_release);
    if (__builtin_expect(++w->checkpoints % WEFT__CHECKPOINT_TIMER_EVERY != 0, 1))
        return 0;
    weft__wtimers_run(w);
    return 1;
}

/** The worker loop of `w`, on `w`'s own thread (set up by runtime.c): runs tasks until the
 *  runtime stops. */
void weft__sched_run_worker(weft__worker *w);

#endif
