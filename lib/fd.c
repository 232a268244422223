// SPDX-License-Identifier: MIT
/* Descriptor records and the waits on them; see fd.h. */
#include "fd.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "alloc.h"
#include "scope.h"
#include "wait.h"

/* Records come in chunks of CHUNK, made at the first wait on a descriptor of the chunk. The
 * table covers the kernel's default ceiling on descriptors (nr_open). */
#define CHUNK_BITS 10
#define CHUNK ((unsigned)1 << CHUNK_BITS)
#define MAX_FDS ((unsigned)1 << 20)

static weft__fd_rec *_Atomic chunks[MAX_FDS / CHUNK];

static weft__fd_rec *rec_of(int fd)
{
    if (fd < 0 || (unsigned)fd >= MAX_FDS)
        return NULL;
    weft__fd_rec *c =
        atomic_load_explicit(&chunks[(unsigned)fd >> CHUNK_BITS], memory_order_acquire);
    return c ? &c[(unsigned)fd & (CHUNK - 1)] : NULL;
}

/* The record of `fd`, made if need be; NULL when out of memory. `fd` is in range. */
static weft__fd_rec *rec_make(int fd)
{
    weft__fd_rec *r = rec_of(fd);
    if (r)
        return r;
    /* Zeroed memory is a record at rest: an unlocked lock, no poller, no waiter. */
    weft__fd_rec *c = weft__alloc_aligned(_Alignof(weft__fd_rec), CHUNK * sizeof(*c));
    if (!c)
        return NULL;
    memset(c, 0, CHUNK * sizeof(*c));
    weft__fd_rec *none = NULL;
    if (!atomic_compare_exchange_strong_explicit(&chunks[(unsigned)fd >> CHUNK_BITS], &none, c,
                                                 memory_order_acq_rel, memory_order_acquire))
        free(c); /* another thread made it first */
    return rec_of(fd);
}

static void fill_mark(weft__fd_rec *r, int dir, weft__fd_mark *m)
{
    m->rec = r;
    m->gen = __atomic_load_n(&r->gen, __ATOMIC_ACQUIRE);
    m->seq = atomic_load_explicit(&r->seq[dir], memory_order_acquire);
}

void weft__fd_watch(int fd, int dir, weft__fd_mark *m)
{
    weft__fd_rec *r = rec_of(fd);
    if (!r || !__atomic_load_n(&r->poller, __ATOMIC_ACQUIRE)) {
        m->rec = NULL;
        return;
    }
    fill_mark(r, dir, m);
}

