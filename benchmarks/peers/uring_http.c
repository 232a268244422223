// SPDX-License-Identifier: MIT
/*
 * uring_http [--port P] [--threads T] — the http workload of benchmarks/README.md served by a
 * hand-written C server on io_uring (liburing), the way io_uring serves best: T threads, each
 * with its own listening socket on the same port (SO_REUSEPORT) and its own ring (single issuer,
 * task work deferred to the wait), one multishot accept per ring, one multishot recv per
 * connection into a ring of provided buffers, sends queued on the ring, and every submission
 * and wait of a loop round in one io_uring_enter. It parses and answers with the same code as
 * epoll_http and weft_http (../io_common.h): what a recv brought is copied into the
 * connection's request buffer (the buffer goes back to the ring at once), every complete
 * request in it is answered, and the answers go out in one send; one send in flight at a time.
 *
 * Built with -DURING_POLL (uring_poll_http): io_uring only as the readiness notifier, a multishot
 * poll per socket and plain read/send, the shape of epoll_http with the ring in epoll's place.
 *
 * Prints port=P once it listens. SIGINT or SIGTERM: every thread closes its connections and
 * returns, and the process exits 0.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "../io_common.h"
#include "uring_peer.h"

#include <stddef.h>

typedef struct conn {
    int fd;
    int refs;    /* completions still to come: the recv (or poll), a send, the starved list */
    int closing; /* shut down: waits for refs to reach 0 */
    struct conn *prev, *next;
    size_t out_off; /* first byte of b.out not yet written */
#ifndef URING_POLL
    int sending; /* a send of b.out is in flight */
    int starved; /* its recv ended for lack of buffers: on the worker's starved list */
    struct conn *snext;
    size_t q_off; /* bytes of the first queued buffer already copied into b.in */
    up_fifo q;    /* buffers received and not yet copied into b.in */
#endif
    http_buf b;
} conn;

typedef struct worker {
    up_ring u;
    conn head; /* the worker's connections, to close them at the end */
#ifndef URING_POLL
    conn *starved;
#endif
} worker;

/* Zeroes the connection's fields, not its buffers (tens of KiB that need no clearing). */
static conn *conn_new(void)
{
    conn *c = malloc(sizeof *c);
    if (c == NULL)
        return NULL;
    memset(c, 0, offsetof(conn, b));
    c->b.closing = 0;
    c->b.in_len = c->b.out_len = 0;
    return c;
}

#ifdef URING_POLL

/* The connection as far as it goes without waiting (io_common.h). Returns -1 to close. */
static int conn_run(conn *c)
{
    return http_run_ready(c->fd, &c->b, &c->out_off);
}

#else

static void send_out(worker *w, conn *c)
{
    struct io_uring_sqe *sqe = up_sqe(&w->u);
    io_uring_prep_send(sqe, c->fd, c->b.out + c->out_off, c->b.out_len - c->out_off, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | UP_SEND);
    c->sending = 1;
    c->refs++;
}

static void conn_end(worker *w, conn *c);

/* Moves what the recvs brought into b.in, answers every complete request there and sends the
 * answers, while no send is in flight. A full b.in always holds a whole head or one too long,
 * which http_answer takes: there is room again after it. */
static void pump(worker *w, conn *c)
{
    while (!c->sending && !c->closing) {
        while (c->q.head >= 0 && c->b.in_len < sizeof c->b.in) {
            int bid = c->q.head;
            size_t n = w->u.len[bid] - c->q_off, room = sizeof c->b.in - c->b.in_len;
            if (n > room)
                n = room;
            memcpy(c->b.in + c->b.in_len, up_buf(&w->u, bid) + c->q_off, n);
            c->b.in_len += n;
            c->q_off += n;
            if (c->q_off == w->u.len[bid]) {
                up_recycle(&w->u, up_fifo_pop(&w->u, &c->q));
                c->q_off = 0;
            }
        }
        int more = http_answer(&c->b);
        if (c->b.out_len > 0) {
            send_out(w, c);
            return;
        }
        if (c->b.closing) {
            conn_end(w, c);
            return;
        }
        if (!more && c->q.head < 0)
            return;
    }
}

static void conn_received(worker *w, conn *c)
{
    pump(w, c);
}

/* The rest of the answers goes out; once all of them have, the next requests are answered. */
static void conn_sent(worker *w, conn *c, size_t n)
{
    c->out_off += n;
    if (c->out_off < c->b.out_len && !c->closing) {
        send_out(w, c);
    } else if (c->out_off == c->b.out_len) {
        c->out_off = c->b.out_len = 0;
        if (c->b.closing)
            conn_end(w, c);
        else
            pump(w, c);
    }
}

#endif

#define UP_NAME "uring_http"
#include "uring_conn.h"
#include "uring_loop.h"
