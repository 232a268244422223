/* Workers and the runtime object (named apart from <sched.h>); the scheduler's design essay is
 * at the top of sched.c. */
#ifndef WEFT_RUNTIME_H
#define WEFT_RUNTIME_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "deque.h"
#include "huge.h"
#include "lock.h"
#include "stack.h"
#include "task.h"
#include "timer.h"
#include "weft.h"

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
    /* Children of out_scope that ended here and are not yet taken off its balance (see
     * weft__sched_count_out). */
    weft_scope *out_scope;
    uint32_t out_count;
    uint64_t rng;
    uint64_t chaos_rng;
    weft__task *task_cache;
    unsigned task_cache_count;
    unsigned chunks_made;
    char *carve, *carve_end; /* the part of its newest chunk no record was taken from yet */
    weft__stack_cache stacks;
    weft__scope_cache scopes;
    weft__timer_heap timers;
    _Atomic uint32_t wake; /* futex word: a sleeping worker waits while it is unchanged */
    _Atomic uint64_t progress;    /* switches and inline runs, for the watchdog */
#ifdef WEFT_TSAN
    _Atomic uint64_t running_id; /* the id of `current` (see watchdog_main) */
#endif
    uint64_t next_id, end_id;     /* this worker's block of task ids */
    uint64_t watch_progress;      /* the watchdog's last sample of `progress` */
    weft__task *watch_task;       /* and of `current` */
    weft_time watch_since;        /* when the watchdog first saw that sample */
    int watch_still;              /* it has seen the worker stand still since, */
    weft__thread_times watch_then; /* and the thread's times then (watchdog_main) */
    _Atomic int tid;              /* the worker's thread id, for the watchdog (0 until known) */
    uint64_t watch_reported_id;   /* the task last reported on this worker */
    pthread_t thread;
    void *altstack;
    void *thread_stack_lo; /* for the sanitizers' fiber switches */
    size_t thread_stack_size;
    void *tsan_fiber;
} __attribute__((aligned(64)));

typedef struct weft__blocking_pool weft__blocking_pool;

/* Grouped by who writes what, a cache line per group where workers meet: every spawn reads the
 * first group (chaos, the worker count) and the idle mask, spinners write their count, wakers
 * the injection queue. On the machine we measure on a line moves between cores in about 240 ns,
 * and a spawner that read a line a spinner keeps writing paid that on every spawn. */
struct weft_runtime {
    /* Set at start, read everywhere. */
    weft__worker *workers;
    unsigned nworkers;
    _Atomic int stopping;
    _Atomic int shutting_down;
    uint64_t chaos;         /* WEFT_CHAOS seed; 0: off */
    weft_scope *root_scope; /* parent of every submitted task's scope */
    weft__blocking_pool *blocking;
    weft_config cfg;
    /* Bumped by every cancel (see scope.h), read by cancel checks. */
    _Alignas(64) _Atomic uint64_t cancel_epoch;
    /* Written when a worker goes to sleep or is woken; read at every spawn
     * (weft__sched_notify_local). */
    _Alignas(64) _Atomic uint64_t idle_mask[4]; /* sleeping workers, one bit each */
    /* Written by workers looking for work. */
    _Alignas(64) _Atomic unsigned nspinning;
    /* Injection queue: work from outside the workers, and wake-ups a worker's ready queue has no
     * room for. An intrusive FIFO behind a ck spinlock: unbounded without allocating (a cancel
     * can wake 100,000 tasks at once). */
    _Alignas(64) weft__lock inject_lock;
    weft__task *inject_head, *inject_tail;
    _Atomic size_t inject_len;
    _Alignas(64) weft__stack_pool stacks;
    _Alignas(64) weft__lock chunk_lock;
    struct task_chunk *chunks;   /* every task record's memory, freed with the runtime */
    weft__huge_range huge;       /* where the huge chunks among them are carved (huge.h) */
    weft__task *spare_tasks;     /* records freed off the runtime's workers */
    weft__task *task_batches;    /* records workers gave up, in batches (see weft__task_free_on) */
    char *carve, *carve_end;     /* records for foreign threads not taken yet (chunk_lock) */
    void *free_blocks;           /* weft__block_alloc's, under chunk_lock */
    char *block_carve, *block_end;
    unsigned block_chunks;
    weft_scope *spare_scopes;    /* scope records released off the runtime's workers */
    _Alignas(64) _Atomic uint32_t outstanding; /* submissions not yet ended (a futex word) */
    pthread_t watchdog;
    int watchdog_running;
    _Atomic uint32_t watchdog_wake;
};

