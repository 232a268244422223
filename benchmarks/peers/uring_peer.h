// SPDX-License-Identifier: MIT
/*
 * What the io_uring peers (uring_http.c, uring_echo.c) share: a ring per thread set up with the
 * flags that suit one thread serving its own sockets, the ring of provided buffers that
 * multishot recv reads into, the tags of a completion's user data, the stop eventfd, and
 * main's threads and signals. Built with -DURING_POLL, the ring only reports readiness (no
 * buffer ring, a multishot poll on the listener).
 *
 * Header-only (static functions): the peers are built outside CMake, by one compiler call each.
 */
#ifndef WEFT_URING_PEER_H
#define WEFT_URING_PEER_H

#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/mman.h>

/* The low bits of a completion's user data: what finished. Connections are at least 8-byte
 * aligned (calloc); the values from UP_IGNORE on carry no pointer. */
#define UP_TAGS 7u
#define UP_RECV 1u
#define UP_SEND 2u
#define UP_POLL 3u
#define UP_IGNORE 4u /* a poll removal's own completion */
#define UP_STOP 5u   /* the stop eventfd is readable */
#define UP_LISTEN 6u /* a connection accepted (or, polling only, the listener readable) */

/* Provided buffers per ring: enough for one in flight on each of a thousand connections with
 * room to spare (a recv that finds none ends with -ENOBUFS and is armed again once buffers
 * come back). A request or a message of the workloads fits one. */
#define UP_NBUF 4096
#define UP_BUFSZ 2048
#define UP_BGID 0

typedef struct up_fifo {
    int head, tail; /* buffer ids, linked through up_ring.next; -1: empty */
} up_fifo;

typedef struct up_ring {
    struct io_uring ring;
    int lfd;
#ifndef URING_POLL
    struct io_uring_buf_ring *br;
    char *bufs;
    unsigned recycled;     /* buffers added to br since it was last published */
    unsigned len[UP_NBUF]; /* bytes a recv put in each buffer */
    int next[UP_NBUF];     /* links of the per-connection queues */
#endif
} up_ring;

static int up_stop_fd; /* an eventfd that becomes readable, and stays so, to stop every loop */

static void up_die(const char *who, const char *what, int err)
{
    fprintf(stderr, "%s: %s: %s\n", who, what, strerror(err));
    exit(1);
}

/* An SQE, submitting what the ring holds first when it is full. */
static struct io_uring_sqe *up_sqe(up_ring *u)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    while (sqe == NULL) {
        io_uring_submit(&u->ring);
        sqe = io_uring_get_sqe(&u->ring);
    }
    return sqe;
}

#ifdef URING_POLL
static void up_poll(up_ring *u, int fd, uint64_t ud)
{
    struct io_uring_sqe *sqe = up_sqe(u);
    io_uring_prep_poll_multishot(sqe, fd, POLLIN | POLLOUT | POLLRDHUP);
    io_uring_sqe_set_data64(sqe, ud);
}
#endif

static void up_listen(up_ring *u)
{
#ifdef URING_POLL
    struct io_uring_sqe *sqe = up_sqe(u);
    io_uring_prep_poll_multishot(sqe, u->lfd, POLLIN);
#else
    struct io_uring_sqe *sqe = up_sqe(u);
    io_uring_prep_multishot_accept(sqe, u->lfd, NULL, NULL, SOCK_CLOEXEC);
#endif
    io_uring_sqe_set_data64(sqe, UP_LISTEN);
}

#ifndef URING_POLL
static char *up_buf(up_ring *u, int bid)
{
    return u->bufs + (size_t)bid * UP_BUFSZ;
}

/* Gives a buffer back to the kernel; it sees it at the next up_publish. */
static void up_recycle(up_ring *u, int bid)
{
    io_uring_buf_ring_add(u->br, up_buf(u, bid), UP_BUFSZ, (unsigned short)bid,
                          io_uring_buf_ring_mask(UP_NBUF), (int)u->recycled++);
}

static void up_publish(up_ring *u)
{
    if (u->recycled > 0) {
        io_uring_buf_ring_advance(u->br, (int)u->recycled);
        u->recycled = 0;
    }
}

static void up_fifo_push(up_ring *u, up_fifo *q, int bid)
{
    u->next[bid] = -1;
    if (q->tail >= 0)
        u->next[q->tail] = bid;
    else
        q->head = bid;
    q->tail = bid;
}

