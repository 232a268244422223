// SPDX-License-Identifier: MIT
/* Task life cycle: spawn, completion, and the suspension points tasks call. */
#include "task.h"
#include "errno_keep.h"

#include "alloc.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cancel.h"
#include "chaos.h"
#include "deadline.h"
#include "fork.h"
#include "inject.h"
#include "join_inline.h"
#include "records.h"
#include "runtime.h"
#include "sched.h"
#include "scope.h"
#include "wait.h"

#define MIN_STACK (16 * 1024)
#define MAX_STACK ((size_t)1 << 32)

__attribute__((noinline)) weft__task *weft__task_self(void)
{
    weft__worker *w = weft__tls_worker;
    __asm__ volatile("" : "+r"(w));
    return weft__sched_current(w);
}

void weft__task_main(weft__task *t)
{
    weft__join_run_body(t);
}

void weft__task_renew(weft__task *t, weft_fn fn, void *arg)
{
    /* What weft__records_alloc_task_on and weft__task_init_child set, minus what the record keeps:
     * its runtime, host, stack, stack size, and flags (how it is counted in its scope, which the
     * new child inherits). The handshake words are at rest (the task is running), its timer is
     * disarmed, its failure was freed. */
    t->owned = NULL;
    t->next = NULL;
    t->timer.heap = NULL;
    weft__worker *w = weft__sched_worker();
    /* Running (it has a stack: not an unstarted one that ended unrun), it ends here and the
     * sibling starts in its place. */
    int running = t->host != NULL;
    int traced = w->trace && (t->flags & WEFT__TASK_TRACE_RUN);
    if (__builtin_expect(traced, 0))
        weft__trace_task_end(w, t, WEFT__TR_WHY_END);
    t->id = weft__records_new_id(w); /* counted as spawned here: bare, it had no id before */
    w->counts.started += (uint64_t)running;
    if (running) /* it starts as a task on a stack of its own does (prepare_to_run) */
        *w->errno_of_thread = 0;
#ifdef WEFT_TSAN
    weft__sched_set_current(w, t); /* it runs on: the watchdog's copy of its id changes */
#endif
    t->failure = NULL;
    t->tokens_held = 0;
    t->fn = fn;
    t->arg = arg;
    t->cancel_scope = t->scope;
    t->name[0] = 0;
    if (__builtin_expect(traced, 0))
        weft__trace_task_start_here(w, t);
}

void weft__task_chaos_yield(void)
{
    weft__worker *w = weft__sched_worker();
    weft__task *t = weft__sched_current(w);
    if (t && weft__chaos_hit(w, 4) && weft__scope_cancel_code(t->cancel_scope) == 0)
        weft__sched_yield();
}

const char *weft__task_name_of(weft__task *t)
{
    if (!t->name[0])
        snprintf(t->name, sizeof(t->name), "task-%llu", (unsigned long long)t->id);
    return t->name;
}

void weft__task_init_child(weft__task *t, weft_scope *s, weft_fn fn, void *arg, const char *name)
{
    t->fn = fn;
    t->arg = arg;
    t->scope = s;
    t->cancel_scope = s;
    t->name[0] = 0;
    if (name) {
        strncpy(t->name, name, sizeof(t->name) - 1);
        t->name[sizeof(t->name) - 1] = 0;
    }
}

/* A new child's record for `s`, counted as `counted` says, with its function, name and stack
 * size; NULL when out of memory (nothing is counted back here). */
static inline __attribute__((always_inline)) weft__task *make_child(weft__worker *w, weft_scope *s,
                                                                    weft_fn fn, void *arg,
                                                                    const weft_spawn_opts *opts,
                                                                    uint32_t counted)
{
    weft__task *t = weft__records_alloc_task_own(w, s->rt); /* s->rt is the spawner's, so w's */
    if (!t)
        return NULL;
    t->flags |= counted;
    weft__task_init_child(t, s, fn, arg, opts ? opts->name : NULL);
    if (opts)
        t->stack_size = opts->stack_size;
    return t;
}

/* A spawn into a limited scope (max_concurrency), apart from the common path so that the
 * latter stays small. */
