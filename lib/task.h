/*
 * Tasks: the record of one spawned function, and the park/wake protocol.
 *
 * A task gets a stack only when it first runs on its own. A join may instead run an unstarted
 * child of the scope it joins inline, as a plain call on the joiner's stack: then the child's
 * `host` is the task that owns that stack, and suspending the child suspends the host's stack.
 * The scheduler always switches to host->ctx; `current` names the innermost task running there.
 *
 * Park/wake protocol (every blocking primitive is built on it):
 *   1. the task sets wait = WEFT__WAIT_PARKED, then registers where wakers will find it (a
 *      scope's parked list, a semaphore's queue, a timer), each under that structure's lock;
 *   2. it calls weft__task_park(), which switches away; the worker that takes over performs the
 *      "saved" half of a two-party handshake on park_sync;
 *   3. a waker, holding the lock under which it found the task, CASes wait from PARKED to a
 *      WOKEN_* reason; only the winner goes on, and performs the other half of the handshake.
 *   Whoever completes the handshake second makes the task runnable. So a task is never resumed
 *   before its context is saved, and each park is woken exactly once. A waker always wakes under
 *   the lock of the registration it found, and the woken task unregisters under the same lock, so
 *   no stale registration can wake a later park.
 */
#ifndef WEFT_TASK_H
#define WEFT_TASK_H

#include <assert.h>
#include <stdatomic.h>
#include <stdint.h>

#include "arch/ctx.h"
#include "defer.h"
#include "stack.h"
#include "timer.h"
#include "weft.h"

enum weft__wait {
    WEFT__WAIT_NONE = 0,
    WEFT__WAIT_PARKED = 1,
    WEFT__WOKEN = 2,        /* the awaited event happened */
    WEFT__WOKEN_CANCEL = 3, /* the task's scope was cancelled */
    WEFT__WOKEN_TIMER = 4,  /* its deadline passed */
};

#define WEFT__TASK_NAME_MAX 32

typedef struct weft__failure weft__failure;
typedef struct weft__worker weft__worker;

typedef struct weft__task {
    weft__ctx ctx;                /* saved context; meaningful only in a host */
    struct weft__task *host;      /* the task owning the stack this one runs on */
    weft__stack *stack;           /* a host's stack (host == this task); unset otherwise */
    weft_fn fn;
    void *arg;
    weft_runtime *rt;
    weft_scope *scope;            /* the scope it was spawned into */
    weft_scope *cancel_scope;     /* innermost open scope of this task (else `scope`) */
    weft_scope *owned;            /* newest scope it opened and has not released */
    struct weft__task *next;      /* run-queue, free-list and semaphore-queue link */
    struct weft__task *run_last;  /* injection queue: on the first task of a run queued at
                                   * once, the run's last and length (taken without a walk) */
    uint32_t run_len;
    /* A prefetch hint, never read through: a task that a walk of the list this one is on (a
     * scope's parked list, a run of the injection queue) reaches a few steps later. Such walks
     * go one record at a time, and the records are often cold or in another core's cache; the
     * hint lets the walker ask for a record early. Stale hints cost a useless prefetch. */
    struct weft__task *hint;
    struct weft__task *snext, *sprev; /* a semaphore's wait queue (apart from `next`: a
                                   * cancelled waiter is queued to run while still in it) */
    struct weft__task *pnext, *pprev; /* a scope's parked list */
    _Atomic uint32_t listed;      /* on that list; cleared by a cancel that detaches it */
    _Atomic uint32_t wait;
    _Atomic uint32_t park_sync;
    uint32_t flags;
    int result;                   /* a wait's outcome handed over by the waker */
    weft__timer timer;
    uint64_t id;
    weft__failure *failure;       /* message or group recorded by weft_fail / weft_fail_group */
    size_t stack_size;            /* 0: the runtime's */
    int tokens_held;              /* semaphore tokens taken and not given back (debug builds) */
    void *tsan_fiber;
    char name[WEFT__TASK_NAME_MAX];
} weft__task;

enum {
    WEFT__TASK_OWNER_COUNTED = 2, /* spawned by its scope's owner: counted in owner_spawned */
    WEFT__TASK_INLINE = 4,        /* run by its scope's owner inside the join */
    WEFT__TASK_SUBMITTED = 8,     /* the task a submission (or weft_run) waits for */
};

/* ---- provided by sched.c --------------------------------------------------------------- */

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
static __attribute__((noinline, unused)) weft__worker *weft__worker_self(void)
{
    weft__worker *w = weft__tls_worker;
    __asm__ volatile("" : "+r"(w));
    return w;
}
/** The task running on the caller's worker, or NULL. Same rule as weft__worker_self. */
weft__task *weft__task_self(void);

/** Step 1 of the protocol: the task will park. */
static inline void weft__task_prepare_park(weft__task *t)
{
    atomic_store_explicit(&t->wait, WEFT__WAIT_PARKED, memory_order_release);
}

/** Takes back a prepared park that no waker found yet. Returns 1 if taken back; 0 if a waker
 *  already won, in which case the caller must still call weft__task_park (it returns at once). */
int weft__task_unprepare_park(weft__task *t);

/** Step 2: switches away until woken; returns the WEFT__WOKEN_* reason. */
uint32_t weft__task_park(weft__task *t);

/** Step 3: wakes `t` if it is parked. Returns 1 if this call woke it. */
int weft__task_wake(weft__task *t, uint32_t reason);

/** Takes one ended child off the balance of `s`, perhaps later: ends of the same scope in a row
 *  on one worker are taken off together (see sched.c). Called by the ending task. */
void weft__sched_count_out(weft_scope *s);

/** Makes a task runnable: the caller's worker's ready queue, or the injection queue. */
void weft__sched_ready(weft_runtime *rt, weft__task *t);

