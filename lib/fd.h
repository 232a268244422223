// SPDX-License-Identifier: MIT
/*
 * Descriptor records (fd.c): what the runtime knows of each descriptor a task waited on, and
 * the waits on them.
 *
 * One record per descriptor number, process-wide (descriptors are), made at its first wait and
 * never freed: a stale pointer to a record is always a record, as for tasks. A record holds the
 * poller it is registered with, at most one waiting task per direction, and per direction a count
 * of the readiness edges epoll reported. Registration is edge-triggered, so an edge that comes
 * while nobody waits must not be lost: a caller reads the count before it tries its I/O, and
 * parks only if the count has not moved since (weft__fd_park); the poller bumps it under the
 * record's lock. `gen` changes at every weft_close: events and waits that name an older one are
 * stale.
 *
 * A read that returns less than it asked of a TCP socket emptied its receive queue (the kernel
 * stops short only there, or at urgent data: see weft__fd_note_short_read), so the next read would
 * find nothing unless data came since, and data that comes makes an edge. The reader notes the
 * count it read under (`dry`), and the next read skips its system call and parks at once while
 * the count has not moved: one system call fewer per message for a server that answers
 * requests. Urgent data (EPOLLPRI), the peer's end of stream (EPOLLRDHUP) and errors, after
 * which a read returns at once with no edge to come, turn the notes off until the close.
 */
#ifndef WEFT_FD_H
#define WEFT_FD_H

#include <stdint.h>

#include "lock.h"
#include "poll.h"
#include "sched.h"
#include "task.h"
#include "weft.h"

enum { WEFT__FD_READ = 0, WEFT__FD_WRITE = 1 };

/* What a short read says of a descriptor: not asked yet (zeroed memory), that it emptied it (a
 * TCP socket), or nothing (anything else, and a TCP socket that got urgent data). */
enum { WEFT__FD_DRAINS_UNKNOWN = 0, WEFT__FD_DRAINS_YES = 1, WEFT__FD_DRAINS_NO = 2 };

typedef struct weft__fd_rec {
    weft__lock lock;
    uint32_t gen;            /* bumped by weft_close */
    weft__poller *poller;    /* the set it is registered in; NULL: none */
    weft__task *waiter[2];   /* the task waiting to read, to write */
    _Atomic uint32_t seq[2]; /* readiness edges seen per direction (written under `lock`) */
    _Atomic uint64_t dry;    /* 1 << 32 | the read count at which a read emptied it; 0: none */
    _Atomic uint8_t drains;  /* whether a short read empties it: WEFT__FD_DRAINS_* */
    _Atomic uint32_t shut;   /* gen + 1 of the registration whose read side was shut; 0: none */
    uint32_t closing;        /* weft_close calls between their wake and the end of close(2) */
} __attribute__((aligned(64))) weft__fd_rec; /* a line each: the poller, the waiter's try and its
                                              * park each touch all of it, and a record across
                                              * two lines cost two misses each time */

/** What a caller captures before it tries its I/O (weft__fd_watch). */
typedef struct weft__fd_mark {
    weft__fd_rec *rec; /* NULL: not registered yet */
    uint32_t gen, seq;
} weft__fd_mark;

/** The record of `fd` if it is registered, and its counts now, for direction `dir`. Cheap: two
 *  loads. */
void weft__fd_watch(int fd, int dir, weft__fd_mark *m);

/** Whether a mark `now` names the registration that an earlier mark `then` (of a call that
 *  waited) named: 0 when the descriptor was closed with weft_close since, and its number may
 *  name another file, which that call must not touch. */
static inline int weft__fd_same_registration(const weft__fd_mark *now, const weft__fd_mark *then)
{
    return now->rec == then->rec && now->gen == then->gen;
}

/** Whether `r` is registered with the poller of the runtime of `t`. */
int weft__fd_ours(const weft__fd_rec *r, const weft__task *t);

