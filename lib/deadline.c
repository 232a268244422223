// SPDX-License-Identifier: MIT
/*
 * Deadlines of scopes: the timer that cancels a scope when its own deadline passes, the check a
 * checkpoint makes itself (a timer may be late: its worker may be stuck), and the calls that read
 * and move deadlines (weft.h).
 *
 * A scope keeps its own deadline only; the effective one is read along the chain of its
 * ancestors up to the first shield, so that a deadline moved anywhere on the chain reaches every
 * scope below it at once. Every own deadline has its timer: one later than an ancestor's may
 * become the effective one when that ancestor's deadline moves later.
 */
#include "deadline.h"

#include <errno.h>
#include <stddef.h>

#include "cancel.h"
#include "sched.h"
#include "task.h"
#include "wtimers.h"

static void deadline_fired(weft__timer *tm)
{
    weft_scope *s = (weft_scope *)((char *)tm - offsetof(weft_scope, timer));
    weft__cancel_scope(s, WEFT_CANCEL_DEADLINE, -ETIMEDOUT);
}

int weft__deadline_arm(weft_scope *s, weft_time when)
{
    return weft__wtimers_arm(&s->timer, when, deadline_fired);
}

void weft__deadline_check(weft_scope *s)
{
    if (weft__scope_cancel_code(s))
        return;
    weft_time now = 0;
    /* The timer of a passed deadline is late: cancel as it would, from the scope whose own
     * deadline it is (deadlines are inherited down to the first shield). */
    for (weft_scope *x = s; x; x = x->parent) {
        weft_time own = __atomic_load_n(&x->own_deadline, __ATOMIC_RELAXED);
        if (own != WEFT_NEVER) {
            if (!now)
                now = weft_now();
            if (own <= now) {
                weft__cancel_scope(x, WEFT_CANCEL_DEADLINE, -ETIMEDOUT);
                return;
            }
        }
        if (x->shield)
            return;
    }
}

static int readable(const weft_scope *s)
{
    return s && __atomic_load_n(&s->state, __ATOMIC_RELAXED) != WEFT__SCOPE_RELEASED;
}

weft_time weft_scope_deadline(const weft_scope *s)
{
    return readable(s) ? __atomic_load_n(&s->own_deadline, __ATOMIC_RELAXED) : WEFT_NEVER;
}

weft_time weft_scope_effective_deadline(const weft_scope *s)
{
    if (!readable(s))
        return WEFT_NEVER;
    weft_time d = WEFT_NEVER;
    for (const weft_scope *x = s; x; x = x->parent) {
        weft_time own = __atomic_load_n(&x->own_deadline, __ATOMIC_RELAXED);
        if (own < d)
            d = own;
        if (x->shield)
            break;
    }
    return d;
}

int weft_scope_expired(const weft_scope *s)
{
    return readable(s) && weft_scope_cancel_reason(s) == WEFT_CANCEL_DEADLINE;
}

int weft_scope_set_deadline(weft_scope *s, weft_time deadline)
{
    weft__task *t = weft__task_self();
    if (!t)
        return -EPERM;
    if (!s || deadline < 0 || __atomic_load_n(&s->state, __ATOMIC_RELAXED) != WEFT__SCOPE_OPEN)
        return -EINVAL;
    if (s->owner != t)
        return -EPERM;
    if (deadline == 0)
        deadline = WEFT_NEVER;
    /* Room for the new timer before the old one goes: the old one may sit on another worker's
     * heap (the owner moved since it was armed), where this worker could not put it back. */
    if (deadline != WEFT_NEVER && !weft__scope_cancel_code(s) && deadline > weft_now() &&
        weft__wtimers_reserve() != 0)
        return -ENOMEM; /* the deadline it had is kept, its timer armed as it was */
    weft_time old = s->own_deadline;
    if (s->timer_armed) {
        s->timer_armed = 0;
        /* Synchronous: a timer that fired has cancelled the scope by now, and that stays. */
        weft__timer_cancel(&s->timer);
    }
    __atomic_store_n(&s->own_deadline, deadline, __ATOMIC_RELAXED);
    if (deadline == WEFT_NEVER || weft__scope_cancel_code(s))
        return 0;
    if (deadline <= weft_now()) {
        weft__cancel_scope(s, WEFT_CANCEL_DEADLINE, -ETIMEDOUT);
        return 0;
    }
    if (weft__deadline_arm(s, deadline) == 0) {
        s->timer_armed = 1;
        return 0;
    }
    /* No room on this worker's timer heap after all (it was reserved above: not expected): keep
     * the deadline it had where that can be armed again. */
    __atomic_store_n(&s->own_deadline, old, __ATOMIC_RELAXED);
    if (old != WEFT_NEVER) {
        if (old <= weft_now() || weft__deadline_arm(s, old) != 0)
            weft__cancel_scope(s, WEFT_CANCEL_DEADLINE, -ETIMEDOUT); /* cannot keep it: due */
        else
            s->timer_armed = 1;
    }
    return -ENOMEM;
}
