// SPDX-License-Identifier: MIT
/*
 * Tasks: the record of one spawned function, and the park/wake protocol.
 *
 * A task gets a stack when it first runs on its own; a task of a stack size of its own, and a
 * submission, have theirs set aside when they are queued (WEFT__TASK_STACK_HELD), so that one
 * that could never start is refused then. A join may instead run an unstarted
 * child of the scope it joins inline, as a plain call on the joiner's stack: then the child's
 * `host` is the task that owns that stack, and suspending the child suspends the host's stack.
 * The scheduler always switches to host->ctx; `current` names the innermost task running there.
 *
 * The park/wake protocol the records' wait words serve is in sched.h.
 */
#ifndef WEFT_TASK_H
#define WEFT_TASK_H

#include <assert.h>
#include <stdatomic.h>
#include <stdint.h>

#include "arch/ctx.h"
#include "defer.h"
#include "runtime.h"
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

/* What a task waits on, for those who look at tasks from outside the task (a dump of the tree,
 * a trace, a debugger script). It names the wait; the object (`wait_obj`) says which. */
enum weft__wait_on {
    WEFT__ON_NOTHING = 0,
    WEFT__ON_JOIN,      /* the join of a scope: wait_obj is the weft_scope */
    WEFT__ON_SLEEP,     /* a sleep: the deadline is the task's timer's */
    WEFT__ON_SEM,       /* a semaphore (a mutex's too): the weft_sem */
    WEFT__ON_EVENT,     /* an event: the weft_event */
    WEFT__ON_CHAN,      /* one channel operation (a send, a receive, or a select of one clause):
                         * the weft_select_op */
    WEFT__ON_SELECT,    /* a select of several clauses: the first weft_select_op */
    WEFT__ON_FD_READ,   /* a descriptor becoming readable: wait_obj is the fd, as an intptr_t */
    WEFT__ON_FD_WRITE,  /* writable (a connect, a write) */
    WEFT__ON_FD_EITHER, /* either (weft_fd_wait of both) */
    WEFT__ON_BLOCKING,  /* a call running on the blocking pool: the weft_fn */
    WEFT__ON_FORK,      /* weft_fork_join's forked function, run by another worker: the
                         * weft__fork descriptor (fork.h) */
};

#define WEFT__TASK_NAME_MAX 32

typedef struct weft__failure weft__failure;
typedef struct weft__worker weft__worker;
struct weft__fork;

/* A task's C++ exception state while it is switched out (eh.h). */
typedef struct weft__eh_state {
    void *caught;
    unsigned int uncaught;
} weft__eh_state;

typedef struct weft__task {
    weft__ctx ctx;           /* saved context; meaningful only in a host */
    struct weft__task *host; /* the task owning the stack this one runs on */
    weft__stack *stack;      /* a host's stack (host == this task); unset otherwise */
    weft_fn fn;
    void *arg;
    weft_runtime *rt;
    weft_scope *scope;           /* the scope it was spawned into */
    weft_scope *cancel_scope;    /* innermost open scope of this task (else `scope`) */
    weft_scope *owned;           /* newest scope it opened and has not released */
    struct weft__task *next;     /* run-queue, free-list and semaphore-queue link */
    struct weft__task *run_last; /* injection queue: on the first task of a run queued at
                                  * once, the run's last and length (taken without a walk) */
    uint32_t run_len;
    /* A prefetch hint, never read through: a task that a walk of the list this one is on (a
     * scope's parked list, a run of the injection queue) reaches a few steps later. Such walks
     * go one record at a time, and the records are often cold or in another core's cache; the
     * hint lets the walker ask for a record early. Stale hints cost a useless prefetch. */
    struct weft__task *hint;
    struct weft__task *snext, *sprev; /* a semaphore's wait queue (apart from `next`: a
                                       * cancelled waiter is queued to run while still in it) */
    struct weft__task *pnext, *pprev; /* its cancel scope's parked list (cancel.h) */
    _Atomic uint32_t listed;          /* on that list; cleared by a cancel that detaches it */
    struct weft_scope *listed_in;     /* whose list that is (WEFT__TASK_LISTED) */
    _Atomic uint32_t wait;
    _Atomic uint32_t park_sync;
    uint32_t flags;
    int result; /* a wait's outcome handed over by the waker */
    weft__timer timer;
    uint64_t id;
    weft__failure *failure; /* message or group recorded by weft_fail / weft_fail_group */
    size_t stack_size;      /* 0: the runtime's */
    int tokens_held;        /* semaphore tokens taken and not given back (debug builds) */
    /* What it waits on (weft__task_note_wait): meaningful only while `wait` says it is parked,
     * which an observer must check first; stale otherwise, never cleared. */
    uint8_t wait_on;
    const void *wait_obj;
    weft_time parked_at;  /* when it last parked (coarse clock, weft__sched_park) */
    weft_time wait_until; /* the deadline of its last weft__wait_park, WEFT_NEVER for none */
    /* An inline child's joiner: the task whose join runs it (not `host`, the owner of the
     * stack, which nested inline joins share). Set for every inline child (WEFT__TASK_INLINE
     * says which tasks are; stale on the others), and NULL on the others in traced runtimes,
     * whose trace walks the chain of joiners (trace.c). */
    struct weft__task *joiner;
    uint32_t trace_worker;   /* traced runtimes: the worker it last ran on */
    int errno_value;         /* its errno while switched out (errno_keep.h) */
    struct weft__fork *fork; /* WEFT__TASK_FORKED: the descriptor it was made from (fork.h) */
    void *tsan_fiber;
    weft__eh_state eh; /* its C++ exception state while switched out (eh.h) */
    char name[WEFT__TASK_NAME_MAX];
} weft__task;

