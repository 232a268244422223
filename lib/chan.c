// SPDX-License-Identifier: MIT
/*
 * Channels and select.
 *
 * A channel is a ring of `cap` items behind a spinlock, with two FIFO queues of waiting
 * clauses: senders waiting for room (or, with cap 0, for a receiver) and receivers waiting for an
 * item. A waiting clause is a chan_waiter, a small record on the waiting task's stack (Go's
 * sudog, libdill's clause): one per clause of a select, so that one task can wait in several
 * queues at once.
 *
 * Exactly one clause happens. A waiting task is prepared to park once (the park word of sched.h)
 * and queued in every channel of its select; whoever finds one of its waiters and wins the CAS of
 * the park word from PARKED (weft__sched_wake) does that clause: copies the item, sets the
 * clause's result and the task's `result` to the clause's index, all under the lock of that
 * channel. A waker that loses the CAS (the task was claimed by another channel, or cancelled, or
 * its deadline passed) drops that waiter from its queue and tries the next. The winner lets the
 * task run only once the clause is done (the two halves of the wake in sched.h). The woken task
 * of a select takes the locks of its channels again to take its other waiters out, and reads what
 * the winner wrote under them; a send or receive of one clause has nothing left in the channel
 * (its winner took its waiter out, and counted it out of `inside`), so it reads what the winner
 * wrote before it let it run, without the lock; unless its winner ran outside its runtime
 * (sched.h, weft__sched_waker_is_own), which leaves the lock for it to take again.
 *
 * A select takes the locks of all its channels (in address order, so two selects cannot
 * deadlock) while it looks for a clause that can happen at once and while it queues its waiters:
 * nobody can claim it before it is queued everywhere, and nothing it found ready can change
 * before it acts. A waker holds one channel's lock only.
 *
 * `inside` counts tasks with waiters queued, or woken and not yet out of their last lock: a
 * destroy refuses (-EBUSY) while any is, as weft_sem_destroy does.
 *
 * Most sends and receives of a pipeline find room (or an item) in a buffered channel and nobody
 * waiting on the other side. weft_chan_send and weft_chan_recv do that case in a few loads and
 * stores under the lock, with no frame, no record of what they wait on and no call: a pipeline's
 * stage paid about 90 instructions per operation for the general path and pays about 50 for this
 * one. The general path runs when the case does not hold, in chaos mode, and whenever the scope's
 * cached cancel state is not plainly "none" (it then asks the scope, as every suspension point
 * does: a cancelled task's send fails even where it could happen at once).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "lock.h"
#include "sched.h"
#include "scope.h"
#include "wait.h"
#include "waitq.h"

#define MAX_ITEM (64 * 1024)
#define MAX_CLAUSES 64

/* A clause waiting in a channel's queue: its link (first, so that a link is the clause) and what
 * the clause does. */
typedef struct chan_waiter {
    weft__waiter link;
    weft_select_op *op;
    int index; /* of the clause in its select */
    /* A send or receive of one clause: its winner also counts it out of `inside`, and the task,
     * woken, reads what the winner wrote without taking the lock again (one_clause); unless the
     * winner runs outside the task's runtime, which clears it (see weft__sched_waker_is_own). */
    int alone;
} chan_waiter;

struct weft_chan {
    weft__lock lock;
    size_t item_size, cap;
    /* The ring: `count` items from `head` on, the next free slot at `tail`; both step by
     * item_size and wrap from `ring_end` to `ring` (pointers rather than indices: a send or a
     * receive moves one and compares it, with no multiplication). All NULL when cap is 0. */
    char *head, *tail;
    size_t count;
    int closed;
    unsigned inside;
    weft__waitq senders, receivers;
    char *ring, *ring_end;
};

/* ---- queues ------------------------------------------------------------------------------ */

/* Claims the oldest waiter of `q` that is not of task `self` and whose task no one has claimed
 * yet: it is dequeued and its task's park word won (any waiter passed over on the way, already
 * claimed, is dropped). The winner then does the clause under the same lock and lets the task
 * run (done). NULL when there is none. */
