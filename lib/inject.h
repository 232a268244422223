// SPDX-License-Identifier: MIT
/* The runtime's injection queue (inject.c). */
#ifndef WEFT_INJECT_H
#define WEFT_INJECT_H

#include "runtime.h"
#include "task.h"

/** Appends the tasks first..last (n of them, linked through `next`) to the injection queue of
 *  `rt` as one run, and wakes a sleeping worker. Any thread. */
void weft__inject_list(weft_runtime *rt, weft__task *first, weft__task *last, long n);
/** Appends one task. Any thread. */
void weft__inject_task(weft_runtime *rt, weft__task *t);
/** Takes the oldest task of the injection queue, moving a fair share of the rest of its run onto
 *  the ready queue of `w`, the caller's worker. NULL when the queue is empty. */
weft__task *weft__inject_take(weft__worker *w);

#endif
