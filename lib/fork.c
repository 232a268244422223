// SPDX-License-Identifier: MIT
/* weft_fork_join: a descriptor on the caller's stack, a task only when another worker takes it
 * (see fork.h). */
#include "fork.h"

#include <errno.h>
#include <stdlib.h>

#include "cancel.h"
#include "deque.h"
#include "errors.h"
#include "inject.h"
#include "records.h"
#include "sched.h"
#include "scope.h"

/* The descriptor's end elsewhere: `state` DONE (it ran, its result written) or RETURNED (it goes
 * back to its caller, which runs it itself). Either way a fork counted in the caller's own scope
 * is counted out here, as a task's end would count it, and the caller is told (d->counted
 * cleared) not to uncount it again: the caller may be parked in a join of that scope, which
 * folded the count into the balance and waits for it to come off, while a returned fork waits
 * for the caller. The count the caller keeps (owner_spawned) meets this count-out at the fold,
 * as an ended child's does. Then the caller wakes, if it waits; nothing of `d` after. */
static void settle(weft__fork *d, uint32_t state)
{
    weft__task *caller = d->caller;
    if (d->counted) {
        d->counted = 0;
        weft__scope_count_children_out(d->scope, 1);
    }
    if (atomic_exchange_explicit(&d->state, state, memory_order_acq_rel) == WEFT__FORK_WAITING)
        weft__sched_wake(caller, WEFT__WOKEN);
}

weft__task *weft__fork_take(weft__worker *w, void *item)
{
    weft__fork *d = (weft__fork *)((uintptr_t)item & ~WEFT__FORK_TAG);
    weft__task *t = weft__records_alloc_task_on(w, d->caller->rt);
    if (!t) {
        settle(d, WEFT__FORK_RETURNED);
        return NULL;
    }
    /* A child of the scope the caller had open: cancelled with it, and counted in it when the
     * caller owns it, so that a join of that scope waits for it as for any child. */
    t->flags |= WEFT__TASK_FORKED | d->counted;
    weft__task_init_child(t, d->scope, d->fn, d->arg, NULL);
    t->fork = d;
    /* A stack of the caller's size: the function was written to run there. (Its `host` was set
     * before it ran, so before it queued `d`.) */
    t->stack_size = d->caller->host->stack_size;
    if (__builtin_expect(w->trace != NULL, 0))
        weft__trace_add(w->trace, WEFT__TR_SPAWN, t->id, 0);
    return t;
}

void weft__fork_end(weft__task *t, int rc)
{
    weft__fork *d = t->fork;
    /* Its message goes with its code to the caller, which takes it once it is awake (it may be
     * running its own function now, and recording a failure of its own). */
    d->failure = t->failure; /* whatever its result: the caller's may be that message's code */
    t->failure = NULL;
    d->rc = rc;
    settle(d, WEFT__FORK_DONE);
}

void weft__fork_unrun(weft__task *t)
{
    weft__fork *d = t->fork;
    weft__worker *w = weft__sched_worker();
    if (__builtin_expect(w->trace != NULL, 0)) {
        /* Its spawn was traced: its only slice, as long as nothing, as for any task unrun. */
        weft__trace_add(w->trace, WEFT__TR_TASK_BEGIN, t->id, 1);
        weft__trace_add(w->trace, WEFT__TR_TASK_END, t->id, WEFT__TR_WHY_UNRUN);
    }
    weft__records_free_task_on(w, t);
    settle(d, WEFT__FORK_RETURNED);
}

/* ---- the caller's side ------------------------------------------------------------------- */

/* The scopes the forked function opened and left open, run by its caller: they end now, as
 * they would have with the task it could have been (weft.h). */
static __attribute__((noinline)) int end_left_open(weft__task *t, weft_scope *mark, int rc)
{
    return weft__scope_release_owned_since(t, mark, rc);
}

/* The forked function `fn(arg)` run by its caller `t`, as a plain call whose open scopes end
 * with it. */
static inline __attribute__((always_inline)) int call_forked(weft__task *t, weft_fn fn, void *arg)
{
    weft_scope *mark = t->owned;
    int rc = fn(arg);
    if (__builtin_expect(t->owned != mark, 0))
        rc = end_left_open(t, mark, rc);
    return rc;
}

/* The forked function of `d` run by its caller `t` (popped back, or handed back): no longer a
 * child of the scope it was counted in. Uncounted first, so that the function may join that
 * scope (a fork handed back was counted out already, see settle). */
static inline __attribute__((always_inline)) int run_here(weft__task *t, weft__fork *d)
{
    if (d->counted)
        d->scope->owner_spawned--;
    return call_forked(t, d->fn, d->arg);
}

void weft__fork_put_back(weft__worker *w, void *item)
{
    if (weft__deque_push_owner(&w->spawnq, item) != 0) {
        weft__task *t = weft__fork_task_of(w, item);
        if (t)
            weft__inject_task(w->rt, t);
    }
}