static chan_waiter *claim(weft__waitq *q, weft__task *self)
{
    weft__waiter *w = q->head;
    while (w) {
        weft__waiter *next = w->next;
        if (w->task != self) {
            weft__waitq_remove(q, w);
            if (weft__sched_wake_claim(w->task, WEFT__WOKEN))
                return (chan_waiter *)w;
        }
        w = next;
    }
    return NULL;
}

/* Tells the task of `w`, claimed in `c`, which clause happened and how, and lets it run: after
 * the clause's item is copied, so that the task finds it there however soon it runs. Under the
 * channel's lock; a select takes it again before it reads either, a lone clause woken from its
 * own runtime does not (so it is counted out of `inside` here: the channel may be destroyed once
 * this lock is let go). */
static void done(weft_chan *c, chan_waiter *w, int result)
{
    weft__task *t = w->link.task;
    weft__worker *self = weft__sched_worker();
    w->op->result = result;
    t->result = w->index;
    if (w->alone && weft__sched_waker_is_own(self, t))
        c->inside--;
    else
        w->alone = 0;
    weft__sched_wake_finish(self, t);
}

/* ---- the clauses, done at once if they can be (under the lock) --------------------------- */

/* Copies an item of 4, 8 or 16 bytes (the sizes of a word, a pointer, a pair) with no call and
 * returns 1; 0 for any other size, copying nothing. */
static inline int copy_small(void *dst, const void *src, size_t size)
{
    switch (size) {
    case 8:
        memcpy(dst, src, 8);
        return 1;
    case 4:
        memcpy(dst, src, 4);
        return 1;
    case 16:
        memcpy(dst, src, 16);
        return 1;
    default:
        return 0;
    }
}

/* Copies one item. Items are most often a word or two (a pointer, an index), for which a call
 * to memcpy of a size it must first inspect costs more than the copy. */
static inline void copy_item(void *dst, const void *src, size_t size)
{
    if (!copy_small(dst, src, size))
        memcpy(dst, src, size);
}

/* The slot after `p` in the ring. */
static inline char *ring_next(const weft_chan *c, char *p)
{
    p += c->item_size;
    if (p == c->ring_end)
        p = c->ring;
    return p;
}

/* Appends `item` to the ring (count < cap). */
static inline void ring_put(weft_chan *c, const void *item)
{
    copy_item(c->tail, item, c->item_size);
    c->tail = ring_next(c, c->tail);
    c->count++;
}

/* Takes the oldest item of the ring (count > 0) into `item`. */
static inline void ring_take(weft_chan *c, void *item)
{
    copy_item(item, c->head, c->item_size);
    c->head = ring_next(c, c->head);
    c->count--;
}

/* A send of `item` that can happen now: 0 (done), -EPIPE (closed: not delivered), or -EAGAIN
 * (it would wait). */
static inline __attribute__((always_inline)) int send_now(weft_chan *c, const void *item,
                                                          weft__task *self)
{
    if (c->closed)
        return -EPIPE;
    chan_waiter *r = claim(&c->receivers, self);
    if (r) {
        copy_item(r->op->item, item, c->item_size);
        done(c, r, 0);
        return 0;
    }
    if (c->count < c->cap) {
        ring_put(c, item);
        return 0;
    }
    return -EAGAIN;
}

/* A receive into `item` that can happen now: 0, -EPIPE (closed and empty), or -EAGAIN. */
static inline __attribute__((always_inline)) int recv_now(weft_chan *c, void *item,
                                                          weft__task *self)
{
    if (c->count > 0) {
        ring_take(c, item);
        /* Room now: the oldest waiting sender's item takes it (FIFO among senders). */
        chan_waiter *s = claim(&c->senders, self);
        if (s) {
            ring_put(c, s->op->item);
            done(c, s, 0);
        }
        return 0;
    }
    chan_waiter *s = claim(&c->senders, self); /* a rendezvous: straight from the sender */
    if (s) {
        copy_item(item, s->op->item, c->item_size);
        done(c, s, 0);
        return 0;
    }
    return c->closed ? -EPIPE : -EAGAIN;
}

