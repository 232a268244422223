// SPDX-License-Identifier: MIT
/*
 * Queues of waiting records (header only): a record on a waiting task's stack, linked into the
 * FIFO of whatever it waits for, under that structure's lock. Channels queue one per clause of a
 * select (chan.c), events one per waiting task (event.c); `queued` tells the task, when it takes
 * the lock again after its wait, whether a waker already took its record out.
 */
#ifndef WEFT_WAITQ_H
#define WEFT_WAITQ_H

#include <stddef.h>

#include "task.h"

typedef struct weft__waiter {
    weft__task *task;
    struct weft__waiter *next, *prev;
    int queued;
    int out; /* the waker that took it out also counted it out of its structure (event.c) */
} weft__waiter;

typedef struct weft__waitq {
    weft__waiter *head, *tail;
} weft__waitq;

/** `w` at the tail of `q`. Under the lock that guards `q`. */
static inline void weft__waitq_push(weft__waitq *q, weft__waiter *w)
{
    w->next = NULL;
    w->prev = q->tail;
    if (q->tail)
        q->tail->next = w;
    else
        q->head = w;
    q->tail = w;
    w->queued = 1;
}

/** `w`, which is in `q`, out of it. Under the lock that guards `q`. */
static inline void weft__waitq_remove(weft__waitq *q, weft__waiter *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        q->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        q->tail = w->prev;
    w->next = w->prev = NULL;
    w->queued = 0;
}

#endif
