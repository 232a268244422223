// SPDX-License-Identifier: MIT
/* Stealing from other workers (steal.c). */
#ifndef WEFT_STEAL_H
#define WEFT_STEAL_H

#include "sched.h"

/** One round over the other workers of the runtime of `w` (the caller's worker), from a random
 *  victim: a task taken from one of them, or NULL. Tasks taken beyond the first go on the spawn
 *  queue of `w`. `rescue`: also take a spawn that a victim keeps private (deque.h), at the cost
 *  of a process-wide barrier for each victim that holds one. */
weft__task *weft__steal_round(weft__worker *w, int rescue);

/** The idle worker's search before it sleeps: steal rounds and looks at the injection queue,
 *  pausing between them, until a task is found (returned) or the rounds run out (NULL). Only
 *  while a neighbour runs tasks (spinners no more than they) or a blocking call is out: else one
 *  look at the injection queue, and the caller sleeps (in the poller, where readiness comes).
 *  Counted in the runtime's spinners meanwhile, so that producers leave sleepers asleep. */
weft__task *weft__steal_spin(weft__worker *w);

#endif