static inline __attribute__((always_inline)) int op_now(weft_select_op *op, weft__task *self)
{
    return op->kind == WEFT_SELECT_SEND ? send_now(op->chan, op->item, self)
                                        : recv_now(op->chan, op->item, self);
}

/* ---- locking the channels of a select ---------------------------------------------------- */

/* The distinct channels of `ops`, in address order, into `out`; returns how many. */
static int channels_of(const weft_select_op *ops, int n, weft_chan **out)
{
    int m = 0;
    for (int i = 0; i < n; i++) {
        weft_chan *c = ops[i].chan;
        int j = m;
        while (j > 0 && out[j - 1] > c)
            j--;
        if (j > 0 && out[j - 1] == c)
            continue;
        memmove(&out[j + 1], &out[j], (size_t)(m - j) * sizeof(*out));
        out[j] = c;
        m++;
    }
    return m;
}

static void lock_all(weft_chan **cs, int m)
{
    for (int i = 0; i < m; i++)
        weft__lock_acquire(&cs[i]->lock);
}

static void unlock_all(weft_chan **cs, int m)
{
    for (int i = m - 1; i >= 0; i--)
        weft__lock_release(&cs[i]->lock);
}

/* ---- select -------------------------------------------------------------------------------- */

static int valid_ops(const weft_select_op *ops, int n)
{
    if (!ops || n < 1 || n > MAX_CLAUSES)
        return 0;
    for (int i = 0; i < n; i++)
        if (!ops[i].chan || !ops[i].item ||
            (ops[i].kind != WEFT_SELECT_SEND && ops[i].kind != WEFT_SELECT_RECV))
            return 0;
    return 1;
}

/* Where a select of more than one clause starts looking among them: at random, so that among
 * clauses ready at once none starves. A counter taken in turn did not do: it was shared by every
 * select, so a task whose selects moved it on by a multiple of a select's clause count between
 * two runs of that select (two selects of two clauses in a loop) started it on the same clause
 * every time. A generator per thread (xorshift), read and advanced before any suspension point. */
static _Thread_local uint32_t select_seed;

static unsigned select_start(int n)
{
    uint32_t x = select_seed;
    if (x == 0)
        x = (uint32_t)(uintptr_t)&select_seed ^ (uint32_t)weft_now() ^ 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    select_seed = x ? x : 1;
    return (unsigned)(((uint64_t)x * (uint32_t)n) >> 32);
}

int weft_select(weft_select_op *ops, int n, int flags)
{
    weft__task *t = weft__task_self();
    if (!t)
        return -EPERM;
    if (!valid_ops(ops, n) || (flags & ~WEFT_SELECT_NOWAIT))
        return -EINVAL;
    int code = weft__wait_enter(t, n > 1 ? WEFT__ON_SELECT : WEFT__ON_CHAN, ops);
    if (code)
        return code;
    weft_scope *cs = t->cancel_scope;
    unsigned start = n > 1 ? select_start(n) : 0;
    weft_chan *chans[MAX_CLAUSES];
    int m = channels_of(ops, n, chans);

    lock_all(chans, m);
    for (int k = 0; k < n; k++) {
        int i = (int)((start + (unsigned)k) % (unsigned)n);
        int rc = op_now(&ops[i], t);
        if (rc != -EAGAIN) {
            unlock_all(chans, m);
            ops[i].result = rc;
            return i;
        }
    }
    if (flags & WEFT_SELECT_NOWAIT) {
        unlock_all(chans, m);
        return -EAGAIN;
    }
    /* Nothing can happen now: wait in every channel's queue. */
    chan_waiter w[MAX_CLAUSES];
    weft__wait_prepare(t);
    t->result = -1;
    for (int i = 0; i < n; i++) {
        weft_chan *c = ops[i].chan;
        w[i] = (chan_waiter){.link.task = t, .op = &ops[i], .index = i};
        weft__waitq_push(ops[i].kind == WEFT_SELECT_SEND ? &c->senders : &c->receivers, &w[i].link);
        c->inside++;
    }
    unlock_all(chans, m);

    int why = weft__wait_park(t, cs, WEFT_NEVER);

    /* Out of every queue the winner did not take this task out of. */
    lock_all(chans, m);
    for (int i = 0; i < n; i++) {
        weft_chan *c = ops[i].chan;
        if (w[i].link.queued)
            weft__waitq_remove(ops[i].kind == WEFT_SELECT_SEND ? &c->senders : &c->receivers,
                               &w[i].link);
        c->inside--;
    }
    int chosen = t->result;
    unlock_all(chans, m);
    return why == WEFT__WOKEN ? chosen : weft__wait_end(why, cs);
}