static __attribute__((noinline)) int spawn_limited(weft__worker *w, weft__task *self, weft_scope *s,
                                                   weft_fn fn, void *arg,
                                                   const weft_spawn_opts *opts)
{
    int rc;
    uint32_t counted;
    weft__task *t;
    if (s->owner == self && (!opts || (!opts->name && !opts->stack_size))) {
        /* The owner's plain spawn into a limited scope waits as a bare fn(arg), without a
         * record, unless a slot is free now. It is not counted among the scope's children until
         * it inherits the slot and the count of the child it succeeds (weft__scope_child_done).
         * A slot, once taken, cannot be handed back (a child may queue behind it at once), so
         * the record it needs is made sure of first. */
        rc = weft__scope_cancel_code(s);
        if (rc)
            return rc;
        if (weft__records_reserve_task_on(w, s->rt) != 0)
            return -ENOMEM;
        rc = weft__scope_start_or_defer(s, fn, arg);
        if (rc != 0)
            return rc == 1 ? 0 : rc;
        counted = weft__scope_count_owner_child(s);
        t = make_child(w, s, fn, arg, opts, counted);
        if (!t) { /* cannot happen: the record was reserved */
            weft__scope_unadmit(s, counted);
            return -ENOMEM;
        }
    } else {
        rc = weft__scope_admit(s, self);
        if (rc < 0)
            return rc;
        counted = (uint32_t)rc;
        t = make_child(w, s, fn, arg, opts, counted);
        if (!t) {
            weft__scope_unadmit(s, counted);
            return -ENOMEM;
        }
        /* Named or with its own stack size, or spawned by another task: it waits with its
         * record. */
        uint64_t id = t->id; /* deferred, it may start and end on another worker at once */
        rc = weft__scope_start_or_defer(s, NULL, t);
        if (rc == 1) {
            if (__builtin_expect(w->trace != NULL, 0))
                weft__trace_add(w->trace, WEFT__TR_SPAWN, id, 0);
            return 0; /* waits, unstarted and without a stack, for a running sibling to end */
        }
        if (rc < 0) {
            weft__scope_unadmit(s, counted);
            weft__records_free_task_on(w, t);
            w->counts.unspawned++;
            return rc;
        }
    }
    /* It holds a slot: queued whatever happens, since a slot is released only by its child
     * ending. */
    if (__builtin_expect(w->trace != NULL, 0))
        weft__trace_add(w->trace, WEFT__TR_SPAWN, t->id, 0);
    if (weft__sched_spawn_own(w, s->rt, t) != 0)
        weft__inject_task(s->rt, t);
    weft__task_chaos_point(s->rt);
    return 0;
}

/* Both entry points expand this, so that weft_spawn (no options, the common case) is compiled
 * with every options test folded away. */
static inline __attribute__((always_inline)) int spawn(weft_scope *s, weft_fn fn, void *arg,
                                                       const weft_spawn_opts *opts)
{
    weft__worker *w = weft__sched_worker();
    weft__task *self = weft__sched_current(w);
    if (!self)
        return -EPERM;
    if (!s || !fn || s->rt != self->rt ||
        __atomic_load_n(&s->state, __ATOMIC_RELAXED) != WEFT__SCOPE_OPEN)
        return -EINVAL;
    if (opts && opts->stack_size && (opts->stack_size < MIN_STACK || opts->stack_size > MAX_STACK))
        return -EINVAL;
    if (s->max_running)
        return spawn_limited(w, self, s, fn, arg, opts);
    int rc = weft__scope_admit(s, self);
    if (rc < 0)
        return rc;
    uint32_t counted = (uint32_t)rc;
    weft__task *t = make_child(w, s, fn, arg, opts, counted);
    if (!t) {
        weft__scope_unadmit(s, counted);
        return -ENOMEM;
    }
    uint64_t id = t->id; /* once queued, `t` may run and end at once on another worker */
    rc = weft__sched_spawn_own(w, s->rt, t);
    if (rc) {
        weft__scope_unadmit(s, counted);
        weft__records_free_task_on(w, t);
        w->counts.unspawned++;
        return rc;
    }
    if (__builtin_expect(w->trace != NULL, 0))
        weft__trace_add(w->trace, WEFT__TR_SPAWN, id, 0);
    weft__task_chaos_point(s->rt); /* perhaps let the child run, or be stolen, before we go on */
    return 0;
}

static int spawn_ex_body(weft_scope *s, weft_fn fn, void *arg, const weft_spawn_opts *opts)
{
    return spawn(s, fn, arg, opts);
}

