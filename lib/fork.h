// SPDX-License-Identifier: MIT
/*
 * weft_fork_join (fork.c): two functions that may run at once, the first of them offered to other
 * workers as a descriptor, not a task.
 *
 * The descriptor lives in weft_fork_join's frame on the caller's stack, and is pushed onto the
 * caller's spawn queue as a tagged pointer (bit 0 set; task records are aligned, so theirs is
 * clear). The caller then runs the second function, pops, and finds its descriptor on top unless
 * a thief took it: then it runs the first function as a plain call too, and no record, stack or id
 * was made. A worker that takes a descriptor out of a queue in any other way (a steal, its own
 * scheduler's pick) turns it into a task there (weft__fork_take): a record of its own, counted in
 * the scope it would belong to, started on a stack of its own, which on its end hands its result
 * to the descriptor and wakes the caller. Every path that takes an item out of a spawn queue
 * passes it through weft__fork_task_of first, so that nothing past it sees a tagged pointer.
 *
 * Why the frame is safe: weft_fork_join does not return before the descriptor is done, whatever
 * happens meanwhile (a cancel of the caller's scopes, a failure of either function): the wait for
 * a stolen branch is not a cancellation point, and a descriptor is never dropped. When no record
 * or stack can be had for it, it is handed back to the caller, which runs it itself.
 */
#ifndef WEFT_FORK_H
#define WEFT_FORK_H

#include <stdatomic.h>
#include <stdint.h>

#include "task.h"

typedef struct weft__worker weft__worker;

/* Where a descriptor is. QUEUED: in a spawn queue, or taken and running; WAITING: so, and its
 * caller parks until one of the two ends comes; DONE: it ran elsewhere, `rc` is its result;
 * RETURNED: nothing could run it elsewhere, the caller runs it. */
enum { WEFT__FORK_QUEUED, WEFT__FORK_WAITING, WEFT__FORK_DONE, WEFT__FORK_RETURNED };

typedef struct weft__fork {
    weft_fn fn;
    void *arg;
    weft__task *caller; /* the task in weft_fork_join */
    weft_scope *scope;  /* the caller's innermost open scope at the fork (its cancel scope) */
    uint32_t counted;   /* WEFT__TASK_OWNER_COUNTED if counted in `scope` by its owner */
    _Atomic uint32_t state;
    int rc;                        /* DONE: the function's result */
    struct weft__failure *failure; /* DONE: its message, when it failed with one (weft_fail) */
} weft__fork;

#define WEFT__FORK_TAG ((uintptr_t)1)

/** A spawn-queue item that is a descriptor, turned into a task for `w` (the caller's worker,
 *  which took it), or NULL when no record could be had: then it went back to its caller. */
weft__task *weft__fork_take(weft__worker *w, void *item);

/** A spawn-queue item as a task: itself, or the task a descriptor becomes (see weft__fork_take;
 *  NULL when the descriptor went back to its caller). */
static inline weft__task *weft__fork_task_of(weft__worker *w, void *item)
{
    if (__builtin_expect(((uintptr_t)item & WEFT__FORK_TAG) == 0, 1))
        return item;
    return weft__fork_take(w, item);
}

/** Whether a spawn-queue item is a descriptor. */
static inline int weft__fork_is(const void *item)
{
    return ((uintptr_t)item & WEFT__FORK_TAG) != 0;
}

/** An item the owner of `w`'s spawn queue popped and did not want (a join looking for its own
 *  children, a caller looking for its own fork): back on top, where it was; onto the injection
 *  queue (as a task) in the case the ring could not take it back. `w`: the caller's worker. */
void weft__fork_put_back(weft__worker *w, void *item);

/** The end of a task a descriptor became (WEFT__TASK_FORKED), with its result `rc` once its own
 *  scopes are released: the result and any failure message go to the caller, the count in its
 *  scope comes off, and the caller wakes. Nothing of the descriptor or its scope is touched
 *  after. Called by weft__task_complete_slow. */
void weft__fork_end(weft__task *t, int rc);

/** A task a descriptor became that cannot start (no stack): the descriptor goes back to its
 *  caller, which runs it itself, and the record is freed. Called by the scheduler. */
void weft__fork_unrun(weft__task *t);

#endif