int weft__fd_register(int fd, int dir, weft__fd_mark *m)
{
    weft__task *t = weft__task_self();
    weft__poller *p = &t->rt->poller;
    if (fd < 0 || (unsigned)fd >= MAX_FDS)
        return -EBADF;
    weft__fd_rec *r = rec_make(fd);
    if (!r)
        return -ENOMEM;
    weft__poller *had;
    uint32_t gen;
    /* While a weft_close of the number is under way, the file it names may be the one whose
     * close(2) has yet to come, and whose registration would leave the epoll set with it: wait
     * for the close to end. The number then names no file (-EBADF below) or a new one. A close
     * that begins after this look moves `gen` on, which the look under the lock below sees. */
    for (unsigned round = 0;;) {
        weft__lock_acquire(&r->lock);
        had = r->poller;
        gen = r->gen;
        uint32_t closing = r->closing;
        weft__lock_release(&r->lock);
        if (!closing)
            break;
        if (!weft__sched_yield())
            weft__lock_backoff(&round);
    }
    if (had == p) {
        fill_mark(r, dir, m);
        return 0;
    }
    if (had)
        return -EINVAL; /* a task of another runtime waits on it */
    /* Edge-triggered, both directions, once: the set reports what is ready already when the
     * descriptor is added, so no edge before the registration is missed either. EPOLLPRI for
     * urgent data, which ends the short-read notes (fd.h). */
    struct epoll_event ev = {.events = EPOLLIN | EPOLLPRI | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                             .data.u64 = (uint64_t)gen << 32 | (uint32_t)fd};
    int rc = 0, wake = 0;
    if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        if (errno != EEXIST)
            return -errno;
        /* Already in the set: registered by another task a moment ago, or left there under an
         * older generation by a close that raced a registration, with the number reused since.
         * The current data word, or every event of the new file would be dropped as stale; and
         * only while `gen` is still current, under the lock, or a registration that lost a race
         * with a close would put its stale word over the word of the file now there. (A
         * repeated word only costs an extra edge: a caller tries again.) */
        weft__lock_acquire(&r->lock);
        if (r->gen != gen)
            rc = -EBADF;
        else if (r->poller && r->poller != p)
            rc = -EINVAL;
        else if (epoll_ctl(p->epfd, EPOLL_CTL_MOD, fd, &ev) != 0)
            rc = -errno;
        weft__lock_release(&r->lock);
        if (rc)
            return rc;
    }
    weft__lock_acquire(&r->lock);
    if (r->gen != gen) {
        rc = -EBADF; /* closed meanwhile */
    } else if (r->poller && r->poller != p) {
        rc = -EINVAL; /* another runtime registered it first: leave it to that one */
    } else if (!r->poller) {
        __atomic_store_n(&r->poller, p, __ATOMIC_RELEASE);
        wake = weft__poll_added(p);
    }
    if (rc == 0)
        fill_mark(r, dir, m);
    weft__lock_release(&r->lock);
    /* Out of this set again, so that its poller never hands the other runtime's waiters to this
     * one's workers (weft__fd_ready also checks). */
    if (rc == -EINVAL)
        epoll_ctl(p->epfd, EPOLL_CTL_DEL, fd, NULL);
    /* The first descriptor, while a worker sleeps with nothing to watch: it comes to watch it. */
    if (wake)
        weft__sched_wake_one(t->rt);
    return rc;
}

int weft__fd_ours(const weft__fd_rec *r, const weft__task *t)
{
    return __atomic_load_n(&r->poller, __ATOMIC_ACQUIRE) == &t->rt->poller;
}

int weft__fd_still_ours(const weft__fd_mark *m, int n, const weft__task *t)
{
    weft__fd_rec *r = m[0].rec;
    weft__poller *p = __atomic_load_n(&r->poller, __ATOMIC_ACQUIRE);
    uint32_t gen = __atomic_load_n(&r->gen, __ATOMIC_ACQUIRE);
    for (int i = 0; i < n; i++)
        if (m[i].gen != gen)
            return -EBADF;
    if (!p)
        return -EBADF;
    return p == &t->rt->poller ? 0 : -EINVAL;
}

/* Takes `t` off the slots of `dirs` it still holds. Under the record's lock. */
static void unlist(weft__fd_rec *r, weft__task *t, int dirs)
{
    for (int d = 0; d < 2; d++)
        if ((dirs & (1 << d)) && r->waiter[d] == t)
            r->waiter[d] = NULL;
}

int weft__fd_park(weft__task *t, int dirs, const weft__fd_mark *m, weft_time deadline)
{
    weft__fd_rec *r = m[0].rec;
    weft_scope *cs = t->cancel_scope;
    int code = weft__scope_cancel_code(cs);
    if (code)
        return code;
    weft__lock_acquire(&r->lock);
    if (r->gen != m[0].gen || !r->poller) {
        weft__lock_release(&r->lock);
        return -EBADF;
    }
    if (r->poller != &t->rt->poller) {
        /* Registered by a task of another runtime: its workers would hand this task the
         * readiness, onto their own queues. Refused, as weft__fd_register refuses it. */
        weft__lock_release(&r->lock);
        return -EINVAL;
    }
    for (int d = 0, i = 0; d < 2; d++) {
        if (!(dirs & (1 << d)))
            continue;
        if (atomic_load_explicit(&r->seq[d], memory_order_relaxed) != m[i++].seq) {
            weft__lock_release(&r->lock);
            return 0; /* an edge came since the caller looked: it tries again */
        }
        if (r->waiter[d]) {
            weft__lock_release(&r->lock);
            return -EBUSY;
        }
    }
    weft__wait_prepare(t);
    t->result = 0;
    for (int d = 0; d < 2; d++)
        if (dirs & (1 << d))
            r->waiter[d] = t;
    weft__lock_release(&r->lock);

    int why = weft__wait_park(t, cs, deadline);
    if (why == WEFT__WOKEN)
        /* The edge (or close) that woke it took it off every slot under the lock and handed the
         * result over before the wake, which the park word orders before this read: nothing
         * is left to undo, and the record's line may stay where the poller left it. */
        return t->result;

    weft__lock_acquire(&r->lock);
    unlist(r, t, dirs);
    weft__lock_release(&r->lock);
    return weft__wait_end(why, cs);
}

