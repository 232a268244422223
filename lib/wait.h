// SPDX-License-Identifier: MIT
/*
 * One way for a task to wait (wait.c): until it is woken, until its scope is cancelled, or until
 * a deadline passes. Sleep, semaphores and the blocking pool are built on it; so are fd waits and
 * channels. It wraps the park/wake protocol of sched.h with the two wakers every wait shares: the
 * scope's cancel fan-out (the task is registered on its cancel scope's parked list) and a timer.
 *
 * A wait, by the task `t` that waits (t == the running task):
 *
 *     weft__wait_prepare(t);
 *     ... register t where its waker will find it, under that structure's lock ...
 *     int why = weft__wait_park(t, cs, deadline);
 *     ... unregister t under the same lock, read what the waker handed over ...
 *
 * Who may wake: the waker that finds the registration (weft__sched_wake(t, WEFT__WOKEN) under
 * its lock, any thread), a cancel of `cs` or of an ancestor that reaches it (WEFT__WOKEN_CANCEL),
 * the timer (WEFT__WOKEN_TIMER). Exactly one of them wins: the park word takes one CAS from
 * PARKED, and a loser sees its CAS fail and must leave the registration as it is (the task
 * removes it itself). A waker that finds the registration after the wait ended finds the park
 * word at rest and loses the same way.
 *
 * What the caller finds on return from weft__wait_park:
 *   WEFT__WOKEN, WEFT__WOKEN_CANCEL or WEFT__WOKEN_TIMER: who won. The timer is disarmed (its
 *   callback over) and the task is off the scope's parked list. Its own registration is the
 *   caller's to remove.
 *   a negative code: the task never parked. `cs` was cancelled already (its cancel code), or the
 *   scope's parked list or the timer heap could not grow (-ENOMEM). No waker had won, and none
 *   can win any more (the park word is back at rest): the caller removes its registration and
 *   returns the code.
 */
#ifndef WEFT_WAIT_H
#define WEFT_WAIT_H

#include "sched.h"
#include "scope.h"
#include "task.h"
#include "weft.h"

/** Where every wait starts, before it registers anywhere: chaos mode may yield here (weft.h: every
 *  suspension point is a chaos point), and a task whose scope is cancelled does not wait. `on`
 *  and `obj` say what the task is about to wait on (see weft__task_note_wait). Its cancel code,
 *  or 0 to go on. Only `t` itself. */
static inline int weft__wait_enter(weft__task *t, enum weft__wait_on on, const void *obj)
{
    weft__task_note_wait(t, on, obj);
    weft__task_chaos_point(t->rt);
    return weft__scope_cancel_code(t->cancel_scope);
}

/** Step 1: from here on a waker that finds `t` may win. Only `t` itself. */
static inline void weft__wait_prepare(weft__task *t)
{
    weft__sched_prepare_park(t);
}

/** Parks `t` (prepared, and registered where its waker looks) until woken, until `cs` is
 *  cancelled (NULL: no cancel ends this wait), or until `deadline` (weft_now() clock;
 *  WEFT_NEVER: none). See above for what it returns. Only `t` itself; suspends. */
int weft__wait_park(weft__task *t, weft_scope *cs, weft_time deadline);

/** What a wait that its own waker did not end returns: `why` from weft__wait_park when negative,
 *  -ETIMEDOUT when its deadline passed, else the cancel code of `cs` (the scope it waited in).
 *  Every wait but a sleep (for which the timer is the event) ends so. */
int weft__wait_end(int why, weft_scope *cs);

#endif
