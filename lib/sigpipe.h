// SPDX-License-Identifier: MIT
/*
 * Writes the runtime makes on a caller's thread (a dump, a trace's file) to a descriptor that may
 * be a pipe or a socket whose reader is gone: SIGPIPE, whose default ends the process, is blocked
 * on the thread for them, and one they raised is taken back before the mask is restored, so the
 * write's -EPIPE is all that is left of it. (weft's own threads block SIGPIPE for good.)
 */
#ifndef WEFT_SIGPIPE_H
#define WEFT_SIGPIPE_H

#include <pthread.h>
#include <signal.h>
#include <time.h>

/** Blocks SIGPIPE on the calling thread; `*old` gets the mask to restore. */
static inline void weft__sigpipe_block(sigset_t *old)
{
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, old);
}

/** Restores `*old`, first taking back a SIGPIPE the writes raised (`epipe`: one of them failed
 *  with EPIPE) unless it was blocked before, in which case it was not theirs to take. */
static inline void weft__sigpipe_restore(const sigset_t *old, int epipe)
{
    if (epipe && !sigismember(old, SIGPIPE)) {
        sigset_t pipe_set;
        sigemptyset(&pipe_set);
        sigaddset(&pipe_set, SIGPIPE);
        struct timespec zero = {0, 0};
        sigtimedwait(&pipe_set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, old, NULL);
}

#endif
