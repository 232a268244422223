// SPDX-License-Identifier: MIT
/* One way to wait; the contract is in wait.h. */
#include "wait.h"

#include <stddef.h>

#include "cancel.h"
#include "scope.h"
#include "wtimers.h"

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
        int code = weft__cancel_park_register(cs, t);
        if (code)
            return abandon(t, code);
    }
    if (deadline != WEFT_NEVER) {
        int rc = weft__wtimers_arm(&t->timer, deadline, deadline_passed);
        if (rc) {
            if (cs)
                weft__cancel_park_unregister(cs, t);
            return abandon(t, rc);
        }
    }
    uint32_t why = weft__sched_park(t);
    if (deadline != WEFT_NEVER)
        weft__timer_cancel(&t->timer);
    if (cs)
        weft__cancel_park_unregister(cs, t);
    return (int)why;
}
