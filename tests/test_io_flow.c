// SPDX-License-Identifier: MIT
/*
 * Streams through the reactor, checked byte for byte: readiness edges that come between a try
 * and the park (tiny writes against small reads), both directions of one socket used by two
 * tasks at once, weft_writev_all with more buffers than writev takes against a slow reader,
 * 64 MiB through write_all, and a server whose listener is cancelled while requests are in
 * flight.
 *
 * Every byte of a stream is a function of its offset (pattern()), so a byte lost, doubled or
 * reordered shows up at the first place it happened. Tasks record with CHECK; the test asserts
 * once weft_run has returned.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "support_criterion.h"
#include "weft.h"

/* The byte at `off` of stream `id`. */
static inline unsigned char pattern(unsigned id, size_t off)
{
    uint64_t x = (uint64_t)off * 0x9E3779B97F4A7C15ull + id * 0xBF58476D1CE4E5B9ull;
    return (unsigned char)(x >> 56 ^ off >> 8);
}

/* Checks n bytes received at stream offset `off`; the offset of the first bad one, or -1. */
static long first_bad(unsigned id, size_t off, const unsigned char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i] != pattern(id, off + i))
            return (long)(off + i);
    return -1;
}

/* ---- edges between a try and the park ------------------------------------------------------ */

/*
 * A writer writes 1,000,000 bytes in pieces of 1 to 7 bytes; the reader reads with a buffer of
 * 1 to 5 bytes. The pipe holds one page, so both sides keep finding it empty or full, and the
 * readiness edges of the other side's every write or read come while they try or park. Each
 * side is a task (two workers), or the writer is a plain thread.
 */
#define EDGE_BYTES 1000000

typedef struct edges {
    int p[2];
    long bad_at, read_err, write_err;
    size_t got;
    unsigned seed;
} edges;

static int edge_reader(void *arg)
{
    edges *e = arg;
    uint64_t rng = e->seed;
    unsigned char buf[8];
    e->bad_at = -1;
    while (e->got < EDGE_BYTES) {
        size_t want = 1 + below(&rng, 5);
        ssize_t n = weft_read(e->p[0], buf, want);
        if (n <= 0) {
            e->read_err = n == 0 ? -EPIPE : n;
            return 0;
        }
        long bad = first_bad(1, e->got, buf, (size_t)n);
        if (bad >= 0 && e->bad_at < 0)
            e->bad_at = bad;
        e->got += (size_t)n;
    }
    return 0;
}

static int edge_writer(void *arg)
{
    edges *e = arg;
    uint64_t rng = e->seed * 7 + 1;
    unsigned char buf[8];
    size_t off = 0;
    while (off < EDGE_BYTES) {
        size_t n = 1 + below(&rng, 7);
        if (n > EDGE_BYTES - off)
            n = EDGE_BYTES - off;
        for (size_t i = 0; i < n; i++)
            buf[i] = pattern(1, off + i);
        ssize_t w = weft_write(e->p[1], buf, n);
        if (w <= 0) {
            e->write_err = w;
            return 0;
        }
        off += (size_t)w;
    }
    return 0;
}

static void *edge_plain_writer(void *arg)
{
    edges *e = arg;
    uint64_t rng = e->seed * 7 + 1;
    unsigned char buf[8];
    size_t off = 0;
    while (off < EDGE_BYTES) {
        size_t n = 1 + below(&rng, 7);
        if (n > EDGE_BYTES - off)
            n = EDGE_BYTES - off;
        for (size_t i = 0; i < n; i++)
            buf[i] = pattern(1, off + i);
        ssize_t w = write(e->p[1], buf, n); /* blocking: this end has no O_NONBLOCK */
        if (w <= 0) {
            e->write_err = -1;
            return NULL;
        }
        off += (size_t)w;
    }
    return NULL;
}

static int edges_root(void *arg)
{
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    REQUIRE_EQ(weft_spawn(s, edge_reader, arg), 0);
    REQUIRE_EQ(weft_spawn(s, edge_writer, arg), 0);
    CHECK_EQ(weft_scope_close(s), 0);
    return 0;
}

