// SPDX-License-Identifier: MIT
/*
 * Records: task records carved from chunks and cached per worker, page-sized blocks, task ids
 * (records.c). The common cases are inline here: every spawn takes a record and every end of a
 * task gives one back, and there is no link-time optimisation to inline across files.
 *
 * A record enters a cache at rest (see weft__task_reset_cached in task.h), so that a spawn
 * writes only what differs from task to task.
 */
#ifndef WEFT_RECORDS_H
#define WEFT_RECORDS_H

#include <stddef.h>
#include <stdint.h>

#include "sched.h"
#include "task.h"
#include "weft.h"

/** A new task's id when the block of ids of `w` is used up, or `w` is NULL (off the workers). */
uint64_t weft__records_id_slow(weft__worker *w);

/** How many ids `w` gave out so far (any thread, while they are given: weft_runtime_metrics). */
uint64_t weft__records_ids_given(weft__worker *w);

/** A new task's id: the next of the block of ids `w` (the caller's worker, or NULL) holds, so
 *  that a spawn costs no shared atomic. */
static inline uint64_t weft__records_new_id(weft__worker *w)
{
    if (w && w->next_id != w->end_id)
        return w->next_id++;
    return weft__records_id_slow(w);
}

/** A new task record of `rt`, reset (weft__task_reset), or NULL when out of memory. `w` is the
 *  caller's worker, already looked up (NULL off the workers). Any thread. */
weft__task *weft__records_alloc_task_on(weft__worker *w, weft_runtime *rt);
/** weft__records_alloc_task_on for the caller's worker. */
weft__task *weft__records_alloc_task(weft_runtime *rt);
/** Makes sure the next weft__records_alloc_task_on(w, rt) succeeds (`w` runs on `rt`). 0 or
 *  -ENOMEM. */
int weft__records_reserve_task_on(weft__worker *w, weft_runtime *rt);
/** A record back to its runtime: `w` is the caller's worker (NULL off the workers). */
void weft__records_free_task_on(weft__worker *w, weft__task *t);
/** weft__records_free_task_on for the caller's worker. */
void weft__records_free_task(weft__task *t);

/** Takes the newest record of the cache of `w` (the caller's worker), which is not empty. */
static inline weft__task *weft__records_cache_pop(weft__worker *w)
{
    weft__task *t = w->task_cache;
    w->task_cache = t->next;
    w->task_cache_count--;
    return t;
}

/** weft__records_alloc_task_on for the worker the caller runs on, `w`, of runtime `rt`: a
 *  record from w's cache, inline (it is on every spawn); an empty cache takes the call. */
static inline weft__task *weft__records_alloc_task_own(weft__worker *w, weft_runtime *rt)
{
    if (!w->task_cache)
        return weft__records_alloc_task_on(w, rt);
    weft__task *t = weft__records_cache_pop(w);
    weft__task_reset(t, rt, weft__records_new_id(w));
    return t;
}

/* A worker keeps at most WEFT__TASK_CACHE_MAX free records; beyond, it hands half of them to
 * the runtime, where a worker whose cache is empty takes them before carving fresh ones, and so
 * do submissions from plain threads (weft__records_alloc_task_on with no worker). Without this,
 * records spawned on one worker and ended on another piled up on the second while the first kept
 * carving fresh memory, so a producer feeding a consumer grew without bound. A batch moves under
 * the chunk lock, once per WEFT__TASK_CACHE_MAX / 2 records. */
#define WEFT__TASK_CACHE_MAX 256

/** Hands the older records of the full cache of `w` to `rt` (see WEFT__TASK_CACHE_MAX). */
void weft__records_give_batch(weft__worker *w, weft_runtime *rt);

/** A record back into the cache of `w`, the caller's worker, of the record's runtime. Inline:
 *  every child run inside a join ends here. */
static inline void weft__records_free_task_own(weft__worker *w, weft__task *t)
{
    t->flags = WEFT__TASK_FREE;
    t->next = w->task_cache;
    w->task_cache = t;
    if (++w->task_cache_count > WEFT__TASK_CACHE_MAX)
        weft__records_give_batch(w, t->rt);
}

#define WEFT__BLOCK_BYTES 4096
/** A page-sized block (WEFT__BLOCK_BYTES) of the runtime's memory, or NULL (ENOMEM). Any
 *  thread. Blocks go back with weft__records_free_block and stay in the runtime until it ends. */
void *weft__records_alloc_block(weft_runtime *rt);
void weft__records_free_block(weft_runtime *rt, void *b);

/** The bytes of every chunk `rt` has mapped for task records and blocks so far: what its records
 *  cost until it ends. Any thread; for tests. */
size_t weft__records_mapped_bytes(weft_runtime *rt);

/** Calls fn(t, arg) for every task record `rt` has carved so far: live tasks, free records and
 *  never-used ones (zeroed: id 0) alike, which fn tells apart (WEFT__TASK_FREE). Any thread,
 *  while the runtime lives; takes the chunk lock only to read where the chunks start. The
 *  records change under the walk: fn reads them racily, and must check what it read. */
void weft__records_walk(weft_runtime *rt, void (*fn)(weft__task *t, void *arg), void *arg);

/** A released scope record (clean, see scope.c) from the runtime's spare ones, or NULL: for a
 *  worker whose own cache is empty, or a thread that is no worker. Any thread. */
weft_scope *weft__records_take_scope(weft_runtime *rt);
/** A released scope record to the runtime's spare ones, where any worker finds it. Any thread. */
void weft__records_give_scope(weft_runtime *rt, weft_scope *s);

/** Forgets the record caches of `w`, whose thread has ended (the records themselves live in the
 *  runtime's chunks), and frees its cached scope records. */
void weft__records_worker_drop(weft__worker *w);
/** Unmaps every chunk and frees the runtime's spare scope records: the runtime's end. */
void weft__records_destroy(weft_runtime *rt);

#endif
