// SPDX-License-Identifier: MIT
/*
 * Cancellation (cancel.c): how a cancel reaches every scope below the one cancelled, and every
 * task parked in them.
 *
 * A cancel sets a scope's state (its reason and the code its suspension points return) and fans
 * out, depth-first and without recursion, to its unshielded children, waking the tasks parked in
 * each. A scope is linked into its parent's list of children only when something could need a
 * cancel to reach it (a task parks in it, or it is cancelled itself): most scopes of a fork-join
 * program live and die unlinked, and learn a cancel above them by pulling it from their
 * ancestors instead (weft__cancel_pull), cached per scope until the runtime's cancel epoch moves.
 */
#ifndef WEFT_CANCEL_H
#define WEFT_CANCEL_H

#include <stdint.h>

#include "task.h"
#include "weft.h"

typedef struct weft__task weft__task;

/** Cancels `s` and its subtree for `reason` (weft_cancel_reason); suspension points under it
 *  return `code` (-ECANCELED or -ETIMEDOUT). Any thread; does not suspend. */
void weft__cancel_scope(weft_scope *s, int reason, int code);

/** The reason a scope reports when an ancestor's cancel (`reason`, `code`) reached it. */
int weft__cancel_inherited_reason(int reason, int code);

/** The cancel state `s` pulls from its ancestors, as a kind (see weft__scope_cancel_decode). */
uint64_t weft__cancel_pull(weft_scope *s);
/** weft__scope_cancel_code's slow path: the pulled state, as a code. */
int weft__cancel_code_slow(weft_scope *s);

/*
 * The parked list of a scope holds the tasks a cancel of the scope must wake: tasks that have
 * parked with it as their cancel scope (innermost open scope). A task stays on it after its park
 * ends, so that a task that parks again and again in one scope (a channel's consumer, a
 * connection's reader) is listed once, not at every park: a lock, four links and two cache lines
 * of the scope less per park. A cancel wakes what it finds parked and detaches every task it
 * finds; those running look at the scope's state at their next park. The rules that keep it
 * sound:
 *   - A task is listed in one scope at most (`listed_in`): its cancel scope, or an outer scope of
 *     its own that is not shielded from it. A park in another scope moves it there. A cancel of
 *     that outer scope may wake the task between the prepare of a park in the inner scope and
 *     the move: the cancel reaches the inner scope too, so that is a wake it makes anyway (and the
 *     task, woken, is listed in the inner scope all the same). A shielded scope takes its owner
 *     off the list as it opens.
 *   - It takes itself off before it ends (before its scope can learn of the end and be freed),
 *     and before a park that no cancel may end (a blocking call, a join), since a cancel wakes
 *     whatever parked task it finds listed.
 *   - A listed task's next park in that scope looks at the scope's state after its park word is
 *     set, and a cancel wakes the list after the state is set, each with a full fence between:
 *     either the park sees the state, or the cancel sees the park (park_check in wait.c).
 */

/** Lists `t` (which has prepared its park) on the parked list of `s`, its cancel scope, linking
 *  the scope first. Returns 0, -ENOMEM, or the cancel code if the scope is cancelled (then `t` is
 *  not listed). */
int weft__cancel_park_register(weft_scope *s, weft__task *t);

/** Takes `t` off the parked list it put itself on (WEFT__TASK_LISTED, `listed_in`), unless a
 *  cancel has detached it since. Only `t` itself. */
void weft__cancel_unlist_slow(weft__task *t);
static inline void weft__cancel_unlist(weft__task *t)
{
    if (__builtin_expect(t->flags & WEFT__TASK_LISTED, 0))
        weft__cancel_unlist_slow(t);
}

#endif