int weft_spawn_ex(weft_scope *s, weft_fn fn, void *arg, const weft_spawn_opts *opts)
{
    int kept = weft__errno_keep();
    int rc = spawn_ex_body(s, fn, arg, opts);
    weft__errno_put_back(kept);
    return rc;
}

/* 1 when a spawn into `s` by `self`, running on `w`, is weft_spawn's common case: the owner's
 * spawn into its open scope, without a concurrency limit, not cancelled (as in weft_scope_open:
 * the code clear, and the pulled state cached clear for the current epoch), with a record, an
 * id, a stack and room in the spawn queue at hand, no detour (chaos mode, a trace) but those in
 * `allowed` (WEFT__DETOUR_*, a constant). */
static inline int spawn_is_common_but(weft__worker *w, weft__task *self, weft_scope *s,
                                      uint64_t allowed)
{
    /* A scope's owner is its only spawner here; `self` is NULL only off the workers, where an
     * external scope (no owner) would pass the first test. */
    if (s->owner != self || !self)
        return 0;
    weft_runtime *rt = self->rt;
    uint64_t epoch = atomic_load_explicit(&rt->cancel_epoch, memory_order_acquire);
    return __atomic_load_n(&s->state, __ATOMIC_RELAXED) == WEFT__SCOPE_OPEN && !s->max_running &&
           !atomic_load_explicit(&s->cancel_code, memory_order_acquire) &&
           atomic_load_explicit(&s->cancel_cache, memory_order_relaxed) == epoch << 2 &&
           w->task_cache && w->next_id != w->end_id && w->stacks.top &&
           weft__deque_has_room_owner(&w->spawnq) && !(rt->detours & ~allowed);
}

/* weft_spawn's common case (spawn_is_common_but said so); returns the new task's id. */
static inline __attribute__((always_inline)) uint64_t
spawn_common(weft__worker *w, weft__task *self, weft_scope *s, weft_fn fn, void *arg)
{
    weft__task *t = weft__records_cache_pop(w);
    uint64_t id = w->next_id++;
    weft__task_reset_cached(t, self->rt, id);
    t->flags = weft__scope_count_owner_child(s);
    weft__task_init_child(t, s, fn, arg, NULL);
    /* Filled in before it is queued: from then on a thief may take it. */
    weft__deque_push_owner_room(&w->spawnq, t);
    weft__sched_notify_local(self->rt);
    return id;
}

/* weft_spawn when its common case is not at hand; in a traced runtime, the common case but for
 * the trace still goes the common way, and records its event. */
static int spawn_plain_body(weft_scope *s, weft_fn fn, void *arg)
{
    weft__worker *w = weft__sched_worker();
    if (s && fn && w && w->trace) {
        weft__task *self = weft__sched_current(w);
        if (spawn_is_common_but(w, self, s, WEFT__DETOUR_TRACE)) {
            uint64_t id = spawn_common(w, self, s, fn, arg);
            weft__trace_add(w->trace, WEFT__TR_SPAWN, id, 0);
            return 0;
        }
    }
    return spawn(s, fn, arg, NULL);
}

static __attribute__((noinline)) int spawn_plain(weft_scope *s, weft_fn fn, void *arg)
{
    int kept = weft__errno_keep();
    int rc = spawn_plain_body(s, fn, arg);
    weft__errno_put_back(kept);
    return rc;
}

int weft_spawn(weft_scope *s, weft_fn fn, void *arg)
{
    weft__worker *w = weft__sched_worker_leaf();
    weft__task *self = weft__sched_current(w);
    if (__builtin_expect(!s || !fn || !spawn_is_common_but(w, self, s, 0), 0))
        return spawn_plain(s, fn, arg);
    /* The common case inline, with no call but the wake-up of a sleeping worker. */
    spawn_common(w, self, s, fn, arg);
    return 0;
}

