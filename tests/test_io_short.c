// SPDX-License-Identifier: MIT
/*
 * What a short read says. A read of a TCP socket that returns less than it asked emptied the
 * receive queue, so weft parks the next read at once, without its system call, until an edge
 * (lib/fd.h). Here every case where that would be wrong: data that comes after the short read
 * (from a task, and in tiny segments from a plain thread), the peer's end of stream, a reset,
 * urgent data with more behind it, datagrams, a peek; and an urgent read with no memory for its
 * note. A wrong skip parks a read that has something to read, and no edge comes to end it: every
 * read here runs under a deadline, and a read that ends with -ETIMEDOUT is the failure.
 *
 * Tasks record with CHECK; the test asserts once weft_run has returned.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "alloc.h"
#include "support_criterion.h"
#include "support_task.h"
#include "task.h"
#include "weft.h"

/* Long enough for any loaded machine to deliver a few bytes over the loopback; a read that
 * waits this long was parked with nothing to end its wait. */
#define STALL (20 * WEFT_SEC)

/* A connected pair of sockets of `type` on 127.0.0.1 (TCP: Nagle off, so that every small write
 * is a segment and an edge of its own), both ends non-blocking: p[0] reads, p[1] writes. */
static void loopback_pair(int type, int p[2])
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int l = socket(AF_INET, type | SOCK_CLOEXEC, 0);
    cr_assert_geq(l, 0);
    cr_assert_eq(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(getsockname(l, (struct sockaddr *)&a, &len), 0);
    int c = socket(AF_INET, type | SOCK_CLOEXEC, 0);
    cr_assert_geq(c, 0);
    if (type == SOCK_STREAM) {
        cr_assert_eq(listen(l, 1), 0);
        cr_assert_eq(connect(c, (struct sockaddr *)&a, sizeof(a)), 0);
        p[0] = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        cr_assert_geq(p[0], 0);
        close(l);
        int one = 1;
        cr_assert_eq(setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)), 0);
    } else {
        /* Datagrams: the reader is the bound socket, the writer sends to it. */
        cr_assert_eq(connect(c, (struct sockaddr *)&a, sizeof(a)), 0);
        p[0] = l;
        cr_assert_eq(fcntl(l, F_SETFL, fcntl(l, F_GETFL) | O_NONBLOCK), 0);
    }
    cr_assert_eq(fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK), 0);
    p[1] = c;
}

/* fn(arg) in a scope whose deadline is STALL from now. */
static int under_deadline(weft_fn fn, void *arg)
{
    weft_scope *s;
    int rc = weft_scope_open(&s, &(weft_scope_opts){.timeout_ns = STALL});
    if (rc)
        return rc;
    rc = fn(arg);
    int closed = weft_scope_close(s);
    return rc ? rc : closed;
}

/* ---- the next data after a short read ---------------------------------------------------------
 */

/* Two tasks bounce messages of 1 to 1,000 bytes over one TCP connection, each read with a buffer
 * of 4 KiB: every read is short, so every next read parks on the note, and only the other side's
 * next message ends its wait. */
#define BOUNCES 3000

typedef struct bounce {
    int a[2], b[2]; /* a: left to right; b: right to left */
    long err;
    atomic_uint done;
} bounce;

/* Reads exactly `n` bytes from fd into buf (room for 4 KiB more), each read asking for 4 KiB
 * more than is left: the other side sends nothing more before it has the answer, so every read
 * is short. 0, or the code that stopped it (the end of the stream: -EPIPE). */
static long read_exactly(int fd, unsigned char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = weft_recv(fd, buf + got, n - got + 4096, 0);
        if (r <= 0)
            return r == 0 ? -EPIPE : r;
        got += (size_t)r;
        if (got > n)
            return -EPROTO; /* more than the other side sent: a byte doubled */
    }
    return 0;
}

/* One side: the left one sends each message and reads it back; the right one (`answers`) reads
 * each and sends it back. Both draw the same sizes. */
static int bounce_side(bounce *b, int out, int in, int answers)
{
    uint64_t rng = 1;
    unsigned char msg[1000], got[1000 + 4096];
    for (unsigned i = 0; i < BOUNCES; i++) {
        size_t n = 1 + below(&rng, 1000);
        for (size_t j = 0; j < n; j++)
            msg[j] = (unsigned char)(i * 31 + j);
        long rc = 0;
        if (!answers) {
            ssize_t w = weft_send_all(out, msg, n, 0, NULL);
            rc = w < 0 ? w : read_exactly(in, got, n);
        } else {
            rc = read_exactly(in, got, n);
            ssize_t w = rc ? 0 : weft_send_all(out, got, n, 0, NULL);
            rc = w < 0 ? w : rc;
        }
        if (rc == 0 && memcmp(got, msg, n) != 0)
            rc = -EILSEQ;
        if (rc) {
            b->err = rc;
            return (int)rc;
        }
        atomic_fetch_add(&b->done, 1);
    }
    return 0;
}