/* ---- channels ---------------------------------------------------------------------------- */

int weft_chan_create(weft_chan **out, size_t item_size, size_t capacity)
{
    if (!out || item_size == 0 || item_size > MAX_ITEM || capacity > ((size_t)1 << 32) ||
        (capacity && item_size > SIZE_MAX / capacity))
        return -EINVAL;
    weft_chan *c = weft__alloc_calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    if (capacity) {
        c->ring = weft__alloc_malloc(item_size * capacity);
        if (!c->ring) {
            free(c);
            return -ENOMEM;
        }
        c->ring_end = c->ring + item_size * capacity;
        c->head = c->tail = c->ring;
    }
    weft__lock_init(&c->lock);
    c->item_size = item_size;
    c->cap = capacity;
    *out = c;
    return 0;
}

int weft_chan_destroy(weft_chan *c)
{
    if (!c)
        return -EINVAL;
    weft__lock_acquire(&c->lock);
    int busy = c->inside != 0;
    weft__lock_release(&c->lock);
    if (busy)
        return -EBUSY;
    free(c->ring);
    free(c);
    return 0;
}

/* The running task, or NULL on a foreign thread, with no call (weft__sched_worker_leaf). */
static inline weft__task *task_here(void)
{
    return weft__sched_current(weft__sched_worker_leaf());
}

/* The rest of a send or receive whose clause cannot happen at once: waits in `c`, whose lock the
 * caller holds, with `op` as its one clause. */
static int one_clause_wait(weft_chan *c, weft_select_op *op, weft__task *t)
{
    weft_scope *cs = t->cancel_scope;
    weft__waitq *q = op->kind == WEFT_SELECT_SEND ? &c->senders : &c->receivers;
    chan_waiter w = {.link.task = t, .op = op, .index = 0, .alone = 1};
    weft__task_note_wait(t, WEFT__ON_CHAN, op);
    weft__wait_prepare(t);
    t->result = -1;
    weft__waitq_push(q, &w.link);
    c->inside++;
    weft__lock_release(&c->lock);

    int why = weft__wait_park(t, cs, WEFT_NEVER);
    if (why == WEFT__WOKEN && w.alone) /* out of the queue and of `inside`, by the waker */
        return op->result;

    weft__lock_acquire(&c->lock);
    if (w.link.queued)
        weft__waitq_remove(q, &w.link);
    c->inside--;
    int rc = op->result;
    weft__lock_release(&c->lock);
    return why == WEFT__WOKEN ? rc : weft__wait_end(why, cs);
}

/* A send or receive by `t` with `c` locked, its chaos point and cancel check passed: does it
 * now or waits for it. What weft_select does for one clause, with no sorting of channels. */
static __attribute__((noinline)) int one_clause_locked(weft_chan *c, int kind, void *item,
                                                       weft__task *t)
{
    int rc = kind == WEFT_SELECT_SEND ? send_now(c, item, t) : recv_now(c, item, t);
    if (rc != -EAGAIN) {
        weft__lock_release(&c->lock);
        return rc;
    }
    weft_select_op op = {.chan = c, .kind = kind, .item = item};
    return one_clause_wait(c, &op, t);
}

/* A send or receive from the start of its wait on (chaos mode, or a scope that may be
 * cancelled). What it waits on is noted again, with its clause, if it parks. */
static __attribute__((noinline)) int one_clause(weft_chan *c, int kind, void *item, weft__task *t)
{
    int code = weft__wait_enter(t, WEFT__ON_CHAN, NULL);
    if (code)
        return code;
    weft__lock_acquire(&c->lock);
    return one_clause_locked(c, kind, item, t);
}

