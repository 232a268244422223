// SPDX-License-Identifier: MIT
/*
 * A join running its scope's own unstarted children as calls on the joiner's stack (see task.h),
 * and the body every task runs, inline in the join.
 *
 * Why inline: a fork-join program (fib, with one scope and one child per call) does almost
 * nothing but open, spawn, join and release, and when one worker runs it every child runs inside
 * its joiner's join. Behind calls of their own, this loop and the body cost two frames of saved
 * registers per child, a tenth of the instructions of a child's whole life.
 */
#ifndef WEFT_JOIN_INLINE_H
#define WEFT_JOIN_INLINE_H

#include "eh.h"
#include "fork.h"
#include "records.h"
#include "sched.h"
#include "scope.h"

/** Runs the task's function, then each deferred sibling its ending hands it (a limited scope's
 *  slot passing on together with the record and the stack). */
static inline void weft__join_run_body(weft__task *t)
{
    while (weft__scope_end_task(t, t->fn(t->arg)))
        weft__sched_progress(weft__sched_worker());
}

/* The stack pointer, read without making the compiler keep a frame pointer for the whole join,
 * as __builtin_frame_address would. */
static inline __attribute__((always_inline)) char *weft__join_stack_pointer(void)
{
    char *sp;
#if defined(__x86_64__)
    __asm__("mov %%rsp, %0" : "=r"(sp));
#elif defined(__aarch64__)
    __asm__("mov %0, sp" : "=r"(sp));
#else
    sp = __builtin_frame_address(0);
#endif
    return sp;
}

/** Pops the newest unstarted task of `w` (the caller's worker, running `parent`) if it is a
 *  child of `s`. */
static inline weft__task *weft__join_take_child(weft__worker *w, weft__task *parent, weft_scope *s)
{
    if (weft__join_stack_pointer() < parent->host->stack->inline_floor)
        return NULL; /* less than a child's stack left: it gets one of its own (stack.h) */
    /* Pop, then look: a task only peeked at may be stolen and its record reused meanwhile. */
    void *item = weft__deque_pop_owner(&w->spawnq);
    weft__task *t = item;
    if (item && __builtin_expect(weft__fork_is(item) || t->scope != s || t->stack_size, 0)) {
        /* Not ours (a task or a weft_fork_join descriptor), or it asked for a stack of its own
         * size: back where it was. */
        weft__fork_put_back(w, item);
        return NULL;
    }
    return t;
}

/* weft__join_run_child's work, but for the C++ exception state. */
static inline __attribute__((always_inline)) weft__worker *
join_run_child_body(weft__worker *w, weft__task *parent, weft_scope *s, weft__task *child,
                    int traced)
{
    child->flags |= WEFT__TASK_INLINE;
    child->host = parent->host;
    child->joiner = parent;
    weft__sched_set_current(w, child);
    weft__sched_progress(w);
    if (traced)
        weft__trace_inline_start(w, parent, child);
    int rc = child->fn(child->arg);
    /* weft__scope_end_task's common case, for what is known here: an inline child of `s` that
     * the owner spawned, ended well and holds nothing is counted out on the owner's side. */
    if (__builtin_expect(rc == 0 && !child->owned && !child->failure && !WEFT__TOKENS_LEFT(child) &&
                             !s->max_running &&
                             (child->flags & (WEFT__TASK_SUBMITTED | WEFT__TASK_OWNER_COUNTED |
                                              WEFT__TASK_LISTED)) == WEFT__TASK_OWNER_COUNTED,
                         1)) {
        s->owner_spawned--;
    } else if (weft__scope_end_task(child, rc)) {
        /* It became a deferred sibling: run that, and whatever its end hands on. */
        weft__sched_progress(weft__sched_worker());
        weft__join_run_body(child);
    }
    w = weft__sched_worker_leaf();
    w->counts.inline_runs++; /* counted at its end: the worker is at hand again here */
    if (traced)
        weft__trace_task_end(w, child, WEFT__TR_WHY_END);
    weft__sched_set_current(w, parent); /* news enough to the watchdog: no bump */
    weft__records_free_task_own(w, child);
    return w;
}

/* The run of an inline child in a program with the C++ runtime (eh.h): the joiner's exception
 * state is kept aside while the child runs, which starts with none. A path of its own, so that a
 * program without it pays one test per child. */
static inline __attribute__((always_inline)) weft__worker *
join_run_child_cxx(weft__worker *w, weft__task *parent, weft_scope *s, weft__task *child,
                   int traced)
{
    weft__eh_take(w->eh, &parent->eh);
    w = join_run_child_body(w, parent, s, child, traced);
    weft__eh_give(w->eh, &parent->eh);
    return w;
}

/** Runs `child`, an unstarted child of `s`, as a call on the stack of `parent` (the owner of
 *  `s`, running on `w`, the caller's worker); returns the parent's worker afterwards (the child
 *  may have parked and moved). `traced`: a constant, 1 in the join of a traced runtime (the
 *  common join leaves for that one, scope.c), which records the child's start and end. */
static inline __attribute__((always_inline)) weft__worker *
weft__join_run_child(weft__worker *w, weft__task *parent, weft_scope *s, weft__task *child,
                     int traced)
{
    if (__builtin_expect(w->eh != NULL, 0))
        return join_run_child_cxx(w, parent, s, child, traced);
    return join_run_child_body(w, parent, s, child, traced);
}

#endif