/** The task running on `w` (the caller's worker, just looked up), NULL for none. */
static inline weft__task *weft__worker_current(weft__worker *w)
{
    return w ? atomic_load_explicit(&w->current, memory_order_relaxed) : NULL;
}

/** weft__task_new_id when `w`'s block of ids is used up or `w` is NULL (off the workers). */
uint64_t weft__task_id_slow(weft__worker *w);

/** A new task's id: the next of the block of ids `w` (the caller's worker, or NULL) holds, so
 *  that a spawn costs no shared atomic. */
static inline uint64_t weft__task_new_id(weft__worker *w)
{
    if (w && w->next_id != w->end_id)
        return w->next_id++;
    return weft__task_id_slow(w);
}

/** Takes the newest record of the cache of `w` (the caller's worker), which is not empty. */
static inline weft__task *weft__task_cache_pop(weft__worker *w)
{
    weft__task *t = w->task_cache;
    w->task_cache = t->next;
    w->task_cache_count--;
    return t;
}

/** weft__task_alloc_on for the worker the caller runs on, `w`, of runtime `rt`: a record from
 *  w's cache, inline (it is on every spawn); an empty cache takes the call. */
static inline weft__task *weft__task_alloc_own(weft__worker *w, weft_runtime *rt)
{
    if (!w->task_cache)
        return weft__task_alloc_on(w, rt);
    weft__task *t = weft__task_cache_pop(w);
    weft__task_reset(t, rt, weft__task_new_id(w));
    return t;
}

/* A worker keeps at most WEFT__TASK_CACHE_MAX free records; beyond, it hands half of them to
 * the runtime, where a worker whose cache is empty takes them before carving fresh ones. Without
 * this, records spawned on one worker and ended on another piled up on the second while the
 * first kept carving fresh memory, so a producer feeding a consumer grew without bound. A batch
 * moves under the chunk lock, once per WEFT__TASK_CACHE_MAX / 2 records. */
#define WEFT__TASK_CACHE_MAX 256

/** Hands the older records of the full cache of `w` to `rt` (see WEFT__TASK_CACHE_MAX). */
void weft__task_give_batch(weft__worker *w, weft_runtime *rt);

/** A record back into the cache of `w`, the caller's worker, of the record's runtime. Inline:
 *  every child run inside a join ends here. */
static inline void weft__task_free_own(weft__worker *w, weft__task *t)
{
    t->next = w->task_cache;
    w->task_cache = t;
    if (++w->task_cache_count > WEFT__TASK_CACHE_MAX)
        weft__task_give_batch(w, t->rt);
}

/** Makes `t` the task running on `w` (the caller's worker; NULL: the scheduler), for
 *  weft__task_self and the watchdog. The watchdog times a task from its first sample in which
 *  neither `current` nor `progress` moved, so where the change of `current` alone tells it that
 *  another task runs (an inline child handing its joiner back its stack), no bump is needed. */
static inline void weft__worker_set_current(weft__worker *w, weft__task *t)
{
    atomic_store_explicit(&w->current, t, memory_order_release);
#ifdef WEFT_TSAN
    atomic_store_explicit(&w->running_id, t ? t->id : 0, memory_order_release);
#endif
}

/** The watchdog's evidence that `w` (the caller's worker) moves on: bumped at every switch, at
 *  the start of every inline run and at every suspension point. Only the owner writes it, so a
 *  relaxed load and store (no RMW) suffice. */
static inline void weft__worker_progress(weft__worker *w)
{
    atomic_store_explicit(&w->progress,
                          atomic_load_explicit(&w->progress, memory_order_relaxed) + 1,
                          memory_order_release);
}

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
     * every time paid for the line moving over from that worker. */
    unsigned words = (rt->nworkers + 63) / 64;
    for (unsigned i = 0; i < words; i++) {
        if (atomic_load_explicit(&rt->idle_mask[i], memory_order_relaxed)) {
            if (atomic_load_explicit(&rt->nspinning, memory_order_relaxed) == 0)
                weft__sched_wake_one(rt);
            return;
        }
    }
}

