// SPDX-License-Identifier: MIT
/*
 * C++ exception state that follows its task.
 *
 * The C++ runtime keeps, per OS thread, the exceptions being handled (the stack of caught ones
 * that `throw;` and std::current_exception read, which the end of a catch block pops) and the
 * count std::uncaught_exceptions returns, in a structure the Itanium C++ ABI names
 * (__cxa_get_globals; libstdc++ and libc++abi alike). Tasks share their worker's thread: a task
 * that parks inside a catch block, or in a destructor run while an exception unwinds, would
 * leave its exception in the thread's state for the next task there to pop or count, and find
 * another's (or none) where it resumes, on any thread. So the state is the task's: a switch
 * away from a task takes it out of the thread (into the task's record) and leaves the thread's
 * empty, a task that resumes puts its own back, and a join that runs a child inline keeps the
 * joiner's aside while the child runs (a destructor that joins during unwinding must not make
 * its children count an exception in flight).
 *
 * The thread's state is found through a weak reference to the C++ runtime's function, once per
 * worker thread (its address does not change), and kept in the worker. A program without the
 * C++ runtime has none, and pays a test of that pointer per switch and per inline child (fib(30)
 * at one worker, callgrind: 445.1M -> 449.1M instructions; the yield workload 548.3M -> 552.3M);
 * one with it takes the paths that move the state (470.9M and 593.9M, against 446.7M and 549.9M
 * for the same program before).
 */
#ifndef WEFT_EH_H
#define WEFT_EH_H

#include <stddef.h>

#include "task.h"

/* The ABI's __cxa_eh_globals: the newest caught exception, and the count of those thrown and
 * not yet caught. (ARM's EH ABI adds a third field after these, untouched here.) */
struct weft__eh_globals {
    void *caught;
    unsigned int uncaught;
};
typedef struct weft__eh_globals weft__eh_globals;

/* Declared here, without the C++ header's `const` attribute: each call must ask afresh, since
 * the thread may have changed since the last. */
extern weft__eh_globals *__cxa_get_globals(void) __attribute__((weak));

/** The calling thread's exception state, NULL in a program without the C++ runtime. The same
 *  address for the thread's whole life: a worker asks once, when it starts (worker->eh). */
static inline weft__eh_globals *weft__eh_thread(void)
{
    return __cxa_get_globals ? __cxa_get_globals() : NULL;
}

/** Moves the state at `g` (a thread's, or NULL: nothing to move) into `saved` and empties it. */
static inline void weft__eh_take(weft__eh_globals *g, weft__eh_state *saved)
{
    if (__builtin_expect(g != NULL, 0)) {
        saved->caught = g->caught;
        saved->uncaught = g->uncaught;
        g->caught = NULL;
        g->uncaught = 0;
    }
}

/** Puts `saved` back as the state at `g` (which is empty; NULL: nothing to do). */
static inline void weft__eh_give(weft__eh_globals *g, const weft__eh_state *saved)
{
    if (__builtin_expect(g != NULL, 0)) {
        g->caught = saved->caught;
        g->uncaught = saved->uncaught;
    }
}

#endif