/* The caller `t` (on `w`) found something else than its descriptor `d` on top of its queue
 * (`top`, perhaps NULL): another worker took it, or the caller moved to another worker while
 * its own function ran. Waits until it ran elsewhere or came back. Not a cancellation point:
 * `d` lives in the caller's frame until it is done. */
static __attribute__((noinline)) int wait_elsewhere(weft__worker *w, weft__task *t, weft__fork *d,
                                                    void *top)
{
    if (top)
        weft__fork_put_back(w, top);
    weft__cancel_unlist(t); /* off any parked list: no cancel may end this park */
    weft__task_note_wait(t, WEFT__ON_FORK, d);
    weft__sched_prepare_park(t);
    uint32_t queued = WEFT__FORK_QUEUED;
    if (atomic_compare_exchange_strong_explicit(&d->state, &queued, WEFT__FORK_WAITING,
                                                memory_order_acq_rel, memory_order_acquire) ||
        !weft__sched_unprepare_park(t))
        weft__sched_park(t);
    if (atomic_load_explicit(&d->state, memory_order_acquire) == WEFT__FORK_RETURNED)
        return run_here(t, d);
    if (d->failure) { /* as a later weft_fail of the caller's would */
        if (t->failure)
            weft__errors_free_failure(t->failure);
        t->failure = d->failure;
    }
    return d->rc;
}

/* Both functions, one after the other, on the caller `t`: where the forked one may not run
 * beside the caller (a limited scope), or the queue could not grow to take it. */
static int in_turn(weft__task *t, weft_fn forked, void *forked_arg, weft_fn here, void *here_arg)
{
    int rc_here = here(here_arg);
    int rc_forked = call_forked(t, forked, forked_arg);
    return rc_forked ? rc_forked : rc_here;
}

/* weft_fork_join for `t`, running on `w`, its innermost open scope not limited. `slow`: a
 * constant; 0 where the queue has room without a look at `top` or a growth, and no detour is on
 * (chaos mode, a trace); 1 otherwise. */
static inline __attribute__((always_inline)) int fork_join_on(weft__worker *w, weft__task *t,
                                                              weft_fn forked, void *forked_arg,
                                                              weft_fn here, void *here_arg,
                                                              int slow)
{
    weft_scope *s = t->cancel_scope;
    weft__fork d;
    d.fn = forked;
    d.arg = forked_arg;
    d.caller = t;
    d.scope = s;
    d.counted = 0;
    if (s->owner == t) { /* its own scope, which it may release: the forked child counts in it */
        s->owner_spawned++;
        d.counted = WEFT__TASK_OWNER_COUNTED;
    }
    atomic_init(&d.state, WEFT__FORK_QUEUED);
    void *item = (void *)((uintptr_t)&d | WEFT__FORK_TAG);
    /* Filled in before it is queued: from then on a thief may take it. */
    if (!slow) {
        weft__deque_push_owner_room(&w->spawnq, item);
    } else if (weft__deque_push_owner(&w->spawnq, item) != 0) {
        if (d.counted) /* the ring could not grow: nothing was queued */
            s->owner_spawned--;
        return in_turn(t, forked, forked_arg, here, here_arg);
    }
    weft__sched_notify_local(t->rt);
    if (slow)
        weft__task_chaos_point(t->rt); /* perhaps let it be stolen before we go on */
    int rc_here = here(here_arg);
    w = weft__sched_worker_leaf(); /* `here` may have parked and moved us */
    void *top = weft__deque_pop_owner(&w->spawnq);
    int rc_forked;
    if (__builtin_expect(top == item, 1))
        rc_forked = run_here(t, &d);
    else
        rc_forked = wait_elsewhere(w, t, &d, top);
    return rc_forked ? rc_forked : rc_here;
}

static __attribute__((noinline)) int fork_join_plain(weft_fn forked, void *forked_arg, weft_fn here,
                                                     void *here_arg)
{
    weft__worker *w = weft__sched_worker();
    weft__task *t = weft__sched_current(w);
    if (!t)
        return -EPERM;
    if (!forked || !here)
        return -EINVAL;
    if (t->cancel_scope->max_running)
        return in_turn(t, forked, forked_arg, here, here_arg);
    return fork_join_on(w, t, forked, forked_arg, here, here_arg, 1);
}

int weft_fork_join(weft_fn forked, void *forked_arg, weft_fn here, void *here_arg)
{
    weft__worker *w = weft__sched_worker_leaf();
    weft__task *t = weft__sched_current(w);
    if (__builtin_expect(!t || !forked || !here || t->rt->detours || t->cancel_scope->max_running ||
                             !weft__deque_has_room_owner(&w->spawnq),
                         0))
        return fork_join_plain(forked, forked_arg, here, here_arg);
    return fork_join_on(w, t, forked, forked_arg, here, here_arg, 0);
}