static int bounce_left(void *p)
{
    bounce *b = p;
    return bounce_side(b, b->a[1], b->b[0], 0);
}

static int bounce_right(void *p)
{
    bounce *b = p;
    return bounce_side(b, b->b[1], b->a[0], 1);
}

static int bounce_spawn(void *p)
{
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    REQUIRE_EQ(weft_spawn(s, bounce_left, p), 0);
    REQUIRE_EQ(weft_spawn(s, bounce_right, p), 0);
    return weft_scope_close(s);
}

static int bounce_root(void *p)
{
    CHECK_EQ(under_deadline(bounce_spawn, p), 0);
    return 0;
}

Test(io_short, the_next_message_after_a_short_read_ends_its_wait, .timeout = 120)
{
    for (unsigned workers = 1; workers <= 2; workers++) {
        bounce b;
        memset(&b, 0, sizeof(b));
        loopback_pair(SOCK_STREAM, b.a);
        loopback_pair(SOCK_STREAM, b.b);
        cr_assert_eq(run_on(workers, bounce_root, &b), 0);
        ASSERT_CHECKS();
        cr_assert_eq(b.err, 0, "%u worker(s): a side got %ld", workers, b.err);
        cr_assert_eq(atomic_load(&b.done), 2 * BOUNCES, "%u worker(s): %u messages", workers,
                     atomic_load(&b.done));
        for (int i = 0; i < 2; i++) {
            weft_close(b.a[i]);
            weft_close(b.b[i]);
        }
    }
}

/* ---- tiny segments from a plain thread ------------------------------------------------------ */

/* A plain thread writes 300,000 bytes in pieces of 1 to 7 bytes, each a segment, at whatever
 * moment its thread runs; a task reads them with a buffer of 4 KiB, so that nearly every read
 * is short and the segments' edges come before, during and after the reads and their notes. */
#define TINY_BYTES 300000

typedef struct tiny {
    int p[2];
    size_t got;
    long bad_at, read_err, write_err;
} tiny;

static unsigned char tiny_byte(size_t off)
{
    return (unsigned char)(off * 131 + (off >> 9));
}

static void *tiny_writer(void *arg)
{
    tiny *t = arg;
    uint64_t rng = 5;
    unsigned char buf[8];
    size_t off = 0;
    while (off < TINY_BYTES) {
        size_t n = 1 + below(&rng, 7);
        if (n > TINY_BYTES - off)
            n = TINY_BYTES - off;
        for (size_t i = 0; i < n; i++)
            buf[i] = tiny_byte(off + i);
        ssize_t w = send(t->p[1], buf, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EAGAIN) {
            sched_yield(); /* the reader is behind: it empties the buffers meanwhile */
            continue;
        }
        if (w <= 0) {
            t->write_err = -errno;
            return NULL;
        }
        off += (size_t)w;
    }
    return NULL;
}

static int tiny_read_all(void *arg)
{
    tiny *t = arg;
    unsigned char buf[4096];
    t->bad_at = -1;
    while (t->got < TINY_BYTES) {
        ssize_t n = weft_recv(t->p[0], buf, sizeof(buf), 0);
        if (n <= 0) {
            t->read_err = n == 0 ? -EPIPE : n;
            return 0;
        }
        for (ssize_t i = 0; i < n && t->bad_at < 0; i++)
            if (buf[i] != tiny_byte(t->got + (size_t)i))
                t->bad_at = (long)(t->got + (size_t)i);
        t->got += (size_t)n;
    }
    return 0;
}

static int tiny_root(void *arg)
{
    CHECK_EQ(under_deadline(tiny_read_all, arg), 0);
    return 0;
}

