// SPDX-License-Identifier: MIT
/*
 * The children a limited scope (max_concurrency) holds back: a FIFO of {fn, arg} pairs in
 * segments of a page.
 *
 * A held-back child is only a promise to call fn(arg) later, so it is kept as 16 bytes instead
 * of a task record (256): spawning 100,000 children under a limit of 64 would otherwise touch
 * 25 MB of fresh memory, which cost more than running them. A child spawned with options (a
 * name, a stack size) needs its record from the start; its entry carries the record instead
 * (fn NULL: spawn never accepts a NULL function, so the two cannot be confused).
 *
 * Segments are blocks of the runtime (weft__records_alloc_block: carved from huge pages, where
 * fresh 4 KiB pages from malloc made page faults the main cost of deferring 100,000 children). No
 * locking inside: the scope's lock guards the queue. A drained segment is kept as a spare, so a
 * queue that fills and drains at the same pace allocates nothing.
 */
#ifndef WEFT_DEFER_H
#define WEFT_DEFER_H

#include <stddef.h>
#include <stdint.h>

#include "weft.h"

typedef struct weft__defer_entry {
    weft_fn fn; /* NULL: `arg` is a weft__task record, ready to be queued as it is */
    void *arg;
} weft__defer_entry;

typedef struct weft__defer_seg weft__defer_seg;

typedef struct weft__defer_queue {
    weft__defer_seg *head; /* oldest segment: entries are taken here */
    weft__defer_seg *tail; /* newest segment: entries are added here */
    weft__defer_seg *spare;
} weft__defer_queue;

static inline void weft__defer_init(weft__defer_queue *q)
{
    q->head = q->tail = q->spare = NULL;
}

/** Appends an entry. 0, or -ENOMEM when a new segment cannot be allocated. */
int weft__defer_push(weft__defer_queue *q, weft_runtime *rt, weft_fn fn, void *arg);

/** Takes the oldest entry into *out. 1 if there was one, 0 if the queue is empty. */
int weft__defer_pop(weft__defer_queue *q, weft_runtime *rt, weft__defer_entry *out);

void weft__defer_release(weft__defer_queue *q, weft_runtime *rt);

/** The entries waiting in `q`, read racily from any thread (for a dump of the tree, dump.c):
 *  segments are blocks, never given back while the runtime lives, so the walk reads memory of
 *  the right kind even when the queue changes under it; the count may be off by what changed,
 *  and the walk stops after `max_segs` segments. */
size_t weft__defer_count_racy(const weft__defer_queue *q, size_t max_segs);

/** Gives the queue's segments back; it must be empty (every deferred child ran before the
 *  join). Inline: every scope ends here, and most never deferred a child. */
static inline void weft__defer_fini(weft__defer_queue *q, weft_runtime *rt)
{
    if (q->head || q->spare)
        weft__defer_release(q, rt);
}

#endif
