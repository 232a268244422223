// SPDX-License-Identifier: MIT
/*
 * Chaos mode. WEFT_CHAOS=<seed> perturbs scheduling to shake out ordering bugs: random yields at
 * spawn and suspension points, steals forced ahead of local work, timers fired late, and spurious
 * resumes of parked tasks (weft__sched_park must absorb them: the task runs again, finds itself
 * not woken, and parks again while its wakers may be racing to wake it). With one worker and no
 * foreign threads the perturbations depend on the seed alone, so a failing seed reproduces.
 */
#ifndef WEFT_CHAOS_H
#define WEFT_CHAOS_H

#include "sched.h"

/** 1 once in `one_in` calls, from `w`'s own seeded generator; 0 always when chaos mode is off (a
 *  load and a branch, so the scheduler's paths can ask at every pick). `w` is the caller's
 *  worker. */
static inline int weft__chaos_hit(weft__worker *w, unsigned one_in)
{
    if (__builtin_expect(!w->rt->chaos, 1))
        return 0;
    uint64_t x = w->chaos_rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    w->chaos_rng = x;
    return (x * 0x2545F4914F6CDD1Dull) % one_in == 0;
}

#endif