/* The number may name another file next: what short reads said of this one goes. Under the
 * record's lock, with `gen` moved on. */
static void forget_short_reads(weft__fd_rec *r)
{
    atomic_store_explicit(&r->dry, 0, memory_order_relaxed);
    atomic_store_explicit(&r->drains, WEFT__FD_DRAINS_UNKNOWN, memory_order_relaxed);
}

/* Whether a short read of `fd` means that its receive queue is empty: on a TCP socket, the
 * kernel's receive loop ends early only with the queue (and the backlog) empty, or at an urgent
 * mark (which EPOLLPRI reports, weft__fd_ready). Not on a datagram socket (one datagram per
 * read), a Unix stream socket (a read stops where passed descriptors or credentials change), a
 * pipe or a terminal: those keep the try. */
static int drains_of(int fd)
{
    int proto = 0;
    socklen_t len = sizeof proto;
    if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len) != 0)
        return WEFT__FD_DRAINS_NO;
    return proto == IPPROTO_TCP ? WEFT__FD_DRAINS_YES : WEFT__FD_DRAINS_NO;
}

void weft__fd_note_short_read(int fd, const weft__fd_mark *m)
{
    weft__fd_rec *r = m->rec;
    int drains = atomic_load_explicit(&r->drains, memory_order_relaxed);
    if (drains == WEFT__FD_DRAINS_UNKNOWN) {
        drains = drains_of(fd);
        /* Kept only for the file it was asked of, and never over urgent data's NO. */
        weft__lock_acquire(&r->lock);
        if (r->gen == m->gen &&
            atomic_load_explicit(&r->drains, memory_order_relaxed) == WEFT__FD_DRAINS_UNKNOWN)
            atomic_store_explicit(&r->drains, (uint8_t)drains, memory_order_relaxed);
        drains = atomic_load_explicit(&r->drains, memory_order_relaxed);
        weft__lock_release(&r->lock);
    }
    /* A note under a stale count (an edge came, or a close moved the counts on) never matches
     * a mark taken later, so it needs no lock: a later edge always moves the count. */
    if (drains == WEFT__FD_DRAINS_YES)
        atomic_store_explicit(&r->dry, (uint64_t)1 << 32 | m->seq, memory_order_relaxed);
}

int weft__fd_note_urgent(int fd)
{
    if (fd < 0 || (unsigned)fd >= MAX_FDS)
        return 0; /* no such descriptor: the read itself says EBADF */
    weft__fd_rec *r = rec_make(fd);
    if (!r)
        return -ENOMEM;
    weft__lock_acquire(&r->lock);
    atomic_store_explicit(&r->drains, WEFT__FD_DRAINS_NO, memory_order_relaxed);
    weft__lock_release(&r->lock);
    return 0;
}

/* An edge in direction `dir`: counted, and the waiter there (if any) woken into `b`. Under the
 * record's lock. The waker wins only if no cancel or timer got to the task first; either way
 * the slot is free again and the count tells the next caller. */
static int edge(weft__fd_rec *r, int dir, int result, weft__ready_batch *b)
{
    atomic_store_explicit(&r->seq[dir],
                          atomic_load_explicit(&r->seq[dir], memory_order_relaxed) + 1,
                          memory_order_release);
    weft__task *w = r->waiter[dir];
    if (!w)
        return 0;
    r->waiter[dir] = NULL;
    if (r->waiter[!dir] == w)
        r->waiter[!dir] = NULL; /* it waited for both: one wake is all it gets */
    w->result = result;         /* read by the waiter once its park returns woken by us */
    if (b)
        return weft__sched_wake_into(w, WEFT__WOKEN, b);
    return weft__sched_wake(w, WEFT__WOKEN);
}

