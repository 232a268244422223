// SPDX-License-Identifier: MIT
/*
 * The workers' timers (wtimers.c): which worker fires which timer, and when.
 *
 * A timer sits on the heap (timer.h) of the worker that armed it, and that worker fires it when
 * it looks for work. The other workers fire a neighbour's timers once they are overdue by a
 * millisecond, so that a worker stuck in a plain system call, or running one task that never
 * suspends, does not hold every deadline and sleep it armed for as long as it is stuck.
 */
#ifndef WEFT_WTIMERS_H
#define WEFT_WTIMERS_H

#include "timer.h"
#include "weft.h"

typedef struct weft__worker weft__worker;

/** Arms a timer on the caller's worker's heap. 0 or -ENOMEM. Called on a worker, in a task. */
int weft__wtimers_arm(weft__timer *t, weft_time deadline, weft__timer_fn fn);

/** weft__timer_reserve on the caller's worker's heap: its next weft__wtimers_arm, with no
 *  suspension point between, finds room. 0 or -ENOMEM. Called on a worker, in a task. */
int weft__wtimers_reserve(void);

/** Fires the due timers of `w`, the caller's worker, and those of other workers that are
 *  overdue by the takeover delay. */
void weft__wtimers_run(weft__worker *w);

/** When `w` must next look at timers, its own or, once overdue, another awake worker's
 *  (WEFT_NEVER: none): how long an idle worker may sleep. */
weft_time weft__wtimers_next(weft__worker *w);

#endif
