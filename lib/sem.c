// SPDX-License-Identifier: MIT
/*
 * Semaphores that park green threads.
 *
 * Waiters queue in FIFO order behind the semaphore's lock. A release hands its token straight to
 * the oldest waiter (no barging: a task arriving later cannot overtake the queue). A waiter can
 * be woken by the release and by a cancel at the same instant; the park word lets only one of
 * them win. If the release won but the task's scope is cancelled by the time it resumes, the
 * task passes the token on to the next waiter and reports the cancel, so no token is ever lost
 * (asyncio's Semaphore could hang forever in this window).
 *
 * A woken waiter takes the lock once more before it returns, to learn what woke it. By then the
 * queue no longer shows it (the release unlinked it), so the semaphore counts the tasks inside
 * weft_sem_acquire past its fast path, and destroy refuses while any is: freeing the record
 * under a waiter that has been woken but has not yet run would let it lock freed memory.
 */
#include <errno.h>
#include <stdlib.h>

#include "alloc.h"
#include "lock.h"
#include "sched.h"
#include "scope.h"
#include "task.h"
#include "wait.h"

/* What a waiter's `result` says once the semaphore's lock is taken. */
enum { IN_QUEUE = 0, GRANTED = 1, DROPPED = 2 };

struct weft_sem {
    weft__lock lock;
    unsigned available;
    unsigned tokens;
    unsigned inside; /* tasks queued, or woken and yet to take the lock for the last time */
    unsigned handed; /* tokens a release gave a waiter that has not yet taken the lock again */
    int signal;      /* made with fewer tokens than it holds: its tokens are given, not lent */
    weft__task *head, *tail;
};

int weft_sem_create(weft_sem **out, unsigned tokens)
{
    if (!out)
        return -EINVAL;
    weft_sem *s = weft__alloc_calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    weft__lock_init(&s->lock);
    s->available = s->tokens = tokens;
    *out = s;
    return 0;
}

int weft_sem_create_max(weft_sem **out, unsigned initial, unsigned max)
{
    if (!out || max == 0 || initial > max)
        return -EINVAL;
    int rc = weft_sem_create(out, max);
    if (rc == 0) {
        (*out)->available = initial;
        (*out)->signal = initial < max;
    }
    return rc;
}

int weft_sem_destroy(weft_sem *s)
{
    if (!s)
        return -EINVAL;
    weft__lock_acquire(&s->lock);
    int busy = s->inside != 0;
    weft__lock_release(&s->lock);
    if (busy)
        return -EBUSY;
    free(s);
    return 0;
}

static void unlink_waiter(weft_sem *s, weft__task *t)
{
    if (t->sprev)
        t->sprev->snext = t->snext;
    else
        s->head = t->snext;
    if (t->snext)
        t->snext->sprev = t->sprev;
    else
        s->tail = t->sprev;
    t->snext = t->sprev = NULL;
}

/* A task's count of tokens taken minus tokens given back, for the report at its end (debug
 * builds; release builds do not count). A token handed to another task to release shows up there
 * as held: rare, and the report is a hint, not an error. Not the tokens of a signal (`signal`: a
 * semaphore made with fewer than it holds, weft_sem_create_max), which a waiter takes and keeps.
 * `signal` is read under the semaphore's lock: after it, a destroy may free the semaphore. */
static inline void count_token_of(int signal, weft__task *t, int delta)
{
#ifndef NDEBUG
    if (t && !signal)
        t->tokens_held += delta;
#else
    (void)signal;
    (void)t;
    (void)delta;
#endif
}

static void count_token(int signal, int delta)
{
#ifndef NDEBUG
    count_token_of(signal, weft__task_self(), delta);
#else
    (void)signal;
    (void)delta;
#endif
}

int weft_sem_try_acquire(weft_sem *s)
{
    if (!s)
        return -EINVAL;
    int rc = -EAGAIN;
    weft__lock_acquire(&s->lock);
    int signal = s->signal;
    if (s->available && !s->head) {
        s->available--;
        rc = 0;
    }
    weft__lock_release(&s->lock);
    if (rc == 0)
        count_token(signal, 1);
    return rc;
}

/* Gives a token to the oldest waiter, or back to the semaphore. The lock is held. A token handed
 * to a waiter that has not run yet still counts towards the most the semaphore may hold: that
 * waiter, if cancelled meanwhile, gives it back, and a release that the room it left let through
 * would then have been one too many, with no call left to say so. */
static int give_token(weft_sem *s)
{
    for (;;) {
        weft__task *w = s->head;
        if (!w) {
            if (s->available + s->handed >= s->tokens)
                return -EOVERFLOW;
            s->available++;
            return 0;
        }
        unlink_waiter(s, w);
        if (weft__sched_wake(w, WEFT__WOKEN)) {
            /* Read by the waiter under this lock only, so setting it after the wake is safe. */
            w->result = GRANTED;
            s->handed++;
            return 0;
        }
        /* A cancel got there first: that waiter leaves without a token; try the next. */
        w->result = DROPPED;
    }
}

int weft_sem_release(weft_sem *s)
{
    if (!s)
        return -EINVAL;
    weft__lock_acquire(&s->lock);
    int signal = s->signal;
    int rc = give_token(s);
    weft__lock_release(&s->lock);
    if (rc == 0)
        count_token(signal, -1);
    return rc;
}

unsigned weft_sem_available(const weft_sem *s)
{
    if (!s)
        return 0;
    weft__lock_acquire((weft__lock *)&s->lock);
    unsigned n = s->available;
    weft__lock_release((weft__lock *)&s->lock);
    return n;
}

int weft_sem_acquire(weft_sem *s)
{
    weft__task *t = weft__task_self();
    if (!t)
        return -EPERM;
    if (!s)
        return -EINVAL;
    int code = weft__wait_enter(t, WEFT__ON_SEM, s);
    if (code)
        return code;
    weft_scope *cs = t->cancel_scope;
    weft__lock_acquire(&s->lock);
    int signal = s->signal;
    if (s->available && !s->head) {
        s->available--;
        weft__lock_release(&s->lock);
        count_token_of(signal, t, 1);
        return 0;
    }
    weft__wait_prepare(t);
    t->result = IN_QUEUE;
    t->snext = NULL;
    t->sprev = s->tail;
    if (s->tail)
        s->tail->snext = t;
    else
        s->head = t;
    s->tail = t;
    s->inside++;
    weft__lock_release(&s->lock);

    /* A release's wake, a cancel, or a negative code: the cancel code, or -ENOMEM (no room to
     * link the scope into the tree, so no cancel could reach the waiter); then it never parked
     * and is still in the queue, unless a release won first. */
    int why = weft__wait_park(t, cs, WEFT_NEVER);

    /* The last touch of the semaphore: once `inside` drops, a destroy may free it. */
    code = weft__scope_cancel_code(cs);
    weft__lock_acquire(&s->lock);
    int granted = t->result == GRANTED;
    if (t->result == IN_QUEUE)
        unlink_waiter(s, t);
    if (granted)
        s->handed--;
    if (granted && code)
        give_token(s); /* woken and cancelled at once: the token goes on (room is kept for it) */
    s->inside--;
    weft__lock_release(&s->lock);

    if (granted && !code) {
        count_token_of(signal, t, 1);
        return 0;
    }
    if (code)
        return code;
    return why < 0 ? why : -ECANCELED;
}
