// SPDX-License-Identifier: MIT
/*
 * The asymmetric barrier (barrier.c): a fence that one side of a rare race pays for both.
 *
 * Dekker's pattern (each side stores its flag, then loads the other's) needs a StoreLoad fence on
 * both sides, some 5-10 ns each. Where one side runs on every fork-join step (a spawn queue's
 * owner popping, a scope's owner closing it) and the other almost never (a thief that must take
 * a private spawn, a task spawning into a scope it does not own), the common side keeps only a
 * compiler barrier, and the rare side calls weft__barrier_heavy: membarrier(2)'s
 * MEMBARRIER_CMD_PRIVATE_EXPEDITED, which runs a full barrier on every CPU that runs a thread of
 * this process (a thread that is switched out was passed one when it was). Wherever that barrier
 * falls in the common side's store-then-load, it orders them as a fence would have: before the
 * store, the common side's load sees the rare side's store; after the load, the rare side sees the
 * common side's store; between them, it is the fence. It costs the rare side some 10 us on the
 * development machine, and every other running thread of the process an interrupt.
 *
 * ThreadSanitizer cannot see that ordering, so its builds say the barrier is not there, as do
 * kernels without the call (or a sandbox that forbids it): the callers then keep their fences.
 */
#ifndef WEFT_BARRIER_H
#define WEFT_BARRIER_H

/** Whether weft__barrier_heavy may be relied on in this process: the kernel has
 *  MEMBARRIER_CMD_PRIVATE_EXPEDITED and the process is registered for it (done here, once; a
 *  child of fork() inherits the registration), and this is no ThreadSanitizer build. Any
 *  thread. */
int weft__barrier_supported(void);

/** The rare side's barrier: returns once every thread of the process has passed a full memory
 *  barrier. 0, or -1 if the kernel refused (never after weft__barrier_supported said yes). Any
 *  thread; a system call. */
int weft__barrier_heavy(void);

#endif