static int edges_reader_root(void *arg)
{
    return edge_reader(arg);
}

static void open_small_pipe(int p[2])
{
    cr_assert_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    cr_assert_geq(fcntl(p[0], F_SETPIPE_SZ, 4096), 4096);
}

static void assert_stream(const edges *e, const char *what)
{
    cr_assert_eq(e->read_err, 0, "%s: the reader got %ld", what, e->read_err);
    cr_assert_eq(e->write_err, 0, "%s: the writer got %ld", what, e->write_err);
    cr_assert_eq(e->got, EDGE_BYTES, "%s: %zu bytes", what, e->got);
    cr_assert_eq(e->bad_at, -1, "%s: the stream differs at offset %ld", what, e->bad_at);
}

Test(io_flow, tiny_writes_against_small_reads_lose_no_edge, .timeout = 120)
{
    for (unsigned workers = 1; workers <= 2; workers++) {
        edges e;
        memset(&e, 0, sizeof(e));
        e.seed = workers;
        open_small_pipe(e.p);
        cr_assert_eq(run_on(workers, edges_root, &e), 0);
        ASSERT_CHECKS();
        assert_stream(&e, workers == 1 ? "one worker" : "two workers");
        weft_close(e.p[0]);
        weft_close(e.p[1]);
    }
}

Test(io_flow, a_plain_thread_writing_tiny_pieces_loses_no_edge, .timeout = 120)
{
    edges e;
    memset(&e, 0, sizeof(e));
    e.seed = 3;
    open_small_pipe(e.p);
    int fl = fcntl(e.p[1], F_GETFL);
    cr_assert_eq(fcntl(e.p[1], F_SETFL, fl & ~O_NONBLOCK), 0);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, edge_plain_writer, &e), 0);
    cr_assert_eq(run_on(2, edges_reader_root, &e), 0);
    pthread_join(th, NULL);
    assert_stream(&e, "plain writer");
    weft_close(e.p[0]);
    close(e.p[1]);
}

/* ---- both directions of one socket, one task each --------------------------------------- */

/* A socket pair with small buffers; on each end one task reads while another writes, 1 MB each
 * way in pieces of random size. A reader and a writer of one descriptor wait at once, in the
 * two directions of its record. */
#define DUPLEX_BYTES (1 << 20)

typedef struct duplex_side {
    int fd;
    unsigned out_id, in_id;
    long bad_at, read_err, write_err;
    size_t got;
} duplex_side;

static int duplex_reader(void *arg)
{
    duplex_side *d = arg;
    unsigned char buf[4096];
    uint64_t rng = d->in_id;
    d->bad_at = -1;
    while (d->got < DUPLEX_BYTES) {
        ssize_t n = weft_read(d->fd, buf, 1 + below(&rng, sizeof(buf)));
        if (n <= 0) {
            d->read_err = n == 0 ? -EPIPE : n;
            return 0;
        }
        long bad = first_bad(d->in_id, d->got, buf, (size_t)n);
        if (bad >= 0 && d->bad_at < 0)
            d->bad_at = bad;
        d->got += (size_t)n;
    }
    return 0;
}

static int duplex_writer(void *arg)
{
    duplex_side *d = arg;
    unsigned char buf[4096];
    uint64_t rng = d->out_id * 3;
    size_t off = 0;
    while (off < DUPLEX_BYTES) {
        size_t n = 1 + below(&rng, sizeof(buf));
        if (n > DUPLEX_BYTES - off)
            n = DUPLEX_BYTES - off;
        for (size_t i = 0; i < n; i++)
            buf[i] = pattern(d->out_id, off + i);
        ssize_t w = weft_write_all(d->fd, buf, n, NULL);
        if (w != (ssize_t)n) {
            d->write_err = w < 0 ? w : -EIO;
            return 0;
        }
        off += n;
    }
    return 0;
}