static int up_fifo_pop(up_ring *u, up_fifo *q)
{
    int bid = q->head;
    q->head = u->next[bid];
    if (q->head < 0)
        q->tail = -1;
    return bid;
}

static void up_recv(up_ring *u, int fd, uint64_t ud)
{
    struct io_uring_sqe *sqe = up_sqe(u);
    io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = UP_BGID;
    io_uring_sqe_set_data64(sqe, ud);
}
#endif

/* The ring of the calling thread, which alone submits to it: SINGLE_ISSUER lets the kernel skip
 * its locking, DEFER_TASKRUN runs completions' task work only in the thread's own wait (no
 * interrupt of the loop to run it). Older kernels get COOP_TASKRUN, or neither. */
static void up_start(up_ring *u, const char *who)
{
    static const unsigned tries[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
        IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
        0,
    };
    int r = -EINVAL;
    for (size_t i = 0; i < sizeof tries / sizeof tries[0] && r == -EINVAL; i++) {
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        p.flags = tries[i] | IORING_SETUP_CQSIZE;
        p.cq_entries = 4 * UP_NBUF;
        r = io_uring_queue_init_params(1024, &u->ring, &p);
    }
    if (r < 0)
        up_die(who, "io_uring_queue_init", -r);
#ifndef URING_POLL
    size_t ring_bytes = UP_NBUF * sizeof(struct io_uring_buf);
    u->br = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    u->bufs = malloc((size_t)UP_NBUF * UP_BUFSZ);
    if (u->br == MAP_FAILED || u->bufs == NULL)
        up_die(who, "buffers", ENOMEM);
    io_uring_buf_ring_init(u->br);
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (unsigned long)u->br;
    reg.ring_entries = UP_NBUF;
    reg.bgid = UP_BGID;
    if ((r = io_uring_register_buf_ring(&u->ring, &reg, 0)) < 0)
        up_die(who, "io_uring_register_buf_ring", -r);
    for (int i = 0; i < UP_NBUF; i++)
        up_recycle(u, i);
    up_publish(u);
#endif
    struct io_uring_sqe *sqe = up_sqe(u);
    io_uring_prep_poll_add(sqe, up_stop_fd, POLLIN);
    io_uring_sqe_set_data64(sqe, UP_STOP);
    up_listen(u);
}

/* Submits everything queued and waits for at least one completion: one system call. */
static void up_wait(up_ring *u, const char *who)
{
#ifndef URING_POLL
    up_publish(u);
#endif
    int r = io_uring_submit_and_wait(&u->ring, 1);
    if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY)
        up_die(who, "io_uring_submit_and_wait", -r);
}

static void up_stop(up_ring *u)
{
    io_uring_queue_exit(&u->ring);
#ifndef URING_POLL
    munmap(u->br, UP_NBUF * sizeof(struct io_uring_buf));
    free(u->bufs);
#endif
    close(u->lfd);
}

/* Listens on one socket per thread, prints port=P, runs `body` on each worker (`ws`, an array
 * of `threads` structs of `size` bytes that begin with an up_ring) and stops them all on
 * SIGINT or SIGTERM. */
static int up_main(const io_opts *o, void *ws, size_t size, void *(*body)(void *), const char *who)
{
    /* Blocked here, before any thread starts, so that only sigwait below takes them. */
    sigset_t sigs;
    io_block_stop_signals(&sigs);

    up_stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    pthread_t *tids = calloc(o->threads, sizeof *tids);
    if (up_stop_fd < 0 || tids == NULL)
        up_die(who, "start", errno);
    int port = o->port;
    for (unsigned i = 0; i < o->threads; i++) {
        up_ring *u = (up_ring *)((char *)ws + i * size);
        u->lfd = io_listen(port, 1, &port);
        if (u->lfd < 0) {
            fprintf(stderr, "%s: listen on 127.0.0.1:%d: %s\n", who, port, strerror(-u->lfd));
            return 1;
        }
    }
    printf("port=%d\n", port);
    fflush(stdout);
    for (unsigned i = 0; i < o->threads; i++)
        if (pthread_create(&tids[i], NULL, body, (char *)ws + i * size) != 0) {
            fprintf(stderr, "%s: pthread_create failed\n", who);
            return 1;
        }

    int sig;
    sigwait(&sigs, &sig);
    uint64_t one = 1;
    if (write(up_stop_fd, &one, sizeof one) != sizeof one)
        perror(who);
    for (unsigned i = 0; i < o->threads; i++)
        pthread_join(tids[i], NULL);
    free(tids);
    return 0;
}

#endif
