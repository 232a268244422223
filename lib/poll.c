// SPDX-License-Identifier: MIT
/* The runtime's poller; see poll.h. */
#include "poll.h"

#include <errno.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "fd.h"
#include "sched.h"

/* The epoll data word of the eventfd: no descriptor record has it (see fd.h). */
#define INTERRUPT_TAG UINT64_MAX
/* Events taken per epoll_wait. More ready descriptors are found by the next call. */
#define EVENTS_PER_CALL 128

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
        woken += weft__fd_ready(ev[i].data.u64, ev[i].events, &batch);
    }
    if (batch.head) {
        weft__worker *w = weft__sched_worker();
        weft__sched_ready_batch(w->rt, &batch);
    }
    return woken;
}

void weft__poll_wait(weft__poller *p, weft_time deadline)
{
    struct epoll_event ev[EVENTS_PER_CALL];
    struct timespec ts, *tp = NULL;
    if (deadline != WEFT_NEVER) {
        weft_time left = deadline - weft_now();
        if (left < 0)
            left = 0;
        ts.tv_sec = left / WEFT_SEC;
        ts.tv_nsec = left % WEFT_SEC;
        tp = &ts;
    }
    int n = epoll_pwait2(p->epfd, ev, EVENTS_PER_CALL, tp, NULL);
    if (n > 0)
        dispatch(p, ev, n);
}

int weft__poll_now(weft__poller *p)
{
    struct epoll_event ev[EVENTS_PER_CALL];
    int n = epoll_wait(p->epfd, ev, EVENTS_PER_CALL, 0);
    return n > 0 ? dispatch(p, ev, n) : 0;
}

void weft__poll_interrupt(weft__poller *p)
{
    uint64_t one = 1;
    /* Fails only when the counter is full, which already wakes the holder. */
    ssize_t r = write(p->evfd, &one, sizeof(one));
    (void)r;
}
