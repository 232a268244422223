// SPDX-License-Identifier: MIT
/* The runtime's poller; see poll.h. */
#include "poll.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "fd.h"
#include "sched.h"
#include "scope.h"

/* The epoll data word of the eventfd: no descriptor record has it (see fd.h). */
#define INTERRUPT_TAG UINT64_MAX

/*
 * How much readiness a look takes. The kernel touched each descriptor's socket as it reported
 * it, and the task that will serve it is cold; queued behind hundreds of others (a busy worker
 * used to look every few dozen picks and take 128 at a time, so that with a thousand busy
 * connections its ready queue held hundreds), both were cold again by the time it ran, and
 * every request paid for the socket's, the record's and the stack's lines from far away.
 * Readiness left in the kernel costs nothing until it is taken: so a look takes what brings
 * the worker's ready queue up to READY_TARGET, and at least EVENTS_MIN, so that descriptors
 * keep their share of a worker whose queue never empties.
 */
#define READY_TARGET 64
#define EVENTS_MIN 16

int weft__poll_init(weft__poller *p)
{
    p->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (p->epfd < 0)
        return -errno;
    p->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (p->evfd < 0) {
        int rc = -errno;
        close(p->epfd);
        return rc;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.u64 = INTERRUPT_TAG};
    if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->evfd, &ev) != 0) {
        int rc = -errno;
        close(p->evfd);
        close(p->epfd);
        return rc;
    }
    atomic_init(&p->held, 0);
    atomic_init(&p->fds, 0);
    atomic_init(&p->wanted, 0);
    return 0;
}

void weft__poll_destroy(weft__poller *p)
{
    weft__fd_forget_poller(p);
    close(p->evfd);
    close(p->epfd);
}

int weft__poll_take(weft__poller *p)
{
    int free_ = 0;
    return atomic_load_explicit(&p->held, memory_order_relaxed) == 0 &&
           atomic_compare_exchange_strong_explicit(&p->held, &free_, 1, memory_order_acquire,
                                                   memory_order_relaxed);
}

/* The release and the sleeper's wish (weft__poll_take_or_want) are a store-load pair each way,
 * sequentially consistent: a release that does not see the wish came before the sleeper's second
 * look at `held`, which then finds the poller free. Likewise the first registration with the
 * sleeper's look at `fds`. */
int weft__poll_release(weft__poller *p)
{
    atomic_store_explicit(&p->held, 0, memory_order_seq_cst);
    return atomic_load_explicit(&p->wanted, memory_order_seq_cst) &&
           atomic_exchange_explicit(&p->wanted, 0, memory_order_seq_cst);
}

int weft__poll_take_or_want(weft__poller *p)
{
    if (weft__poll_active(p) && weft__poll_take(p))
        return 1;
    atomic_store_explicit(&p->wanted, 1, memory_order_seq_cst);
    int free_ = 0;
    return atomic_load_explicit(&p->fds, memory_order_seq_cst) != 0 &&
           atomic_compare_exchange_strong_explicit(&p->held, &free_, 1, memory_order_seq_cst,
                                                   memory_order_seq_cst);
}

int weft__poll_added(weft__poller *p)
{
    return atomic_fetch_add_explicit(&p->fds, 1, memory_order_seq_cst) == 0 &&
           atomic_exchange_explicit(&p->wanted, 0, memory_order_seq_cst);
}

/* The events a look by the calling worker takes (see READY_TARGET). */
static int events_wanted(void)
{
    weft__worker *w = weft__sched_worker();
    int64_t want = READY_TARGET - weft__deque_size_estimate(&w->readyq);
    return want < EVENTS_MIN ? EVENTS_MIN : want > READY_TARGET ? READY_TARGET : (int)want;
}

/*
 * What a task woken by readiness touches first when it runs again: its record, the frames of
 * its park above the saved stack pointer (the switch, the park, the wait, the I/O call and the
 * caller's loop), the lines of its scope that the end of the wait takes (the cancel check, the
 * parked list's lock and count), and its neighbours on that list, which the unlisting writes.
 * With a thousand connections each of them last ran a thousand requests ago; the resume waited
 * for each line in turn. The poller knows the batch before the first of them runs: asked for
 * now, into the second-level cache, the lines arrive while the tasks ahead run (a short way
 * ahead: READY_TARGET).
 */
#define PREFETCH_RECORD_BYTES 256
#define PREFETCH_STACK_BYTES 768