enum {
    WEFT__TASK_OWNER_COUNTED = 2, /* spawned by its scope's owner: counted in owner_spawned */
    WEFT__TASK_INLINE = 4,        /* run by its scope's owner inside the join */
    WEFT__TASK_SUBMITTED = 8,     /* the task a submission (or weft_run) waits for */
    WEFT__TASK_STACK_HELD = 16,   /* unstarted, and `stack` was set aside for it when it was
                                   * queued (weft__sched_hold_stack): it starts on that one */
    WEFT__TASK_FREE = 32,         /* in a cache or spare list, no task: set by the records' free,
                                   * cleared by a spawn's reset. A walk over the chunks (dump.c)
                                   * tells live records from free ones by it. */
    WEFT__TASK_TRACE_RUN = 64,    /* traced runtimes: it began running (trace.c) */
    WEFT__TASK_LISTED = 128,      /* put on its cancel scope's parked list by itself, and not
                                   * taken off by itself since (a cancel may have detached it:
                                   * `listed` says); see weft__cancel_unlist */
    WEFT__TASK_FORKED = 256,      /* made from a weft_fork_join descriptor by the worker that
                                   * took it (fork.h): its end goes to that descriptor */
};

/** Notes what `t` is about to wait on (weft__wait_enter does it for every wait; a join does it
 *  itself). Plain stores by `t`; others read them racily, and only while `t` is parked. */
static inline void weft__task_note_wait(weft__task *t, enum weft__wait_on on, const void *obj)
{
    __atomic_store_n(&t->wait_on, (uint8_t)on, __ATOMIC_RELAXED);
    __atomic_store_n(&t->wait_obj, obj, __ATOMIC_RELAXED);
}

/** A task's prefetch hint (see `hint`). Relaxed atomics: the walks that read it race with the
 *  lists that write it by design, and a stale hint costs only a useless prefetch. */
static inline weft__task *weft__task_hint(weft__task *t)
{
    return __atomic_load_n(&t->hint, __ATOMIC_RELAXED);
}

static inline void weft__task_set_hint(weft__task *t, weft__task *hint)
{
    __atomic_store_n(&t->hint, hint, __ATOMIC_RELAXED);
}

/** weft__task_reset for a record taken from the cache of a worker of `rt`, on the spawn path.
 *  A record enters a cache at rest, so that a spawn writes only what differs from task to task:
 *  it is of `rt` already; it owns no scope and holds no failure (weft__scope_end_task and
 *  weft__task_complete_slow see to both); its handshake words are at rest (every park ends with
 *  them so, and a waker touches them only while the task is parked) and its timer is disarmed
 *  (a sleep disarms it before it returns); its stack size is the runtime's
 * (weft__records_free_task_on clears a size of its own; a child with one never runs inline). `next`
 * is set by whatever queue links the record, and `stack` means something only on a host (host ==
 * the task). */
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

/* ---- task.c ------------------------------------------------------------------------------ */

/** The task running on the caller's worker, or NULL. Never inlined, its result opaque: a green
 *  thread that moved to another OS thread between two calls reads that thread's value (see
 *  weft__sched_worker in sched.h). */
weft__task *weft__task_self(void);

/** A task's whole life on its own stack, from its first switch-in: its function, then each
 *  deferred sibling its end hands it. The scheduler calls it and recycles the stack after. */
void weft__task_main(weft__task *t);

/** Ends `t`, an unstarted task for which no stack can be had, without running its function:
 *  -ENOMEM is its failure, recorded by its scope as any child's (a submission's status), and
 *  its record is freed, or handed the deferred sibling its end passes the slot to, which is
 *  queued to start on a stack of its own. Called by the scheduler, on a worker; never switches. */
void weft__task_end_without_stack(weft__task *t);

/** Turns the record of an ended child into a new, unstarted-looking child fn(arg) of the same
 *  scope, on the same host and stack, counted in the scope as the ended one was: a new id, no
 *  name, nothing else held over. */
void weft__task_renew(weft__task *t, weft_fn fn, void *arg);

/** Chaos mode (WEFT_CHAOS): yields now and then. Not in a cancelled task: its suspension points
 *  must return without suspending. Call it through weft__task_chaos_point. */
void weft__task_chaos_yield(void);

/** Chaos mode may yield here; when it is off, a load and a branch, not a call. Returns 1 when
 *  the caller may have moved to another worker. */
static inline int weft__task_chaos_point(weft_runtime *rt)
{
    if (__builtin_expect(rt->chaos != 0, 0)) {
        weft__task_chaos_yield();
        return 1;
    }
    return 0;
}

/** Fills in a new task's function, scope and name (copied, truncated; NULL for none). */
void weft__task_init_child(weft__task *t, weft_scope *s, weft_fn fn, void *arg, const char *name);

/** The task's name; an unnamed task gets "task-<id>" the first time it is asked. */
const char *weft__task_name_of(weft__task *t);

/** Everything a task does after its function returned: implicit joins, failure recording, the
 *  scope's bookkeeping. Runs on the task's own (or host's) stack. Returns 1 when `t` has become
 *  a deferred sibling (weft__task_renew) that the caller must now run in its place. The common
 *  end (success, nothing left open or held, no slot to pass) is weft__scope_end_task in
 *  scope.h, which needs the scope's inline counting. */
int weft__task_complete_slow(weft__task *t, int rc);

#endif
