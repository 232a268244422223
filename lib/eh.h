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
 * The function is called through a weak reference: a program without the C++ runtime has none,
 * and pays one test of a null address per switch.
 */
#ifndef WEFT_EH_H
#define WEFT_EH_H

#include <stddef.h>

#include "task.h"

/* The ABI's __cxa_eh_globals: the newest caught exception, and the count of those thrown and
 * not yet caught. (ARM's EH ABI adds a third field after these, untouched here.) */
typedef struct weft__eh_globals {
    void *caught;
    unsigned int uncaught;
} weft__eh_globals;

/* Declared here, without the C++ header's `const` attribute: each call must ask afresh, since
 * the thread may have changed since the last. */
extern weft__eh_globals *__cxa_get_globals(void) __attribute__((weak));

/** Moves the calling thread's exception state into `saved` and empties the thread's. */
static inline void weft__eh_take(weft__eh_state *saved)
{
    if (__cxa_get_globals) {
        weft__eh_globals *g = __cxa_get_globals();
        saved->caught = g->caught;
        saved->uncaught = g->uncaught;
        g->caught = NULL;
        g->uncaught = 0;
    }
}

/** Puts `saved` back as the calling thread's exception state (which is empty). */
static inline void weft__eh_give(const weft__eh_state *saved)
{
    if (__cxa_get_globals) {
        weft__eh_globals *g = __cxa_get_globals();
        g->caught = saved->caught;
        g->uncaught = saved->uncaught;
    }
}

#endif