/* Steps between a task and its prefetch hint: about as many misses as a core keeps in flight,
 * each 250 ns across cores where we measure. */
#define WEFT__HINT_AHEAD 8

/** Tasks of one runtime made runnable together (a cancel waking a scope's sleepers), linked
 *  through `next` and queued by one weft__sched_ready_batch: one lock of the injection queue and
 *  one wake-up for the lot instead of one each. */
typedef struct weft__ready_batch {
    weft__task *head, *tail;
    long n;
    weft__task *recent[WEFT__HINT_AHEAD]; /* the last ones added: each gets a later one as hint */
} weft__ready_batch;

/** weft__task_wake, except that a task this call makes runnable joins `b` instead of a queue. */
int weft__task_wake_into(weft__task *t, uint32_t reason, weft__ready_batch *b);

/** Queues the tasks of `b` (all of runtime `rt`) like weft__sched_ready, and empties `b`. */
void weft__sched_ready_batch(weft_runtime *rt, weft__ready_batch *b);

/** Queues a new (unstarted) task on the caller's worker, or the injection queue. 0 or -ENOMEM. */
int weft__sched_spawn(weft_runtime *rt, weft__task *t);

/** Runs queued work of the caller's worker other than the running task, if any; 1 if it did. */
int weft__sched_yield(void);

/** weft__task_reset for a record taken from the cache of a worker of `rt`, on the spawn path.
 *  A record enters a cache at rest, so that a spawn writes only what differs from task to task:
 *  it is of `rt` already; it owns no scope and holds no failure (weft__task_complete and
 *  weft__task_complete_slow see to both); its handshake words are at rest (every park ends with
 *  them so, and a waker touches them only while the task is parked) and its timer is disarmed
 *  (a sleep disarms it before it returns); its stack size is the runtime's (weft__task_free_on
 *  clears a size of its own; a child with one never runs inline). `next` is set by whatever
 *  queue links the record, and `stack` means something only on a host (host == the task). */
static inline void weft__task_reset_cached(weft__task *t, weft_runtime *rt, uint64_t id)
{
    assert(t->rt == rt);
    assert(!t->owned && !t->failure);
    assert(atomic_load_explicit(&t->wait, memory_order_relaxed) == WEFT__WAIT_NONE);
    assert(atomic_load_explicit(&t->park_sync, memory_order_relaxed) == 0);
    assert(!t->timer.heap && !t->stack_size);
    (void)rt;
    t->host = NULL;
    t->flags = 0;
    t->id = id;
#ifndef NDEBUG
    t->tokens_held = 0; /* counted by debug builds only */
#endif
#ifdef WEFT_TSAN
    t->tsan_fiber = NULL; /* read by ThreadSanitizer builds only */
#endif
}

/** Sets the fields a record starts with as a new task of `rt` with id `id` (the caller's;
 *  weft__task_init_child then gives it its function, scope and name): a fresh record's, or one
 *  from a cache (at rest, see weft__task_reset_cached). */
static inline void weft__task_reset(weft__task *t, weft_runtime *rt, uint64_t id)
{
    t->rt = rt;
    t->owned = NULL;
    t->failure = NULL;
    t->tsan_fiber = NULL;
    t->stack = NULL;
    t->next = NULL;
    atomic_store_explicit(&t->wait, WEFT__WAIT_NONE, memory_order_relaxed);
    atomic_store_explicit(&t->park_sync, 0, memory_order_relaxed);
    t->timer.heap = NULL; /* its word keeps counting generations: stale heap items may remain */
    t->stack_size = 0;
    t->tokens_held = 0;
    weft__task_reset_cached(t, rt, id);
}

/* The _on variants take the caller's worker (or NULL), already looked up in the same call. */
int weft__sched_spawn_on(weft__worker *w, weft_runtime *rt, weft__task *t);
weft__task *weft__task_alloc_on(weft__worker *w, weft_runtime *rt);
void weft__task_free_on(weft__worker *w, weft__task *t);

/** Chaos mode (WEFT_CHAOS): may yield here. Call it through weft__chaos_point (runtime.h). */
void weft__sched_chaos_point(void);

/** Arms the running task's timer on the caller's worker's heap. 0 or -ENOMEM. */
int weft__sched_arm_timer(weft__timer *t, weft_time deadline, weft__timer_fn fn);

weft__task *weft__task_alloc(weft_runtime *rt);
/** Makes sure the next weft__task_alloc_on(w, rt) succeeds (`w` runs on `rt`). 0 or -ENOMEM. */
int weft__task_reserve_on(weft__worker *w, weft_runtime *rt);
/** Turns the record of an ended child into a new, unstarted-looking child fn(arg) of the same
 *  scope, on the same host and stack, counted in the scope as the ended one was: a new id, no
 *  name, nothing else held over. */
void weft__task_renew(weft__task *t, weft_fn fn, void *arg);
void weft__task_free(weft__task *t);

/* ---- provided by task.c ---------------------------------------------------------------- */

/** Fills in a new task's function, scope and name (copied, truncated; NULL for none). */
void weft__task_init_child(weft__task *t, weft_scope *s, weft_fn fn, void *arg, const char *name);

/** The task's name; an unnamed task gets "task-<id>" the first time it is asked. */
const char *weft__task_name_of(weft__task *t);

/** Everything a task does after its function returned: implicit joins, failure recording, the
 *  scope's bookkeeping. Runs on the task's own (or host's) stack. Returns 1 when `t` has become
 *  a deferred sibling (weft__task_renew) that the caller must now run in its place. The common
 *  end (success, nothing left open or held, no slot to pass) is weft__task_complete in
 *  scope.h, which needs the scope's inline counting. */
int weft__task_complete_slow(weft__task *t, int rc);

#endif