int weft__task_complete_slow(weft__task *t, int rc)
{
    weft__cancel_unlist(t); /* before its scope can learn of its end, and be freed (cancel.h) */
    if (t->owned)
        rc = weft__scope_release_owned(t, rc);
#ifndef NDEBUG
    if (t->tokens_held > 0)
        fprintf(stderr,
                "weft: task '%s' ended holding %d semaphore token(s) or mutex(es); release "
                "them before returning (weft_sem_release, weft_mutex_unlock)\n",
                weft__task_name_of(t), t->tokens_held);
#endif
    if (t->flags & WEFT__TASK_FORKED) {
        weft__fork_end(t, rc); /* its result is its caller's, not its scope's */
        return 0;
    }
    weft_scope *s = t->scope;
    weft__defer_entry next;
    int again = weft__scope_child_done(s, t, rc, &next);
    if (t->failure) {
        weft__errors_free_failure(t->failure);
        t->failure = NULL;
    }
    if (again)
        weft__task_renew(t, next.fn, next.arg);
    return again;
}

void weft__task_end_without_stack(weft__task *t)
{
    if (t->flags & WEFT__TASK_FORKED) {
        weft__fork_unrun(t); /* its caller runs it instead */
        return;
    }
    weft__worker *w = weft__sched_worker();
    if (__builtin_expect(w->trace != NULL, 0)) {
        /* Its only slice, as long as nothing: it starts and ends unrun. */
        weft__trace_add(w->trace, WEFT__TR_TASK_BEGIN, t->id, 1);
        weft__trace_add(w->trace, WEFT__TR_TASK_END, t->id, WEFT__TR_WHY_UNRUN);
    }
    /* Its function never runs: the message tells the error group why. The allocation may fail
     * as the stack did; the code stays. */
    t->failure = weft__alloc_calloc(1, sizeof(*t->failure));
    if (t->failure) {
        t->failure->message =
            weft__alloc_strdup("no stack could be mapped for the task; it never ran");
        t->failure->code = -ENOMEM;
    }
#ifdef WEFT_TSAN
    weft__task *running = weft__sched_current(w);
#endif
    if (weft__task_complete_slow(t, -ENOMEM)) {
        /* A bare deferred sibling took the record over, as if it had been spawned now by the
         * scope's owner: of the runtime's stack size, and started like any spawn. Should its
         * stack fail too, it ends here in turn: each pass ends one waiting child. */
#ifdef WEFT_TSAN
        weft__sched_set_current(w, running); /* weft__task_renew made `t` the running task */
#endif
        t->stack_size = 0;
        if (weft__sched_spawn_on(w, t->rt, t) != 0)
            weft__inject_task(t->rt, t);
        return;
    }
    weft__records_free_task_on(w, t);
}

/* ---- suspension points ------------------------------------------------------------------- */

int weft_checkpoint(void)
{
    weft__worker *w = weft__sched_worker();
    weft__task *t = weft__sched_current(w);
    if (!t)
        return -EPERM;
    if (weft__sched_checkpoint_on(w))
        weft__deadline_check(t->cancel_scope);
    return weft__scope_cancel_code(t->cancel_scope);
}

int weft_yield(void)
{
    weft__task *t = weft__task_self();
    if (!t)
        return -EPERM;
    int code = weft__scope_cancel_code(t->cancel_scope);
    if (code)
        return code;
    weft__sched_yield();
    return 0;
}

int weft_sleep_until(weft_time deadline)
{
    weft__task *t = weft__task_self();
    if (!t)
        return -EPERM;
    int code = weft__wait_enter(t, WEFT__ON_SLEEP, NULL);
    if (code)
        return code;
    weft_scope *cs = t->cancel_scope;
    if (deadline <= weft_now())
        return 0;
    weft__wait_prepare(t); /* the timer and a cancel are its only wakers */
    int why = weft__wait_park(t, cs, deadline);
    if (why < 0)
        return why;
    return why == WEFT__WOKEN_CANCEL ? weft__scope_cancel_code(cs) : 0;
}

int weft_sleep_for(weft_time ns)
{
    if (ns < 0)
        ns = 0;
    weft_time now = weft_now();
    return weft_sleep_until(ns > WEFT_NEVER - now ? WEFT_NEVER : now + ns);
}

/* ---- introspection ------------------------------------------------------------------------ */

const char *weft_task_name(void)
{
    weft__task *t = weft__task_self();
    return t ? weft__task_name_of(t) : "";
}

uint64_t weft_task_id(void)
{
    weft__task *t = weft__task_self();
    return t ? t->id : 0;
}

weft_cancel_reason weft_cancel_reason_self(void)
{
    weft__task *t = weft__task_self();
    if (!t)
        return WEFT_CANCEL_NONE;
    return weft_scope_cancel_reason(t->cancel_scope);
}