/** Whether a read by `t` after the mark `m` (of the reading direction) would find nothing: a
 *  short read emptied the descriptor under the same edge count, so no data came since. A hint
 *  that is never wrong where it says yes; the caller then parks as if its read had failed with
 *  EAGAIN. Only for a descriptor registered with the runtime of `t`: a task of another runtime
 *  may not park on it, and tries its read (weft__fd_park refuses it, -EINVAL). */
static inline int weft__fd_read_dry(const weft__fd_mark *m, const weft__task *t)
{
    return m->rec &&
           atomic_load_explicit(&m->rec->dry, memory_order_relaxed) ==
               ((uint64_t)1 << 32 | m->seq) &&
           weft__fd_ours(m->rec, t);
}

/** Whether the read side of the descriptor of the mark `m` (registered) was shut (EPOLLRDHUP:
 *  shutdown(SHUT_RD), the peer's end) under its registration. A datagram socket or a
 *  UNIX-domain listener then still answers a non-blocking receive or accept with EAGAIN where a
 *  blocking one returns at once (0, -EINVAL), and no edge is to come: the caller must not park. */
static inline int weft__fd_read_shut(const weft__fd_mark *m)
{
    return atomic_load_explicit(&m->rec->shut, memory_order_acquire) == m->gen + 1;
}

/** A read of `fd` under the mark `m` (of the reading direction, registered) returned more than
 *  nothing and less than it asked: notes it for weft__fd_read_dry where that means the
 *  descriptor is empty. Finds out once per descriptor whether it does (a system call). */
void weft__fd_note_short_read(int fd, const weft__fd_mark *m);

/** The program reads urgent data of `fd` (MSG_OOB): short reads say nothing of it until its
 *  close. 0, or -ENOMEM when its record cannot be made. */
int weft__fd_note_urgent(int fd);

/** Registers `fd` with the poller of the calling task's runtime (once per descriptor) and fills
 *  `m` for `dir`. 0, or a negative errno value (-EBADF, also while a weft_close of `fd` is under
 *  way; -EPERM for a file epoll cannot watch; -ENOMEM; -EINVAL when another runtime has
 *  registered it). */
int weft__fd_register(int fd, int dir, weft__fd_mark *m);

/** Parks the calling task `t` until an edge in one of the directions of `dirs` (a mask of
 *  1 << WEFT__FD_READ and 1 << WEFT__FD_WRITE) after the marks `m` (one per direction asked,
 *  reading first, all of one record), at once if one came already; or until cancellation, or
 *  `deadline`. 0 when the caller should try its I/O again; a negative code: -EBADF (closed
 *  meanwhile), -EBUSY (another task waits there), -EINVAL (the record is another runtime's),
 *  -ECANCELED, -ETIMEDOUT, -ENOMEM. */
int weft__fd_park(weft__task *t, int dirs, const weft__fd_mark *m, weft_time deadline);

/** Whether the caller's marks `m` of a registered descriptor (one per direction asked: `n`)
 *  still name its registration with the runtime of `t`: 0; -EBADF when it was closed since (or
 *  the marks straddle a close); -EINVAL when another runtime has it. */
int weft__fd_still_ours(const weft__fd_mark *m, int n, const weft__task *t);

/** The poller's side: an epoll event of the set of `p` for the data word `data` (gen << 32 |
 *  fd). Wakes the waiters it makes runnable into `b`; returns how many. */
int weft__fd_ready(weft__poller *p, uint64_t data, uint32_t events, weft__ready_batch *b);

/** weft_close's part before close(2): every waiter on `fd` woken with -EBADF, its registration
 *  dropped, its generation moved on, and the record marked closing until weft__fd_close_end:
 *  a registration meanwhile waits for that (the file it would register leaves the epoll set
 *  with the close), then registers what the number names by then, if anything. Any thread, also
 *  while the runtime that registered `fd` shuts down. Returns the tasks woken. */
int weft__fd_close_begin(int fd);

/** weft_close's part after close(2). */
void weft__fd_close_end(int fd);

/** Forgets every registration with `p`, whose epoll set is about to close. */
void weft__fd_forget_poller(weft__poller *p);

#endif