static void prefetch_batch(const weft__ready_batch *b)
{
#ifndef WEFT_TSAN /* hints only, read racily: TSan cannot see the switch that saved the pointer */
    for (weft__task *t = b->head; t; t = t->next) {
        for (int i = 0; i < PREFETCH_RECORD_BYTES; i += 64)
            __builtin_prefetch((char *)t + i, 1, 2);
        /* Runnable in a batch means parked for good: its context is saved, its host fixed. */
        weft__task *host = t->host;
        char *sp = host ? host->ctx.sp : NULL;
        if (sp)
            for (int i = 0; i < PREFETCH_STACK_BYTES; i += 64)
                __builtin_prefetch(sp + i, 1, 2);
        char *cs = (char *)t->cancel_scope;
        if (cs) {
            __builtin_prefetch(cs + offsetof(weft_scope, cancel_code), 1, 2);
            __builtin_prefetch(cs + offsetof(weft_scope, lock), 1, 2);
            __builtin_prefetch(cs + offsetof(weft_scope, park_count), 1, 2);
        }
        /* A stale neighbour is still a record (they are never unmapped): a wasted prefetch. */
        weft__task *next = __atomic_load_n(&t->pnext, __ATOMIC_RELAXED);
        weft__task *prev = __atomic_load_n(&t->pprev, __ATOMIC_RELAXED);
        if (next)
            __builtin_prefetch(&next->pprev, 1, 2);
        if (prev)
            __builtin_prefetch(&prev->pnext, 1, 2);
    }
#else
    (void)b;
#endif
}

/* Hands the events to the descriptors' records; returns the tasks made runnable. */
static int dispatch(weft__poller *p, struct epoll_event *ev, int n)
{
    weft__ready_batch batch = {0};
    int woken = 0;
    for (int i = 0; i < n; i++) {
        if (ev[i].data.u64 == INTERRUPT_TAG) {
            uint64_t count;
            while (read(p->evfd, &count, sizeof(count)) > 0) /* drained for the next edge */
                ;
            continue;
        }
        woken += weft__fd_ready(p, ev[i].data.u64, ev[i].events, &batch);
    }
    if (batch.head) {
        prefetch_batch(&batch);
        weft__worker *w = weft__sched_worker();
        weft__sched_ready_batch(w->rt, &batch);
    }
    return woken;
}

/* epoll_pwait2 (Linux 5.11) refused: a kernel without it, or a sandbox's filter that predates
 * it (ENOSYS, EPERM). Every wait then takes epoll_wait, whose timeout is in milliseconds: an
 * idle worker whose wait failed at once would look for work and wait again, spinning a CPU. */
static _Atomic int pwait2_missing;

/* epoll_wait's timeout for `left` nanoseconds: rounded up, so that a wait never ends before its
 * deadline and comes back to wait for the rest of a millisecond at a time. */
static int timeout_ms(weft_time left)
{
    weft_time ms = (left + WEFT_MSEC - 1) / WEFT_MSEC;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

void weft__poll_wait(weft__poller *p, weft_time deadline)
{
    struct epoll_event ev[READY_TARGET];
    struct timespec ts, *tp = NULL;
    weft_time left = 0;
    if (deadline != WEFT_NEVER) {
        left = deadline - weft_now();
        if (left < 0)
            left = 0;
        ts.tv_sec = left / WEFT_SEC;
        ts.tv_nsec = left % WEFT_SEC;
        tp = &ts;
    }
    int n = -1;
    if (!atomic_load_explicit(&pwait2_missing, memory_order_relaxed)) {
        n = epoll_pwait2(p->epfd, ev, events_wanted(), tp, NULL);
        if (n < 0 && (errno == ENOSYS || errno == EPERM))
            atomic_store_explicit(&pwait2_missing, 1, memory_order_relaxed);
    }
    if (atomic_load_explicit(&pwait2_missing, memory_order_relaxed))
        n = epoll_wait(p->epfd, ev, events_wanted(), tp ? timeout_ms(left) : -1);
    if (n > 0)
        dispatch(p, ev, n);
}

int weft__poll_now(weft__poller *p)
{
    struct epoll_event ev[READY_TARGET];
    int n = epoll_wait(p->epfd, ev, events_wanted(), 0);
    return n > 0 ? dispatch(p, ev, n) : 0;
}

void weft__poll_interrupt(weft__poller *p)
{
    uint64_t one = 1;
    /* Fails only when the counter is full, which already wakes the holder. */
    ssize_t r = write(p->evfd, &one, sizeof(one));
    (void)r;
}