Test(io_short, tiny_segments_from_a_plain_thread_against_large_reads, .timeout = 120)
{
    for (unsigned workers = 1; workers <= 2; workers++) {
        tiny t;
        memset(&t, 0, sizeof(t));
        loopback_pair(SOCK_STREAM, t.p);
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, tiny_writer, &t), 0);
        cr_assert_eq(run_on(workers, tiny_root, &t), 0);
        pthread_join(th, NULL);
        ASSERT_CHECKS();
        cr_assert_eq(t.read_err, 0, "%u worker(s): the reader got %ld", workers, t.read_err);
        cr_assert_eq(t.write_err, 0, "%u worker(s): the writer got %ld", workers, t.write_err);
        cr_assert_eq(t.got, TINY_BYTES, "%u worker(s): %zu bytes", workers, t.got);
        cr_assert_eq(t.bad_at, -1, "%u worker(s): the stream differs at %ld", workers, t.bad_at);
        weft_close(t.p[0]);
        close(t.p[1]);
    }
}

/* ---- what comes with the data or right after it -----------------------------------------------
 */

/*
 * A reader task parks on an empty socket; once it has, the root sends "abc" and then, at once,
 * what the case is about, so that one edge brings both: the reader's first read returns the
 * three bytes, short, and its next read must find the rest at once.
 */
enum after { AFTER_EOF, AFTER_RESET, AFTER_URGENT, AFTER_DATAGRAMS, AFTER_PEEK };

typedef struct after_case {
    enum after kind;
    int p[2];
    weft__task *_Atomic reader;
    long first, second, third;
    char got[16];
} after_case;

static int after_read(void *arg)
{
    after_case *c = arg;
    atomic_store(&c->reader, weft__task_self());
    char *g = c->got;
    if (c->kind == AFTER_PEEK) {
        c->first = weft_recv(c->p[0], g, 8, MSG_PEEK); /* short: the data stays */
        c->second = weft_recv(c->p[0], g, 8, 0);       /* the same three bytes */
        c->third = weft_recv(c->p[0], g + 3, 8, 0);    /* "def", sent once the peek returned */
        return 0;
    }
    c->first = weft_recv(c->p[0], g, 8, 0);
    c->second = weft_recv(c->p[0], g + 3, 8, 0);
    if (c->kind == AFTER_DATAGRAMS)
        c->third = weft_recv(c->p[0], g + 6, 8, 0);
    return 0;
}

static int after_reader(void *arg)
{
    return under_deadline(after_read, arg);
}

static int after_root(void *arg)
{
    after_case *c = arg;
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    REQUIRE_EQ(weft_spawn(s, after_reader, c), 0);
    while (!support_parked(&c->reader))
        REQUIRE_EQ(weft_yield(), 0);
    int w = c->p[1];
    switch (c->kind) {
    case AFTER_EOF:
        CHECK_EQ(send(w, "abc", 3, MSG_NOSIGNAL), 3);
        CHECK_EQ(shutdown(w, SHUT_WR), 0);
        break;
    case AFTER_RESET: {
        CHECK_EQ(send(w, "abc", 3, MSG_NOSIGNAL), 3);
        struct linger l = {.l_onoff = 1, .l_linger = 0};
        CHECK_EQ(setsockopt(w, SOL_SOCKET, SO_LINGER, &l, sizeof(l)), 0);
        CHECK_EQ(close(w), 0);
        c->p[1] = -1;
        break;
    }
    case AFTER_URGENT:
        /* Out of band, the "X" is no byte of the stream: a read stops short at it. */
        CHECK_EQ(send(w, "abc", 3, MSG_NOSIGNAL), 3);
        CHECK_EQ(send(w, "X", 1, MSG_NOSIGNAL | MSG_OOB), 1);
        CHECK_EQ(send(w, "def", 3, MSG_NOSIGNAL), 3);
        break;
    case AFTER_DATAGRAMS:
        CHECK_EQ(send(w, "abc", 3, 0), 3);
        CHECK_EQ(send(w, "def", 3, 0), 3);
        CHECK_EQ(send(w, "ghi", 3, 0), 3);
        break;
    case AFTER_PEEK:
        CHECK_EQ(send(w, "abc", 3, MSG_NOSIGNAL), 3);
        /* The rest only once the reader has peeked and read: its third read waits for it. */
        while (!support_parked(&c->reader) || c->second != 3)
            REQUIRE_EQ(weft_yield(), 0);
        CHECK_EQ(send(w, "def", 3, MSG_NOSIGNAL), 3);
        break;
    }
    CHECK_EQ(weft_scope_close(s), 0);
    return 0;
}

static after_case run_after(enum after kind, unsigned workers)
{
    after_case c;
    memset(&c, 0, sizeof(c));
    c.kind = kind;
    loopback_pair(kind == AFTER_DATAGRAMS ? SOCK_DGRAM : SOCK_STREAM, c.p);
    cr_assert_eq(run_on(workers, after_root, &c), 0);
    ASSERT_CHECKS();
    weft_close(c.p[0]);
    if (c.p[1] >= 0)
        close(c.p[1]);
    return c;
}