/** weft__sched_spawn_on for the worker the caller runs on, `w`, of runtime `rt`: the new task
 *  goes on w's spawn queue, with a stack set aside for it unless it asked for its own size.
 *  0 or -ENOMEM. Inline: it is on every spawn. */
static inline int weft__sched_spawn_own(weft__worker *w, weft_runtime *rt, weft__task *t)
{
    if (!t->stack_size && weft__stack_reserve(&rt->stacks, &w->stacks) != 0)
        return -ENOMEM;
    if (weft__deque_push_owner(&w->spawnq, t) != 0)
        return -ENOMEM;
    weft__sched_notify_local(rt);
    return 0;
}

#define WEFT__MAX_WORKERS 256

/** Sleeps while *word == expected, until `deadline` (WEFT_NEVER: no limit). */
void weft__futex_wait(_Atomic uint32_t *word, uint32_t expected, weft_time deadline);
/** Wakes every thread sleeping on *word. */
void weft__futex_wake(_Atomic uint32_t *word);
/** Changes *word and wakes every thread sleeping on it. */
void weft__futex_bump(_Atomic uint32_t *word);

int weft__runtime_create(weft_runtime **out, const weft_config *cfg);
void weft__runtime_stop(weft_runtime *rt);

/** Queues `t` on the injection queue and wakes a sleeping worker. */
void weft__sched_inject(weft_runtime *rt, weft__task *t);

/* Blocking pool (blocking.c). */
int weft__blocking_init(weft_runtime *rt);
void weft__blocking_destroy(weft_runtime *rt);
/** The runtime whose blocking pool runs the caller, or NULL. */
weft_runtime *weft__blocking_current_runtime(void);
/** Threads the blocking pool has now (tests). */
unsigned weft__blocking_threads(weft_runtime *rt);
/** Waits until the pool has at most `n` threads, or until `deadline` (weft_now() clock):
 *  0 or -ETIMEDOUT (tests). */
int weft__blocking_wait_threads(weft_runtime *rt, unsigned n, weft_time deadline);
/** Chaos mode (WEFT_CHAOS) may yield here; when it is off, a load and a branch, not a call.
 *  Returns 1 when the caller may have moved to another worker. */
static inline int weft__chaos_point(weft_runtime *rt)
{
    if (__builtin_expect(rt->chaos != 0, 0)) {
        weft__sched_chaos_point();
        return 1;
    }
    return 0;
}

/** Fires the due timers of `w`, the caller's worker. */
void weft__sched_checkpoint_timers(weft__worker *w);

/* A loop that polls weft_checkpoint never enters the scheduler, yet a deadline that passes
 * meanwhile must reach it: the deadline's timer may sit on this very worker's heap. So a
 * checkpoint also fires this worker's due timers, looking at the clock every this many calls (a
 * clock read costs about as much as the rest of a checkpoint; polled loops call it often). */
#define WEFT__CHECKPOINT_TIMER_EVERY 16

/** A checkpoint of the task running on `w` (the caller's worker, just looked up): tells the
 *  watchdog the worker moves on (the running task is the same, so only the count changes), and
 *  now and then fires due timers. Inline: CPU loops poll it. */
static inline void weft__sched_checkpoint_on(weft__worker *w)
{
    atomic_store_explicit(&w->progress,
                          atomic_load_explicit(&w->progress, memory_order_relaxed) + 1,
                          memory_order_release);
    if (++w->checkpoints % WEFT__CHECKPOINT_TIMER_EVERY == 0)
        weft__sched_checkpoint_timers(w);
}

void weft__watchdog_start(weft_runtime *rt);
void weft__watchdog_stop(weft_runtime *rt);

#define WEFT__BLOCK_BYTES 4096
/** A page-sized block (WEFT__BLOCK_BYTES) of the runtime's memory, or NULL (ENOMEM). Any
 *  thread. Blocks go back with weft__block_free and stay in the runtime until it ends. */
void *weft__block_alloc(weft_runtime *rt);
void weft__block_free(weft_runtime *rt, void *b);

#endif
