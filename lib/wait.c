// SPDX-License-Identifier: MIT
/* One way to wait; the contract is in wait.h. */
#include "wait.h"

#include <assert.h>
#include <stddef.h>

#include "cancel.h"
#include "scope.h"
#include "wtimers.h"

/* For a park of a task (prepared) that is still on the parked list of `cs`, its cancel scope:
 * the cancel code of `cs` (0: none), read after a full fence (cancel.h): either this sees the
 * state, or the cancel that set it sees the park word and wakes the task. */
static inline int park_check(weft_scope *cs)
{
    atomic_thread_fence(memory_order_seq_cst);
    return atomic_load_explicit(&cs->cancel_code, memory_order_relaxed);
}

static void deadline_passed(weft__timer *tm)
{
    weft__task *t = (weft__task *)((char *)tm - offsetof(weft__task, timer));
    weft__sched_wake(t, WEFT__WOKEN_TIMER);
}

/* A wait that could not be set up: takes the park back, unless a waker already won it, in
 * which case the park returns at once with that waker's reason. */
static int abandon(weft__task *t, int code)
{
    if (weft__sched_unprepare_park(t))
        return code;
    return (int)weft__sched_park(t);
}

int weft__wait_end(int why, weft_scope *cs)
{
    if (why < 0)
        return why;
    if (why == WEFT__WOKEN_TIMER)
        return -ETIMEDOUT;
    int code = weft__scope_cancel_code(cs);
    return code ? code : -ECANCELED;
}

int weft__wait_park(weft__task *t, weft_scope *cs, weft_time deadline)
{
    t->wait_until = deadline; /* for a dump of the tree: a sleep's end, a wait's timeout */
    if (cs) {
        /* Listed by an earlier park in the same scope: it stays there (cancel.h). Listed in an
         * outer scope, or detached by a cancel: listed here instead. */
        assert(cs == t->cancel_scope);
        int code;
        if ((t->flags & WEFT__TASK_LISTED) && t->listed_in == cs &&
            atomic_load_explicit(&t->listed, memory_order_acquire)) {
            code = park_check(cs);
        } else {
            weft__cancel_unlist(t);
            code = weft__cancel_park_register(cs, t);
        }
        if (code)
            return abandon(t, code);
    } else {
        /* No cancel may end this wait: the caller took `t` off the list before the prepare. */
        assert(!(t->flags & WEFT__TASK_LISTED));
    }
    if (deadline != WEFT_NEVER) {
        int rc = weft__wtimers_arm(&t->timer, deadline, deadline_passed);
        if (rc)
            return abandon(t, rc);
    }
    uint32_t why = weft__sched_park(t);
    if (deadline != WEFT_NEVER)
        weft__timer_cancel(&t->timer);
    /* A cancel detaches before it wakes. Not always from this registration, though: one of an
     * outer scope may have woken the task before it moved here, and this registration stands. */
    if (why == WEFT__WOKEN_CANCEL && !atomic_load_explicit(&t->listed, memory_order_relaxed))
        t->flags &= ~(uint32_t)WEFT__TASK_LISTED;
    return (int)why;
}
