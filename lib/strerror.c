// SPDX-License-Identifier: MIT
/* Texts for the codes weft returns. Static strings only, so that any thread may ask at any
 * time: strerror(3) may format into a buffer of its own, and its text for the codes weft gives a
 * meaning of its own (ECANCELED: "Operation canceled") does not say where they come from. */
#include "weft.h"

#include <errno.h>
#include <string.h>

/* The codes weft itself returns, in its own terms (weft.h names them at each function). */
static const char *const own_text[] = {
    [EPERM] = "not allowed here: a task-only call outside a weft task, or a scope, mutex or "
              "deadline used by a task that does not own it",
    [EINVAL] = "invalid argument: NULL, out of range, or an object already joined, released "
               "or destroyed",
    [ENOMEM] = "out of memory: an allocation, or the stack of a task, could not be had",
    [ECANCELED] = "cancelled: the task's scope, or one enclosing it, was cancelled",
    [ETIMEDOUT] = "timed out: a deadline passed",
    [EAGAIN] = "try again: the call would have to wait, or no thread could be started",
    [EDEADLK] = "would deadlock: a call that blocks its thread made from a weft task, or a "
                "mutex locked again by the task that holds it",
    [ESHUTDOWN] = "the runtime is shut down or shutting down",
    [EBUSY] = "busy: still in use or waited on, or another task already waits on the descriptor",
    [EOVERFLOW] = "overflow: more tokens released than the semaphore can hold",
    [EPIPE] = "closed: the channel was closed, or the reader of the descriptor is gone",
    [EALREADY] = "already done: the channel was closed before",
    [EBADF] = "bad descriptor: not open, or closed with weft_close while a task waited on it",
};

/* Beyond this no errno value lies (the kernel's own bound, MAX_ERRNO). */
#define MAX_ERRNO 4095

const char *weft_strerror(int code)
{
    if (code == 0)
        return "success";
    if (code > 0)
        return "a failure code of the program's own (weft's codes are negative errno values)";
    if (code < -MAX_ERRNO)
        return "unknown error: not a negative errno value";
    int e = -code;
    if ((size_t)e < sizeof(own_text) / sizeof(own_text[0]) && own_text[e])
        return own_text[e];
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
    /* The C library's table itself: constant strings, untranslated, no buffer. */
    const char *d = strerrordesc_np(e);
    if (d)
        return d;
#endif
    return "unknown error: a negative errno value this system does not describe";
}