/* 1 when a send or receive of `t` needs neither a chaos point nor a look for a cancel code
 * beyond the scope's cached state; 0 sends it through one_clause. */
static inline int no_chaos_no_cancel(weft__task *t)
{
    return t->rt->chaos == 0 && weft__scope_cancel_surely_none(t->cancel_scope);
}

/* The common case of weft_chan_send, a buffered channel with room, nobody waiting to receive,
 * and a small item: puts `item` and returns 1. 0 (nothing done): take the general path. Under
 * the lock. */
static inline int put_at_once(weft_chan *c, const void *item)
{
    if (c->count >= c->cap || c->receivers.head || c->closed ||
        !copy_small(c->tail, item, c->item_size))
        return 0;
    c->tail = ring_next(c, c->tail);
    c->count++;
    return 1;
}

/* The common case of weft_chan_recv, the mirror of put_at_once: an item buffered and nobody
 * waiting to send. */
static inline int take_at_once(weft_chan *c, void *item)
{
    if (c->count == 0 || c->senders.head || !copy_small(item, c->head, c->item_size))
        return 0;
    c->head = ring_next(c, c->head);
    c->count--;
    return 1;
}

/* weft_chan_send and weft_chan_recv do the common case (put_at_once, take_at_once) in a few
 * loads and stores under the lock and with no frame of their own; with the lock held they hand
 * any other case (a waiter to hand over to, a wait) to one_clause_locked, and before it chaos
 * mode and any doubt about a cancel to one_clause. */
int weft_chan_send(weft_chan *c, const void *item)
{
    weft__task *t = task_here();
    if (__builtin_expect(!t || !c || !item, 0))
        return t ? -EINVAL : -EPERM;
    if (__builtin_expect(no_chaos_no_cancel(t), 1)) {
        weft__lock_acquire(&c->lock);
        if (__builtin_expect(put_at_once(c, item), 1)) {
            weft__lock_release(&c->lock);
            return 0;
        }
        return one_clause_locked(c, WEFT_SELECT_SEND, (void *)item, t);
    }
    return one_clause(c, WEFT_SELECT_SEND, (void *)item, t);
}

int weft_chan_recv(weft_chan *c, void *item)
{
    weft__task *t = task_here();
    if (__builtin_expect(!t || !c || !item, 0))
        return t ? -EINVAL : -EPERM;
    if (__builtin_expect(no_chaos_no_cancel(t), 1)) {
        weft__lock_acquire(&c->lock);
        if (__builtin_expect(take_at_once(c, item), 1)) {
            weft__lock_release(&c->lock);
            return 0;
        }
        return one_clause_locked(c, WEFT_SELECT_RECV, item, t);
    }
    return one_clause(c, WEFT_SELECT_RECV, item, t);
}

int weft_chan_try_send(weft_chan *c, const void *item)
{
    if (!c || !item)
        return -EINVAL;
    weft__lock_acquire(&c->lock);
    int rc = send_now(c, item, NULL);
    weft__lock_release(&c->lock);
    return rc;
}

int weft_chan_try_recv(weft_chan *c, void *item)
{
    if (!c || !item)
        return -EINVAL;
    weft__lock_acquire(&c->lock);
    int rc = recv_now(c, item, NULL);
    weft__lock_release(&c->lock);
    return rc;
}

int weft_chan_close(weft_chan *c)
{
    if (!c)
        return -EINVAL;
    weft__lock_acquire(&c->lock);
    if (c->closed) {
        weft__lock_release(&c->lock);
        return -EALREADY;
    }
    c->closed = 1;
    /* Waiting senders' items are not delivered; waiting receivers wait on an empty channel. */
    chan_waiter *w;
    while ((w = claim(&c->senders, NULL)))
        done(c, w, -EPIPE);
    while ((w = claim(&c->receivers, NULL)))
        done(c, w, -EPIPE);
    weft__lock_release(&c->lock);
    return 0;
}

size_t weft_chan_len(const weft_chan *c)
{
    if (!c)
        return 0;
    weft__lock_acquire((weft__lock *)&c->lock);
    size_t n = c->count;
    weft__lock_release((weft__lock *)&c->lock);
    return n;
}
