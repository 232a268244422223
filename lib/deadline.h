// SPDX-License-Identifier: MIT
/* Deadlines of scopes (deadline.c). */
#ifndef WEFT_DEADLINE_H
#define WEFT_DEADLINE_H

#include "scope.h"

/** Arms the timer of `s` (its owner's, on the caller's worker) to cancel it with the deadline
 *  reason at `when`. 0 or -ENOMEM. */
int weft__deadline_arm(weft_scope *s, weft_time when);

/** Cancels with the deadline reason the scope whose own deadline is the effective deadline of
 *  `s`, if that has passed: a checkpoint's own look at the clock, for a timer that is late. The
 *  caller runs a task whose innermost scope is `s`. */
void weft__deadline_check(weft_scope *s);

#endif