Test(io_short, the_end_of_the_stream_after_a_short_read_is_read_at_once, .timeout = 60)
{
    for (unsigned workers = 1; workers <= 2; workers++) {
        after_case c = run_after(AFTER_EOF, workers);
        cr_assert_eq(c.first, 3);
        cr_assert_eq(c.second, 0, "the read after the data: %ld", c.second);
    }
}

Test(io_short, a_reset_after_a_short_read_is_read_at_once, .timeout = 60)
{
    for (unsigned workers = 1; workers <= 2; workers++) {
        after_case c = run_after(AFTER_RESET, workers);
        /* The kernel may drop the data with the reset: then the first read says so. */
        if (c.first == 3)
            cr_assert(c.second == -ECONNRESET || c.second == 0, "after the data: %ld", c.second);
        else
            cr_assert_eq(c.first, -ECONNRESET, "the first read: %ld", c.first);
    }
}

Test(io_short, urgent_data_does_not_hide_the_bytes_behind_it, .timeout = 60)
{
    for (unsigned workers = 1; workers <= 2; workers++) {
        after_case c = run_after(AFTER_URGENT, workers);
        /* The first read stops at the urgent mark or, if "def" was there too, past it. */
        cr_assert(c.first == 3 || c.first == 6, "the first read: %ld", c.first);
        if (c.first == 3)
            cr_assert_eq(c.second, 3, "the read after the mark: %ld", c.second);
        cr_assert_eq(memcmp(c.got, "abcdef", 6), 0);
    }
}

Test(io_short, datagrams_are_read_one_each_read, .timeout = 60)
{
    for (unsigned workers = 1; workers <= 2; workers++) {
        after_case c = run_after(AFTER_DATAGRAMS, workers);
        cr_assert_eq(c.first, 3);
        cr_assert_eq(c.second, 3, "the second datagram: %ld", c.second);
        cr_assert_eq(c.third, 3, "the third datagram: %ld", c.third);
        cr_assert_eq(memcmp(c.got, "abcdefghi", 9), 0);
    }
}

Test(io_short, a_short_peek_leaves_the_data_to_read, .timeout = 60)
{
    for (unsigned workers = 1; workers <= 2; workers++) {
        after_case c = run_after(AFTER_PEEK, workers);
        cr_assert_eq(c.first, 3);
        cr_assert_eq(c.second, 3, "the read after the peek: %ld", c.second);
        cr_assert_eq(c.third, 3, "the read after that: %ld", c.third);
        cr_assert_eq(memcmp(c.got, "abcdef", 6), 0);
    }
}

/* ---- a read of urgent data with no memory for the descriptor's record ----------------------- */

/* weft_recv(MSG_OOB) notes on the descriptor's record that its short reads say nothing; where the
 * record cannot be made it returns -ENOMEM, reads nothing, and a later call works. The record of a
 * descriptor numbered past every registered one comes from a fresh chunk: an allocation. */
#define FAR_FD 3000

typedef struct urgent_nomem {
    int fd;
    long without, with;
} urgent_nomem;

static int urgent_nomem_root(void *arg)
{
    urgent_nomem *u = arg;
    char c;
    weft__alloc_fail_all(1);
    u->without = weft_recv(u->fd, &c, 1, MSG_OOB);
    weft__alloc_fail_all(0);
    u->with = weft_recv(u->fd, &c, 1, MSG_OOB); /* no urgent byte came: the kernel's EINVAL */
    return 0;
}

Test(io_short, an_urgent_read_without_memory_for_its_note_fails_cleanly, .timeout = 60)
{
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max <= FAR_FD)
        cr_assert_fail("RLIMIT_NOFILE's hard limit is %lu: no descriptor %d to test with",
                       (unsigned long)rl.rlim_max, FAR_FD);
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur <= FAR_FD) {
        rl.rlim_cur = FAR_FD + 1;
        cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    }
    int p[2];
    loopback_pair(SOCK_STREAM, p);
    cr_assert_eq(dup2(p[0], FAR_FD), FAR_FD);
    close(p[0]);
    urgent_nomem u = {.fd = FAR_FD};
    cr_assert_eq(run_on(1, urgent_nomem_root, &u), 0);
    cr_assert_eq(u.without, -ENOMEM, "without memory: %ld", u.without);
    cr_assert_eq(u.with, -EINVAL, "with memory again: %ld", u.with);
    weft_close(FAR_FD);
    close(p[1]);
}
