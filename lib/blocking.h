// SPDX-License-Identifier: MIT
/* The blocking pool (blocking.c). */
#ifndef WEFT_BLOCKING_H
#define WEFT_BLOCKING_H

#include "runtime.h"
#include "weft.h"

/** Creates the pool of `rt` (no thread yet: threads start on demand). 0 or -ENOMEM. */
int weft__blocking_init(weft_runtime *rt);
/** Stops the pool's threads (no job may be left) and frees it. */
void weft__blocking_destroy(weft_runtime *rt);
/** The runtime whose blocking pool runs the caller, or NULL. */
weft_runtime *weft__blocking_current_runtime(void);
/** Threads the pool has, those of them waiting for a call, and calls queued (weft_metrics). */
void weft__blocking_counts(weft_runtime *rt, unsigned *threads, unsigned *idle, uint64_t *queued);
/** Threads the blocking pool has now (tests). */
unsigned weft__blocking_threads(weft_runtime *rt);
/** Blocking calls submitted whose callers have not been woken yet (a hint: read without a lock). */
unsigned weft__blocking_in_flight(weft_runtime *rt);
/** Waits until the pool has at most `n` threads, or until `deadline` (weft_now() clock):
 *  0 or -ETIMEDOUT (tests). */
int weft__blocking_wait_threads(weft_runtime *rt, unsigned n, weft_time deadline);

#endif