static int duplex_root(void *arg)
{
    duplex_side *sides = arg;
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    for (int i = 0; i < 2; i++) {
        REQUIRE_EQ(weft_spawn(s, duplex_reader, &sides[i]), 0);
        REQUIRE_EQ(weft_spawn(s, duplex_writer, &sides[i]), 0);
    }
    CHECK_EQ(weft_scope_close(s), 0);
    return 0;
}

Test(io_flow, a_reader_and_a_writer_on_each_end_of_one_socket, .timeout = 120)
{
    for (unsigned workers = 1; workers <= 2; workers++) {
        int pair[2];
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair), 0);
        int small = 4096;
        for (int i = 0; i < 2; i++) {
            cr_assert_eq(setsockopt(pair[i], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
            cr_assert_eq(setsockopt(pair[i], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
        }
        duplex_side sides[2];
        memset(sides, 0, sizeof(sides));
        for (int i = 0; i < 2; i++) {
            sides[i].fd = pair[i];
            sides[i].out_id = 10 + (unsigned)i;
            sides[i].in_id = 10 + (unsigned)!i;
        }
        cr_assert_eq(run_on(workers, duplex_root, sides), 0);
        ASSERT_CHECKS();
        for (int i = 0; i < 2; i++) {
            cr_assert_eq(sides[i].read_err, 0, "side %d read: %ld", i, sides[i].read_err);
            cr_assert_eq(sides[i].write_err, 0, "side %d write: %ld", i, sides[i].write_err);
            cr_assert_eq(sides[i].got, DUPLEX_BYTES);
            cr_assert_eq(sides[i].bad_at, -1, "side %d: differs at %ld", i, sides[i].bad_at);
            weft_close(pair[i]);
        }
    }
}

/* ---- writev_all: many buffers, a slow reader ------------------------------------------------- */

/* Buffers of 0 to 300 bytes, more of them than one writev takes (IOV_MAX, 1024), into a socket
 * with small buffers whose reader takes 100 bytes at a time and yields between reads: writev
 * stops in the middle of buffers, and the rest must follow in order. */
#define WV_BUFS 3000

typedef struct wv {
    int pair[2];
    int nbufs;
    struct iovec iov[WV_BUFS];
    unsigned char *data;
    size_t total, done, got;
    long rc, bad_at, read_err;
    int iov_changed;
} wv;

static int wv_writer(void *arg)
{
    wv *v = arg;
    struct iovec copy[WV_BUFS];
    memcpy(copy, v->iov, sizeof(struct iovec) * (size_t)v->nbufs);
    v->rc = weft_writev_all(v->pair[0], v->iov, v->nbufs, &v->done);
    v->iov_changed = memcmp(copy, v->iov, sizeof(struct iovec) * (size_t)v->nbufs) != 0;
    shutdown(v->pair[0], SHUT_WR);
    return 0;
}

static int wv_reader(void *arg)
{
    wv *v = arg;
    unsigned char buf[100];
    v->bad_at = -1;
    for (;;) {
        ssize_t n = weft_read(v->pair[1], buf, sizeof(buf));
        if (n == 0)
            return 0;
        if (n < 0) {
            v->read_err = n;
            return 0;
        }
        long bad = first_bad(20, v->got, buf, (size_t)n);
        if (bad >= 0 && v->bad_at < 0)
            v->bad_at = bad;
        v->got += (size_t)n;
        weft_yield();
    }
}

static int wv_root(void *arg)
{
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    REQUIRE_EQ(weft_spawn(s, wv_reader, arg), 0);
    REQUIRE_EQ(weft_spawn(s, wv_writer, arg), 0);
    CHECK_EQ(weft_scope_close(s), 0);
    return 0;
}

static void wv_run(int nbufs, unsigned workers)
{
    wv *v = calloc(1, sizeof(*v));
    cr_assert_not_null(v);
    v->nbufs = nbufs;
    uint64_t rng = (uint64_t)nbufs;
    size_t sizes[WV_BUFS];
    for (int i = 0; i < nbufs; i++) {
        sizes[i] = below(&rng, 8) == 0 ? 0 : below(&rng, 301);
        v->total += sizes[i];
    }
    v->data = malloc(v->total + 1);
    cr_assert_not_null(v->data);
    for (size_t i = 0; i < v->total; i++)
        v->data[i] = pattern(20, i);
    size_t off = 0;
    for (int i = 0; i < nbufs; i++) {
        v->iov[i].iov_base = v->data + off;
        v->iov[i].iov_len = sizes[i];
        off += sizes[i];
    }
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, v->pair), 0);
    int small = 4096;
    cr_assert_eq(setsockopt(v->pair[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    cr_assert_eq(setsockopt(v->pair[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    cr_assert_eq(run_on(workers, wv_root, v), 0);
    ASSERT_CHECKS();
    cr_assert_eq(v->rc, (long)v->total, "%d buffers: writev_all returned %ld of %zu", nbufs, v->rc,
                 v->total);
    cr_assert_eq(v->done, v->total);
    cr_assert_eq(v->iov_changed, 0);
    cr_assert_eq(v->read_err, 0);
    cr_assert_eq(v->got, v->total, "%d buffers: %zu of %zu bytes", nbufs, v->got, v->total);
    cr_assert_eq(v->bad_at, -1, "%d buffers: differs at %ld", nbufs, v->bad_at);
    weft_close(v->pair[0]);
    weft_close(v->pair[1]);
    free(v->data);
    free(v);
}

Test(io_flow, writev_all_of_many_buffers_to_a_slow_reader, .timeout = 120)
{
    wv_run(1000, 1);
    wv_run(1000, 2);
    wv_run(WV_BUFS, 2);
}

/* ---- 64 MiB through write_all ---------------------------------------------------------------- */

#define HUGE_BYTES ((size_t)64 << 20)

typedef struct huge {
    int pair[2];
    unsigned char *data;
    size_t done, got;
    long rc, bad_at, read_err;
} huge;

static int huge_writer(void *arg)
{
    huge *h = arg;
    h->rc = weft_write_all(h->pair[0], h->data, HUGE_BYTES, &h->done);
    shutdown(h->pair[0], SHUT_WR);
    return 0;
}

static int huge_reader(void *arg)
{
    huge *h = arg;
    unsigned char *buf = malloc(64 * 1024);
    h->bad_at = -1;
    for (;;) {
        ssize_t n = weft_read(h->pair[1], buf, 64 * 1024);
        if (n <= 0) {
            h->read_err = n;
            break;
        }
        if (h->bad_at < 0 && memcmp(buf, h->data + h->got, (size_t)n) != 0)
            h->bad_at = (long)h->got;
        h->got += (size_t)n;
    }
    free(buf);
    return 0;
}

static int huge_root(void *arg)
{
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    REQUIRE_EQ(weft_spawn(s, huge_reader, arg), 0);
    REQUIRE_EQ(weft_spawn(s, huge_writer, arg), 0);
    CHECK_EQ(weft_scope_close(s), 0);
    return 0;
}

Test(io_flow, sixty_four_mib_through_write_all, .timeout = 120)
{
    huge h;
    memset(&h, 0, sizeof(h));
    h.data = malloc(HUGE_BYTES);
    cr_assert_not_null(h.data);
    for (size_t i = 0; i < HUGE_BYTES; i++)
        h.data[i] = pattern(30, i);
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, h.pair), 0);
    cr_assert_eq(run_on(2, huge_root, &h), 0);
    ASSERT_CHECKS();
    cr_assert_eq(h.rc, (long)HUGE_BYTES, "write_all: %ld", h.rc);
    cr_assert_eq(h.done, HUGE_BYTES);
    cr_assert_eq(h.read_err, 0, "the reader ended with %ld", h.read_err);
    cr_assert_eq(h.got, HUGE_BYTES);
    cr_assert_eq(h.bad_at, -1, "differs at %ld", h.bad_at);
    weft_close(h.pair[0]);
    weft_close(h.pair[1]);
    free(h.data);
}

/* ---- a server cancelled with requests in flight ---------------------------------------------- */

/*
 * A listener task accepts connections and spawns a handler for each; clients send requests of
 * SD_REQ bytes one after the other and read each answer, SD_RESP bytes. A handler answers inside
 * a shielded scope (itself, or through a child there, by turns), in pieces with yields between.
 * Once enough answers went out, the listener's scope is cancelled from inside an answer, while
 * other answers are under way and every client is busy: accept ends, each handler ends at its
 * next read, and the connection closes.
 *
 * Checked: every answer the server began it finished (the shield held); every answer a client
 * got is whole and the right one; a client sees either whole answers or the end of the stream,
 * never part of one; clients got exactly the answers the server finished; the run ends.
 */
#define SD_CLIENTS 24
#define SD_REQ 64
#define SD_RESP 4096
#define SD_PIECES 4
#define SD_CANCEL_AFTER (SD_CLIENTS * 8)

typedef struct sd_case {
    int listener;
    uint16_t port;
    weft_scope *server;
    atomic_int answered, partial, wrong, unanswered, send_failed;
    atomic_int begun, finished, failed_answers, handlers, accepted;
    long accept_rc;
    int in_flight_at_cancel;
} sd_case;

typedef struct sd_answer {
    sd_case *sd;
    int fd;
    uint32_t client, seq;
} sd_answer;

static unsigned char sd_byte(uint32_t client, uint32_t seq, size_t j)
{
    return pattern(client * 1000003u + seq, j);
}

static int sd_write_answer(sd_answer *a)
{
    int nth = atomic_fetch_add(&a->sd->begun, 1) + 1;
    unsigned char piece[SD_RESP / SD_PIECES];
    for (int p = 0; p < SD_PIECES; p++) {
        if (p == 1 && nth == SD_CANCEL_AFTER) {
            /* The listener's scope is cancelled from inside an answer: this one and those
             * begun alongside it are mid-way. */
            a->sd->in_flight_at_cancel = nth - atomic_load(&a->sd->finished);
            CHECK_EQ(weft_scope_cancel(a->sd->server), 0);
        }
        for (size_t j = 0; j < sizeof(piece); j++)
            piece[j] = sd_byte(a->client, a->seq, p * sizeof(piece) + j);
        if (weft_write_all(a->fd, piece, sizeof(piece), NULL) != (ssize_t)sizeof(piece)) {
            atomic_fetch_add(&a->sd->failed_answers, 1);
            return -EIO;
        }
        weft_yield(); /* room for the cancel to land mid-answer */
    }
    atomic_fetch_add(&a->sd->finished, 1);
    return 0;
}

static int sd_answer_child(void *arg)
{
    return sd_write_answer(arg);
}

static int sd_handler(void *arg)
{
    sd_answer a = *(sd_answer *)arg;
    free(arg);
    atomic_fetch_add(&a.sd->handlers, 1);
    for (uint32_t n = 0;; n++) {
        unsigned char req[SD_REQ];
        size_t got = 0;
        while (got < sizeof(req)) {
            ssize_t r = weft_read(a.fd, req + got, sizeof(req) - got);
            if (r <= 0)
                goto out; /* the client's end, or the cancel */
            got += (size_t)r;
        }
        memcpy(&a.client, req, 4);
        memcpy(&a.seq, req + 4, 4);
        weft_scope *sh;
        weft_scope_opts o = {.shield = 1};
        if (weft_scope_open(&sh, &o) != 0)
            break;
        if (n % 2 == 0)
            sd_write_answer(&a);
        else
            CHECK_EQ(weft_spawn(sh, sd_answer_child, &a), 0);
        weft_scope_close(sh);
    }
out:
    weft_close(a.fd);
    return 0;
}

static int sd_listener(void *arg)
{
    sd_case *sd = arg;
    weft_scope *conns;
    REQUIRE_EQ(weft_scope_open(&conns, NULL), 0);
    for (;;) {
        int fd = weft_accept(sd->listener, NULL, NULL);
        if (fd < 0) {
            sd->accept_rc = fd;
            break;
        }
        atomic_fetch_add(&sd->accepted, 1);
        sd_answer *a = malloc(sizeof(*a));
        REQUIRE_EQ(a != NULL, 1);
        *a = (sd_answer){.sd = sd, .fd = fd};
        if (weft_spawn(conns, sd_handler, a) != 0) {
            weft_close(fd);
            free(a);
        }
    }
    weft_scope_close(conns);
    return 0;
}

static int sd_client(void *arg)
{
    sd_case *sd = arg;
    static atomic_uint next_id;
    uint32_t id = atomic_fetch_add(&next_id, 1);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                               .sin_port = htons(sd->port)};
    CHECK(fd >= 0);
    CHECK_EQ(weft_connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    for (uint32_t seq = 0;; seq++) {
        unsigned char req[SD_REQ] = {0}, resp[SD_RESP];
        memcpy(req, &id, 4);
        memcpy(req + 4, &seq, 4);
        if (weft_send_all(fd, req, sizeof(req), 0, NULL) != (ssize_t)sizeof(req)) {
            atomic_fetch_add(&sd->send_failed, 1);
            break;
        }
        size_t got = 0;
        while (got < sizeof(resp)) {
            ssize_t r = weft_recv(fd, resp + got, sizeof(resp) - got, 0);
            if (r <= 0)
                break;
            got += (size_t)r;
        }
        if (got == 0) {
            atomic_fetch_add(&sd->unanswered, 1);
            break;
        }
        if (got < sizeof(resp)) {
            atomic_fetch_add(&sd->partial, 1);
            break;
        }
        for (size_t j = 0; j < sizeof(resp); j++)
            if (resp[j] != sd_byte(id, seq, j)) {
                atomic_fetch_add(&sd->wrong, 1);
                break;
            }
        atomic_fetch_add(&sd->answered, 1);
    }
    weft_close(fd);
    return 0;
}

static int sd_root(void *arg)
{
    sd_case *sd = arg;
    weft_scope *server, *clients;
    /* The server's scope nested in the clients': its cancel leaves the clients running. */
    REQUIRE_EQ(weft_scope_open(&clients, NULL), 0);
    REQUIRE_EQ(weft_scope_open(&server, NULL), 0);
    sd->server = server;
    REQUIRE_EQ(weft_spawn(server, sd_listener, sd), 0);
    for (int i = 0; i < SD_CLIENTS; i++)
        REQUIRE_EQ(weft_spawn(clients, sd_client, sd), 0);
    CHECK_EQ(weft_scope_close(server), -ECANCELED);
    CHECK_EQ(weft_scope_close(clients), 0);
    return 0;
}

Test(io_flow, cancelling_the_listener_with_requests_in_flight_cuts_no_answer, .timeout = 120)
{
    for (unsigned workers = 1; workers <= 2; workers++) {
        sd_case sd;
        memset(&sd, 0, sizeof(sd));
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(a);
        cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
        cr_assert_eq(listen(fd, SD_CLIENTS), 0);
        cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
        sd.listener = fd;
        sd.port = ntohs(a.sin_port);
        cr_assert_eq(run_on(workers, sd_root, &sd), 0);
        ASSERT_CHECKS();
        int answered = atomic_load(&sd.answered), finished = atomic_load(&sd.finished);
        cr_assert_eq(sd.accept_rc, -ECANCELED, "accept ended with %ld", sd.accept_rc);
        cr_assert_eq(atomic_load(&sd.accepted), SD_CLIENTS);
        cr_assert_eq(atomic_load(&sd.failed_answers), 0, "an answer begun was not finished");
        cr_assert_eq(atomic_load(&sd.begun), finished);
        cr_assert_eq(atomic_load(&sd.partial), 0, "a client got part of an answer");
        cr_assert_eq(atomic_load(&sd.wrong), 0);
        cr_assert_geq(answered, SD_CANCEL_AFTER);
        cr_assert_geq(sd.in_flight_at_cancel, 1);
        cr_assert_eq(answered, finished, "clients got %d answers, the server finished %d", answered,
                     finished);
        /* Every client stopped at the end of its stream, not at a limit of its own. */
        cr_assert_eq(atomic_load(&sd.unanswered) + atomic_load(&sd.send_failed), SD_CLIENTS);
        weft_close(fd);
    }
}
