// SPDX-License-Identifier: MIT
/*
 * errno as the caller had it. weft's calls report failures by their result and never set errno
 * (weft.h); the system calls they make do. A call that makes one keeps the caller's value and
 * puts it back on the way out, and a task's value goes with it when it is switched out (sched.c).
 *
 * The address of errno is looked up afresh each time, by a call the optimiser cannot see into:
 * glibc declares __errno_location() const, so the compiler may reuse an address it found before
 * a suspension point, and a task may resume on another thread (weft.h, the migration hazard).
 */
#ifndef WEFT_ERRNO_KEEP_H
#define WEFT_ERRNO_KEEP_H

#include <errno.h>

/** The calling thread's errno, found afresh. */
static __attribute__((noinline, unused)) int *weft__errno_here(void)
{
    int *e = &errno;
    __asm__ volatile("" : "+r"(e));
    return e;
}

/** The caller's errno, to be put back with weft__errno_put_back. */
static inline __attribute__((unused)) int weft__errno_keep(void)
{
    return *weft__errno_here();
}

static inline __attribute__((unused)) void weft__errno_put_back(int kept)
{
    *weft__errno_here() = kept;
}

#endif
