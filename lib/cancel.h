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

/** Registers `t` (which has prepared its park) on its cancel scope's parked list, linking the
 *  scope first. Returns 0, -ENOMEM, or the cancel code if the scope is cancelled (then `t` is
 *  not registered). */
int weft__cancel_park_register(weft_scope *s, weft__task *t);
/** Takes `t` off the list, unless a cancel detached it already. */
void weft__cancel_park_unregister(weft_scope *s, weft__task *t);

#endif