int weft__fd_ready(weft__poller *p, uint64_t data, uint32_t events, weft__ready_batch *b)
{
    int fd = (int)(uint32_t)data;
    uint32_t gen = (uint32_t)(data >> 32);
    weft__fd_rec *r = rec_of(fd);
    if (!r)
        return 0;
    int woken = 0;
    weft__lock_acquire(&r->lock);
    /* Only this poller's own registration: one that lost the descriptor to another runtime is
     * in its set for a moment (weft__fd_register), and its workers must not run the other
     * runtime's tasks. */
    if (r->gen == gen && r->poller == p) {
        /* A TCP read stops short of urgent data, with data left behind it; after the peer's
         * end of stream or an error, a read finds that at once, with no edge to come: from now
         * on a short read says nothing. Set before the edge, which a reader's mark orders
         * after it. */
        if (events & (EPOLLPRI | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            atomic_store_explicit(&r->drains, WEFT__FD_DRAINS_NO, memory_order_relaxed);
        /* EPOLLRDHUP only: the read side is shut for good. Not EPOLLHUP, which a TCP socket
         * reports before it is connected too, nor an error, which a datagram socket reads once
         * before more datagrams. */
        if (events & EPOLLRDHUP)
            atomic_store_explicit(&r->shut, gen + 1, memory_order_release);
        /* A hang-up or an error ends both directions' waits: the call itself then says what. */
        if (events & (EPOLLIN | EPOLLPRI | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            woken += edge(r, WEFT__FD_READ, 0, b);
        if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
            woken += edge(r, WEFT__FD_WRITE, 0, b);
    }
    weft__lock_release(&r->lock);
    return woken;
}

int weft__fd_close_begin(int fd)
{
    /* Made if need be: a first registration may race this close too. Without memory, a close
     * of a number no task has registered, like any other. */
    weft__fd_rec *r = fd >= 0 && (unsigned)fd < MAX_FDS ? rec_make(fd) : NULL;
    if (!r)
        return 0;
    weft__lock_acquire(&r->lock);
    r->closing++;
    weft__poller *p = r->poller;
    __atomic_store_n(&r->gen, r->gen + 1, __ATOMIC_RELEASE);
    forget_short_reads(r);
    int woken = 0;
    for (int d = 0; d < 2; d++)
        woken += edge(r, d, -EBADF, NULL);
    /* Under the lock, with the record still naming the poller: a runtime that shuts down meanwhile
     * takes this lock in weft__fd_forget_poller before it closes its set and frees the poller, so
     * `p` outlives its use here. (Released first, a plain thread's weft_close wrote to a freed
     * runtime.) */
    if (p) {
        epoll_ctl(p->epfd, EPOLL_CTL_DEL, fd, NULL);
        atomic_fetch_sub_explicit(&p->fds, 1, memory_order_relaxed);
    }
    __atomic_store_n(&r->poller, NULL, __ATOMIC_RELEASE);
    weft__lock_release(&r->lock);
    return woken;
}

void weft__fd_close_end(int fd)
{
    weft__fd_rec *r = rec_of(fd);
    if (!r)
        return;
    weft__lock_acquire(&r->lock);
    r->closing--;
    weft__lock_release(&r->lock);
}

void weft__fd_forget_poller(weft__poller *p)
{
    for (unsigned c = 0; c < MAX_FDS / CHUNK; c++) {
        weft__fd_rec *chunk = atomic_load_explicit(&chunks[c], memory_order_acquire);
        if (!chunk)
            continue;
        for (unsigned i = 0; i < CHUNK; i++) {
            weft__fd_rec *r = &chunk[i];
            if (__atomic_load_n(&r->poller, __ATOMIC_ACQUIRE) != p)
                continue;
            weft__lock_acquire(&r->lock);
            if (r->poller == p) {
                __atomic_store_n(&r->gen, r->gen + 1, __ATOMIC_RELEASE);
                forget_short_reads(r);
                __atomic_store_n(&r->poller, NULL, __ATOMIC_RELEASE);
            }
            weft__lock_release(&r->lock);
        }
    }
}
