// SPDX-License-Identifier: MIT
/*
 * A connection's life on the ring in the io_uring peers (uring_echo.c, uring_http.c), written
 * once: accepting it, its completions, closing it once no completion is still to come, and
 * (io_uring's own receives) feeding the connections whose recv ran out of buffers. Included
 * after the peer has defined UP_NAME, its `conn` (fd, refs, closing, prev/next, and under
 * io_uring's own receives sending, starved, snext and a `q` of received buffers) and `worker`,
 * and its own steps:
 *   conn_new()               a connection with those fields zero, or NULL;
 *   conn_run(c)              (URING_POLL) serve it as far as it goes without waiting, -1 to close;
 *   conn_received(w, c)      a buffer joined c->q: serve what it can;
 *   conn_sent(w, c, n)       n more bytes of the send in flight were written;
 * and, where those steps close a connection, a declaration of conn_end.
 */
#ifndef UP_NAME
#error "define UP_NAME before including uring_conn.h"
#endif

static void conn_unref(worker *w, conn *c)
{
    if (--c->refs > 0 || !c->closing)
        return;
    c->prev->next = c->next;
    c->next->prev = c->prev;
#ifndef URING_POLL
    while (c->q.head >= 0)
        up_recycle(&w->u, up_fifo_pop(&w->u, &c->q));
#else
    (void)w;
#endif
    close(c->fd);
    free(c);
}

#ifdef URING_POLL

/* The poll is removed; its last completion (without F_MORE) drops the reference. */
static void conn_end(worker *w, conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    struct io_uring_sqe *sqe = up_sqe(&w->u);
    io_uring_prep_poll_remove(sqe, (uint64_t)(uintptr_t)c | UP_POLL);
    io_uring_sqe_set_data64(sqe, UP_IGNORE);
}

static void on_conn(worker *w, conn *c, unsigned tag, struct io_uring_cqe *cqe)
{
    (void)tag;
    int last = !(cqe->flags & IORING_CQE_F_MORE);
    if (!c->closing && cqe->res >= 0 && conn_run(c) < 0)
        conn_end(w, c);
    if (last) {
        if (!c->closing) /* ended on its own (an overflowing queue): arm it again */
            up_poll(&w->u, c->fd, (uint64_t)(uintptr_t)c | UP_POLL);
        else
            conn_unref(w, c);
    }
}

static void on_accept(worker *w)
{
    for (;;) {
        int fd = accept4(w->u.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN)
                perror(UP_NAME ": accept4");
            return;
        }
        io_nodelay(fd);
        conn *c = conn_new();
        if (c == NULL) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->refs = 1;
        c->next = w->head.next;
        c->prev = &w->head;
        c->next->prev = c;
        w->head.next = c;
        if (conn_run(c) < 0)
            c->closing = 1;
        if (c->closing) {
            conn_unref(w, c);
            continue;
        }
        up_poll(&w->u, fd, (uint64_t)(uintptr_t)c | UP_POLL);
    }
}

#else

/* Shutting the socket down ends its recv (0 bytes) and any send in flight: their completions
 * bring refs to 0, and only then is the descriptor closed and the connection freed. */
static void conn_end(worker *w, conn *c)
{
    (void)w;
    if (c->closing)
        return;
    c->closing = 1;
    shutdown(c->fd, SHUT_RDWR);
}

static void on_conn(worker *w, conn *c, unsigned tag, struct io_uring_cqe *cqe)
{
    int res = cqe->res;
    if (tag == UP_RECV) {
        int last = !(cqe->flags & IORING_CQE_F_MORE);
        if (res > 0) {
            int bid = (int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
            w->u.len[bid] = (unsigned)res;
            if (c->closing)
                up_recycle(&w->u, bid);
            else
                up_fifo_push(&w->u, &c->q, bid);
            conn_received(w, c);
        } else if (res == -ENOBUFS && !c->closing) {
            c->starved = 1;
            c->snext = w->starved;
            w->starved = c;
            c->refs++;
        } else {
            conn_end(w, c);
        }
        if (last) {
            if (res > 0 && !c->closing)
                up_recv(&w->u, c->fd, (uint64_t)(uintptr_t)c | UP_RECV);
            else
                conn_unref(w, c);
        }
        return;
    }
    /* UP_SEND */
    c->sending = 0;
    if (res < 0) {
        conn_end(w, c);
    } else {
        conn_sent(w, c, (size_t)res);
    }
    conn_unref(w, c);
}

static void on_accepted(worker *w, int fd)
{
    io_nodelay(fd);
    conn *c = conn_new();
    if (c == NULL) {
        close(fd);
        return;
    }
    c->fd = fd;
    c->refs = 1;
    c->q.head = c->q.tail = -1;
    c->next = w->head.next;
    c->prev = &w->head;
    c->next->prev = c;
    w->head.next = c;
    up_recv(&w->u, fd, (uint64_t)(uintptr_t)c | UP_RECV);
}

/* Buffers came back to the ring: the connections whose recv ran dry receive again. */
static void feed_starved(worker *w)
{
    while (w->starved != NULL) {
        conn *c = w->starved;
        w->starved = c->snext;
        c->starved = 0;
        if (!c->closing) {
            c->refs++;
            up_recv(&w->u, c->fd, (uint64_t)(uintptr_t)c | UP_RECV);
        }
        conn_unref(w, c);
    }
}

#endif
