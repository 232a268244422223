// SPDX-License-Identifier: MIT
/*
 * uring_echo [--port P] [--threads T] — the echo workload of benchmarks/README.md served by a
 * hand-written C server on io_uring (liburing), the way io_uring serves best: T threads, each
 * with its own listening socket on the same port (SO_REUSEPORT) and its own ring (single issuer,
 * task work deferred to the wait), one multishot accept per ring, one multishot recv per
 * connection into a ring of provided buffers, sends queued on the ring, and every submission
 * and wait of a loop round in one io_uring_enter. A connection sends back every buffer it
 * received, in order, one send in flight at a time; the buffer returns to the ring once written.
 *
 * Built with -DURING_POLL (uring_poll_echo): io_uring only as the readiness notifier, a multishot
 * poll per socket and plain read/send, the shape of epoll_echo with the ring in epoll's place.
 *
 * Prints port=P once it listens. SIGINT or SIGTERM: every thread closes its connections and
 * returns, and the process exits 0.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "../io_common.h"
#include "uring_peer.h"

typedef struct conn {
    int fd;
    int refs;    /* completions still to come: the recv (or poll), a send, the starved list */
    int closing; /* shut down: waits for refs to reach 0 */
    struct conn *prev, *next;
#ifdef URING_POLL
    size_t off, len; /* bytes read and not yet written back: buf[off, len) */
    char buf[16384];
#else
    int sending; /* a send of the first queued buffer is in flight */
    int starved; /* its recv ended for lack of buffers: on the worker's starved list */
    struct conn *snext;
    size_t off; /* bytes of the first queued buffer already written */
    up_fifo q;  /* buffers received and not yet written back */
#endif
} conn;

typedef struct worker {
    up_ring u;
    conn head; /* the worker's connections, to close them at the end */
#ifndef URING_POLL
    conn *starved;
#endif
} worker;

static conn *conn_new(void)
{
    return calloc(1, sizeof(conn));
}

#ifdef URING_POLL

/* The connection as far as it goes without waiting (io_common.h). Returns -1 to close. */
static int conn_run(conn *c)
{
    return echo_run_ready(c->fd, c->buf, sizeof c->buf, &c->off, &c->len);
}

#else

/* Sends the first received buffer not yet written back, unless a send is in flight. */
static void send_next(worker *w, conn *c)
{
    if (c->sending || c->closing || c->q.head < 0)
        return;
    int bid = c->q.head;
    struct io_uring_sqe *sqe = up_sqe(&w->u);
    io_uring_prep_send(sqe, c->fd, up_buf(&w->u, bid) + c->off, w->u.len[bid] - c->off,
                       MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | UP_SEND);
    c->sending = 1;
    c->refs++;
}

static void conn_received(worker *w, conn *c)
{
    send_next(w, c);
}

/* A buffer written back whole returns to the ring. */
static void conn_sent(worker *w, conn *c, size_t n)
{
    c->off += n;
    if (c->off == w->u.len[c->q.head]) {
        up_recycle(&w->u, up_fifo_pop(&w->u, &c->q));
        c->off = 0;
    }
    send_next(w, c);
}

#endif

#define UP_NAME "uring_echo"
#include "uring_conn.h"
#include "uring_loop.h"
