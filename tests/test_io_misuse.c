// SPDX-License-Identifier: MIT
/*
 * I/O used the way weft.h says not to, or at its edges: a worker stuck in a plain blocking call
 * while tasks wait for descriptors, a descriptor of two runtimes, weft_close from a plain thread,
 * a plain close() whose number comes back, files epoll cannot watch, blocking descriptors, two
 * tasks on one direction, weft_connect on what is not a socket.
 *
 * Tests that need to know that a task has parked use one worker (or a known set of workers) and
 * read the runtime's idle mask and poller (runtime.h): every worker asleep, and one of them in
 * the poller, means every task has parked. Waits of the test's own thread poll with
 * sched_yield() under a generous bound, which only a broken runtime reaches.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fd.h"
#include "runtime.h"
#include "support_criterion.h"
#include "support_task.h"
#include "weft.h"

/* The bound on waits that only a broken runtime would reach. */
#define SAFETY (20 * WEFT_SEC)

/* On the test's thread: polls `done(arg)` until it holds or SAFETY passes. 1 if it held. */
static int wait_for(int (*done)(void *), void *arg)
{
    weft_time end = weft_now() + SAFETY;
    while (!done(arg)) {
        if (weft_now() > end)
            return 0;
        sched_yield();
    }
    return 1;
}

/* Every worker of `rt` asleep (or about to sleep, its work all looked at), one of them in the
 * poller: every task has parked. */
static int all_parked(weft_runtime *rt)
{
    uint64_t all = rt->nworkers == 64 ? ~0ull : (1ull << rt->nworkers) - 1;
    return atomic_load(&rt->idle_mask[0]) == all && atomic_load(&rt->poller.held) == 1;
}

static weft_runtime *start(unsigned workers)
{
    weft_runtime *rt = NULL;
    /* No watchdog: some tasks here block their worker on purpose. */
    weft_config cfg = {.workers = workers, .watchdog_ns = -1};
    cr_assert_eq(weft_runtime_start(&rt, &cfg), 0);
    return rt;
}

/* ---- a worker stuck in a plain read() while another is idle ------------------------------ */

/*
 * One task waits for a pipe with weft_read; another runs a plain, blocking read() of another
 * pipe, which holds its worker. The other worker is idle: readiness of the first pipe must reach
 * the first task through it. The blocking task goes to the worker that sleeps in the poller (the
 * one that ran the reader, woken first), so the idle worker is one that went to sleep on its
 * futex word while the poller was someone else's.
 */
typedef struct stuck_case {
    weft_runtime *rt;
    int io[2];    /* non-blocking: the task's weft_read */
    int block[2]; /* blocking: the plain read() */
    atomic_int reader_in, blocker_in;
    ssize_t got;
    char c;
} stuck_case;

static int parked_reader(void *p)
{
    stuck_case *sc = p;
    atomic_store(&sc->reader_in, 1);
    sc->got = weft_read(sc->io[0], &sc->c, 1);
    return 0;
}

static int plain_blocker(void *p)
{
    stuck_case *sc = p;
    atomic_store(&sc->blocker_in, 1);
    char c;
    return read(sc->block[0], &c, 1) == 1 ? 0 : -EIO;
}

static int all_asleep(void *p)
{
    weft_runtime *rt = p;
    uint64_t all = rt->nworkers == 64 ? ~0ull : (1ull << rt->nworkers) - 1;
    return atomic_load(&rt->idle_mask[0]) == all;
}

static int reader_parked(void *p)
{
    stuck_case *sc = p;
    return atomic_load(&sc->reader_in) && all_parked(sc->rt);
}

static int blocker_in(void *p)
{
    return atomic_load(&((stuck_case *)p)->blocker_in);
}

Test(io_misuse, a_worker_stuck_in_a_plain_read_leaves_io_to_an_idle_one, .timeout = 120)
{
    for (int round = 0; round < 3; round++) {
        stuck_case sc;
        memset(&sc, 0, sizeof(sc));
        cr_assert_eq(pipe2(sc.io, O_NONBLOCK | O_CLOEXEC), 0);
        cr_assert_eq(pipe2(sc.block, O_CLOEXEC), 0);
        sc.rt = start(2);
        /* Both asleep, on their futex words: no descriptor is registered yet. */
        cr_assert(wait_for(all_asleep, sc.rt), "the workers never went to sleep");
        weft_handle *hr, *hb;
        cr_assert_eq(weft_submit(sc.rt, parked_reader, &sc, &hr), 0);
        cr_assert(wait_for(reader_parked, &sc), "the reader never parked");
        cr_assert_eq(weft_submit(sc.rt, plain_blocker, &sc, &hb), 0);
        cr_assert(wait_for(blocker_in, &sc), "the blocking task never ran");
        cr_assert_eq(write(sc.io[1], "x", 1), 1);
        int st = -1;
        int served = weft_handle_wait(hr, weft_now() + 5 * WEFT_SEC, &st);
        /* Free the stuck worker whatever happened, then let everything end. */
        cr_assert_eq(write(sc.block[1], "y", 1), 1);
        int bst = -1;
        cr_assert_eq(weft_handle_wait(hb, weft_now() + SAFETY, &bst), 0);
        cr_assert_eq(weft_handle_wait(hr, weft_now() + SAFETY, &st), 0);
        weft_handle_release(hr);
        weft_handle_release(hb);
        cr_assert_eq(weft_runtime_shutdown(sc.rt), 0);
        cr_assert_eq(served, 0,
                     "round %d: the read was served only once the stuck worker was free (%d)",
                     round, served);
        cr_assert_eq(bst, 0);
        cr_assert_eq(sc.got, 1);
        cr_assert_eq(sc.c, 'x');
        for (int i = 0; i < 2; i++) {
            weft_close(sc.io[i]);
            close(sc.block[i]);
        }
    }
}

/* ---- one descriptor, two runtimes ---------------------------------------------------------- */

/*
 * Runtime A registers a descriptor (a wait on it that timed out leaves it in A's set, as every
 * wait does). While A lives, tasks of another runtime are refused the descriptor (-EINVAL), for
 * every kind of wait, rather than parked on a registration whose readiness A's workers would
 * hand to them. Once A has shut down, the descriptor is free for the other runtime.
 */
typedef struct two_rt {
    int pair[2];
    int a_wait;
    long b_read, b_write_full, b_fd_wait, b_accept, b_mark, after_read, after_wait;
    long after_mark_timed_out, after_mark_woken;
} two_rt;

static int register_in_a(void *p)
{
    two_rt *c = p;
    c->a_wait = weft_fd_wait(c->pair[0], WEFT_READABLE, weft_now());
    return 0;
}

static int use_from_b(void *p)
{
    two_rt *c = p;
    char buf[64 * 1024];
    memset(buf, 'w', sizeof(buf));
    c->b_read = weft_read(c->pair[0], buf, sizeof(buf));
    /* A write that fills the socket's buffers, then must wait for room. */
    long rc;
    while ((rc = weft_write(c->pair[0], buf, sizeof(buf))) > 0)
        ;
    c->b_write_full = rc;
    c->b_fd_wait = weft_fd_wait(c->pair[0], WEFT_READABLE, weft_now() + WEFT_SEC);
    c->b_accept = weft_accept(c->pair[0], NULL, NULL);
    weft_fd_edges e;
    c->b_mark = weft_fd_mark(c->pair[0], &e);
    return 0;
}

static int b_root(void *p)
{
    weft_scope *s;
    /* Only a broken runtime waits this long: each call should return at once. */
    weft_scope_opts o = {.timeout_ns = 2 * WEFT_SEC};
    REQUIRE_EQ(weft_scope_open(&s, &o), 0);
    REQUIRE_EQ(weft_spawn(s, use_from_b, p), 0);
    weft_scope_join(s);
    weft_scope_release(s);
    return 0;
}

static int b_after_a(void *p)
{
    two_rt *c = p;
    char buf[64 * 1024];
    /* Drain what the first run wrote, from this side's peer, so that this side's read waits. */
    while (read(c->pair[1], buf, sizeof(buf)) > 0)
        ;
    c->after_wait = weft_fd_wait(c->pair[0], WEFT_READABLE, weft_now() + 10 * WEFT_MSEC);
    CHECK_EQ(write(c->pair[1], "k", 1), 1);
    c->after_read = weft_read(c->pair[0], buf, 1);
    /* Marks work here now: nothing new, then a byte after the mark. */
    weft_fd_edges e;
    CHECK_EQ(weft_fd_mark(c->pair[0], &e), 0);
    c->after_mark_timed_out =
        weft_fd_wait_since(c->pair[0], WEFT_READABLE, &e, weft_now() + 10 * WEFT_MSEC);
    CHECK_EQ(write(c->pair[1], "m", 1), 1);
    c->after_mark_woken = weft_fd_wait_since(c->pair[0], WEFT_READABLE, &e, WEFT_NEVER);
    return 0;
}

Test(io_misuse, a_descriptor_of_another_runtime_is_refused, .timeout = 60)
{
    two_rt c;
    memset(&c, 0, sizeof(c));
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, c.pair), 0);
    weft_runtime *a = start(1);
    weft_handle *h;
    cr_assert_eq(weft_submit(a, register_in_a, &c, &h), 0);
    int st;
    cr_assert_eq(weft_handle_wait(h, weft_now() + SAFETY, &st), 0);
    weft_handle_release(h);
    cr_assert_eq(c.a_wait, -ETIMEDOUT);

    cr_assert_eq(run_on(1, b_root, &c), 0);
    cr_assert_eq(weft_runtime_shutdown(a), 0);
    cr_assert_eq(run_on(1, b_after_a, &c), 0);
    ASSERT_CHECKS();
    cr_assert_eq(c.b_read, -EINVAL, "weft_read: %ld", c.b_read);
    cr_assert_eq(c.b_write_full, -EINVAL, "weft_write: %ld", c.b_write_full);
    cr_assert_eq(c.b_fd_wait, -EINVAL, "weft_fd_wait: %ld", c.b_fd_wait);
    cr_assert_eq(c.b_accept, -EINVAL, "weft_accept: %ld", c.b_accept);
    cr_assert_eq(c.b_mark, -EINVAL, "weft_fd_mark: %ld", c.b_mark);
    cr_assert_eq(c.after_mark_timed_out, -ETIMEDOUT, "after A's shutdown, wait since a mark: %ld",
                 c.after_mark_timed_out);
    cr_assert_eq(c.after_mark_woken, WEFT_READABLE, "after A's shutdown, an edge after a mark: %ld",
                 c.after_mark_woken);
    cr_assert_eq(c.after_wait, -ETIMEDOUT, "after A's shutdown, fd_wait: %ld", c.after_wait);
    cr_assert_eq(c.after_read, 1, "after A's shutdown, read: %ld", c.after_read);
    weft_close(c.pair[0]);
    close(c.pair[1]);
}

/* ---- weft_close from a plain thread ---------------------------------------------------------- */

typedef struct plain_close {
    weft_runtime *rt;
    int pair[2];
    atomic_int in;
    long read_rc, write_rc;
} plain_close;

static int pc_reader(void *p)
{
    plain_close *c = p;
    char buf[16];
    atomic_fetch_add(&c->in, 1);
    c->read_rc = weft_read(c->pair[0], buf, sizeof(buf));
    return 0;
}

static int pc_writer(void *p)
{
    plain_close *c = p;
    char buf[64 * 1024];
    memset(buf, 'q', sizeof(buf));
    atomic_fetch_add(&c->in, 1);
    long rc;
    while ((rc = weft_write(c->pair[0], buf, sizeof(buf))) > 0)
        ;
    c->write_rc = rc;
    return 0;
}

static int pc_both_parked(void *p)
{
    plain_close *c = p;
    return atomic_load(&c->in) == 2 && all_parked(c->rt);
}

Test(io_misuse, weft_close_from_a_plain_thread_wakes_both_directions, .timeout = 60)
{
    plain_close c;
    memset(&c, 0, sizeof(c));
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, c.pair), 0);
    c.rt = start(1);
    weft_handle *hr, *hw;
    cr_assert_eq(weft_submit(c.rt, pc_reader, &c, &hr), 0);
    cr_assert_eq(weft_submit(c.rt, pc_writer, &c, &hw), 0);
    cr_assert(wait_for(pc_both_parked, &c), "the reader and the writer never parked");
    cr_assert_eq(weft_close(c.pair[0]), 0);
    int st;
    cr_assert_eq(weft_handle_wait(hr, weft_now() + SAFETY, &st), 0);
    cr_assert_eq(weft_handle_wait(hw, weft_now() + SAFETY, &st), 0);
    weft_handle_release(hr);
    weft_handle_release(hw);
    cr_assert_eq(weft_runtime_shutdown(c.rt), 0);
    cr_assert_eq(c.read_rc, -EBADF);
    cr_assert_eq(c.write_rc, -EBADF);
    /* Closed already: a second weft_close says so. */
    cr_assert_eq(weft_close(c.pair[0]), -EBADF);
    close(c.pair[1]);
}

/* ---- a plain close() whose number comes back ----------------------------------------------- */

/*
 * weft.h: a plain close() leaves the registration behind, and a later descriptor with the same
 * number may wait for ever, until cancelled or its deadline. Here: the new descriptor's
 * readiness never reaches the waiter (one worker, so the write comes after the park), the
 * deadline ends the wait, and so does a scope's deadline for weft_read. weft_close of the new
 * descriptor clears the stale registration: the number then works again.
 */
typedef struct reuse {
    int num;  /* the descriptor number that is closed and comes back */
    int peer; /* the new descriptor's peer */
    atomic_int waiting;
    int first, stale_wait, fresh_wait;
    long stale_read, fresh_read;
    weft_time waited;
} reuse;

/* A socket pair whose first end has the number `num`; its peer is returned. */
static int pair_at(int num)
{
    int p[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, p) != 0)
        return -1;
    if (p[0] != num) {
        if (dup3(p[0], num, O_CLOEXEC) != num)
            return -1;
        close(p[0]);
    }
    return p[1];
}

static int reuse_waiter(void *p)
{
    reuse *r = p;
    atomic_store(&r->waiting, 1);
    weft_time t0 = weft_now();
    r->stale_wait = weft_fd_wait(r->num, WEFT_READABLE, t0 + 50 * WEFT_MSEC);
    r->waited = weft_now() - t0;
    return 0;
}

static int reuse_stale_reader(void *p)
{
    reuse *r = p;
    char c;
    atomic_store(&r->waiting, 1);
    r->stale_read = weft_read(r->num, &c, 1);
    return 0;
}

static int reuse_fresh_reader(void *p)
{
    reuse *r = p;
    char c;
    atomic_store(&r->waiting, 1);
    r->fresh_read = weft_read(r->num, &c, 1);
    return 0;
}

static int reuse_writer(void *p)
{
    reuse *r = p;
    yield_until(&r->waiting, 1);
    /* One worker: the waiter ran from its flag to its park without a switch. */
    weft_yield();
    CHECK_EQ(write(r->peer, "n", 1), 1);
    return 0;
}

/* Runs `fn` and the writer in a scope with a deadline (0: none). */
static int with_writer(reuse *r, weft_fn fn, weft_time timeout)
{
    atomic_store(&r->waiting, 0);
    weft_scope *s;
    weft_scope_opts o = {.timeout_ns = timeout};
    REQUIRE_EQ(weft_scope_open(&s, &o), 0);
    REQUIRE_EQ(weft_spawn(s, fn, r), 0);
    REQUIRE_EQ(weft_spawn(s, reuse_writer, r), 0);
    int rc = weft_scope_join(s);
    weft_scope_release(s);
    return rc;
}

static int reuse_root(void *p)
{
    reuse *r = p;
    int old_peer = pair_at(r->num);
    REQUIRE_EQ(old_peer >= 0, 1);
    r->first = weft_fd_wait(r->num, WEFT_READABLE, weft_now()); /* registers it */
    close(r->num);                                              /* not weft_close */
    close(old_peer);
    r->peer = pair_at(r->num);
    REQUIRE_EQ(r->peer >= 0, 1);
    with_writer(r, reuse_waiter, 0);
    char c;
    CHECK_EQ(read(r->num, &c, 1), 1); /* the byte was there all along */
    CHECK_EQ(with_writer(r, reuse_stale_reader, 50 * WEFT_MSEC), -ETIMEDOUT);
    CHECK_EQ(read(r->num, &c, 1), 1);
    /* weft_close clears the stale registration; the number, reused again, works. */
    CHECK_EQ(weft_close(r->num), 0);
    close(r->peer);
    r->peer = pair_at(r->num);
    REQUIRE_EQ(r->peer >= 0, 1);
    with_writer(r, reuse_fresh_reader, 0);
    CHECK_EQ(weft_close(r->num), 0);
    close(r->peer);
    return 0;
}

Test(io_misuse, plain_close_then_reuse_ends_by_deadline_and_weft_close_repairs, .timeout = 60)
{
    reuse r;
    memset(&r, 0, sizeof(r));
    r.num = 200; /* above the test's own descriptors, below any limit */
    cr_assert_eq(run_on(1, reuse_root, &r), 0);
    ASSERT_CHECKS();
    cr_assert_eq(r.first, -ETIMEDOUT);
    cr_assert_eq(r.stale_wait, -ETIMEDOUT,
                 "the stale registration saw the new descriptor's readiness (%d): update weft.h",
                 r.stale_wait);
    cr_assert_geq(r.waited, 50 * WEFT_MSEC);
    cr_assert_eq(r.stale_read, -ETIMEDOUT);
    cr_assert_eq(r.fresh_read, 1);
}

/* ---- what epoll cannot watch; blocking descriptors ------------------------------------------ */

typedef struct files {
    int file, dir, pipe_blocking[2];
    int wait_file, wait_dir;
    long read_file, write_file, connect_file, connect_pipe, connect_bad, connect_closed;
    long read_blocking, eof_blocking, write_blocking;
    char got[8], got_pipe[2];
} files;

static int files_root(void *p)
{
    files *f = p;
    f->wait_file = weft_fd_wait(f->file, WEFT_READABLE | WEFT_WRITABLE, WEFT_NEVER);
    f->wait_dir = weft_fd_wait(f->dir, WEFT_READABLE, WEFT_NEVER);
    /* A regular file is always ready: the calls go straight through. */
    f->write_file = weft_write(f->file, "file", 4);
    CHECK_EQ(lseek(f->file, 0, SEEK_SET), 0);
    f->read_file = weft_read(f->file, f->got, sizeof(f->got));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(1)};
    f->connect_file = weft_connect(f->file, (struct sockaddr *)&a, sizeof(a));
    f->connect_pipe = weft_connect(f->pipe_blocking[1], (struct sockaddr *)&a, sizeof(a));
    f->connect_bad = weft_connect(-1, (struct sockaddr *)&a, sizeof(a));
    f->connect_closed = weft_connect(999, (struct sockaddr *)&a, sizeof(a));
    /* A blocking descriptor works (holding the worker while it blocks). */
    f->write_blocking = weft_write(f->pipe_blocking[1], "pb", 2);
    f->read_blocking = weft_read(f->pipe_blocking[0], f->got_pipe, 2);
    close(f->pipe_blocking[1]);
    f->eof_blocking = weft_read(f->pipe_blocking[0], f->got_pipe, 2);
    return 0;
}

Test(io_misuse, files_epoll_cannot_watch_and_blocking_descriptors, .timeout = 60)
{
    files f;
    memset(&f, 0, sizeof(f));
    char path[] = "/tmp/weft-io-misuse-XXXXXX";
    f.file = mkstemp(path);
    cr_assert_geq(f.file, 0);
    unlink(path);
    f.dir = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    cr_assert_geq(f.dir, 0);
    cr_assert_eq(pipe2(f.pipe_blocking, O_CLOEXEC), 0);
    cr_assert_eq(fcntl(999, F_GETFD), -1, "descriptor 999 is open in the test process");
    cr_assert_eq(run_on(2, files_root, &f), 0);
    ASSERT_CHECKS();
    cr_assert_eq(f.wait_file, -EPERM, "fd_wait on a regular file: %d", f.wait_file);
    cr_assert_eq(f.wait_dir, -EPERM, "fd_wait on a directory: %d", f.wait_dir);
    cr_assert_eq(f.write_file, 4);
    cr_assert_eq(f.read_file, 4);
    cr_assert_eq(memcmp(f.got, "file", 4), 0);
    cr_assert_eq(f.connect_file, -ENOTSOCK, "connect on a regular file: %ld", f.connect_file);
    cr_assert_eq(f.connect_pipe, -ENOTSOCK, "connect on a pipe: %ld", f.connect_pipe);
    cr_assert_eq(f.connect_bad, -EBADF);
    cr_assert_eq(f.connect_closed, -EBADF);
    cr_assert_eq(f.write_blocking, 2);
    cr_assert_eq(f.read_blocking, 2);
    cr_assert_eq(memcmp(f.got_pipe, "pb", 2), 0);
    cr_assert_eq(f.eof_blocking, 0);
    weft_close(f.file);
    close(f.dir);
    weft_close(f.pipe_blocking[0]);
}

/* A blocking read holds its worker, not the runtime: the byte it waits for comes from a task on
 * the other worker, whose own wait on a non-blocking descriptor is served meanwhile. */
typedef struct held {
    int blocking[2]; /* read end blocking, write end not */
    int pair[2];
    atomic_int reading;
    long blocked_read, echo_read;
} held;

static int held_reader(void *p)
{
    held *h = p;
    char c;
    atomic_store(&h->reading, 1);
    h->blocked_read = weft_read(h->blocking[0], &c, 1);
    return 0;
}

static int held_other(void *p)
{
    held *h = p;
    yield_until(&h->reading, 1);
    char c;
    CHECK_EQ(write(h->pair[1], "e", 1), 1);
    h->echo_read = weft_read(h->pair[0], &c, 1);
    CHECK_EQ(weft_write(h->blocking[1], "b", 1), 1);
    return 0;
}

static int held_root(void *p)
{
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    REQUIRE_EQ(weft_spawn(s, held_reader, p), 0);
    REQUIRE_EQ(weft_spawn(s, held_other, p), 0);
    CHECK_EQ(weft_scope_close(s), 0);
    return 0;
}

Test(io_misuse, a_blocking_read_holds_only_its_worker, .timeout = 60)
{
    held h;
    memset(&h, 0, sizeof(h));
    cr_assert_eq(pipe2(h.blocking, O_CLOEXEC), 0);
    cr_assert_eq(weft_fd_nonblock(h.blocking[1]), 0);
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, h.pair), 0);
    weft_config cfg = {.workers = 2, .watchdog_ns = -1};
    cr_assert_eq(weft_run(&cfg, held_root, &h), 0);
    ASSERT_CHECKS();
    cr_assert_eq(h.blocked_read, 1);
    cr_assert_eq(h.echo_read, 1);
    for (int i = 0; i < 2; i++) {
        weft_close(h.blocking[i]);
        weft_close(h.pair[i]);
    }
}

/* ---- one waiter per direction -------------------------------------------------------------- */

typedef struct busy {
    int pair[2];
    atomic_int parked;
    long second_write, both_wait, first_read, first_write;
} busy;

static int busy_reader(void *p)
{
    busy *b = p;
    char c;
    atomic_fetch_add(&b->parked, 1);
    b->first_read = weft_read(b->pair[0], &c, 1);
    return 0;
}

static int busy_writer(void *p)
{
    busy *b = p;
    char buf[64 * 1024];
    memset(buf, 'b', sizeof(buf));
    atomic_fetch_add(&b->parked, 1);
    long rc;
    while ((rc = weft_write(b->pair[0], buf, sizeof(buf))) > 0)
        ;
    b->first_write = rc;
    return 0;
}

static int busy_root(void *p)
{
    busy *b = p;
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    REQUIRE_EQ(weft_spawn(s, busy_reader, b), 0);
    REQUIRE_EQ(weft_spawn(s, busy_writer, b), 0);
    yield_until(&b->parked, 2);
    for (int i = 0; i < 100; i++)
        weft_yield();
    /* The buffers are full and the reader waits: a second of each is refused at once. */
    char buf[4096] = {0};
    b->second_write = weft_write(b->pair[0], buf, sizeof(buf));
    b->both_wait = weft_fd_wait(b->pair[0], WEFT_READABLE | WEFT_WRITABLE, WEFT_NEVER);
    CHECK_EQ(weft_close(b->pair[0]), 0);
    CHECK_EQ(weft_scope_close(s), 0);
    return 0;
}

Test(io_misuse, a_second_waiter_in_a_direction_is_refused, .timeout = 60)
{
    busy b;
    memset(&b, 0, sizeof(b));
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, b.pair), 0);
    cr_assert_eq(run_on(1, busy_root, &b), 0);
    ASSERT_CHECKS();
    cr_assert_eq(b.second_write, -EBUSY);
    cr_assert_eq(b.both_wait, -EBUSY);
    cr_assert_eq(b.first_read, -EBADF);
    cr_assert_eq(b.first_write, -EBADF);
    close(b.pair[1]);
}

/* ---- a task woken, then its descriptor closed and the number reused before it runs ------------
 */

/*
 * At one worker: task R waits to read (or to write) descriptor `a`, task K to read `c`. The root
 * makes both ready, `c` first, and joins: the worker's next look at the poller wakes K, then R,
 * in that order. K runs first: weft_close(a), and a new socket pair takes a's number. R, woken
 * by a's old readiness, must then return -EBADF, and touch neither the new socket nor its peer.
 */
typedef struct stale {
    int writing; /* R waits to write, not to read */
    int a[2], c[2], fresh[2];
    weft__task *_Atomic r, *_Atomic k;
    long r_rc, fresh_got;
    char r_buf[16];
} stale;

static int stale_r(void *p)
{
    stale *x = p;
    atomic_store(&x->r, weft__task_self());
    if (x->writing)
        x->r_rc = weft_write(x->a[0], "PRIVATE", 7);
    else
        x->r_rc = weft_read(x->a[0], x->r_buf, sizeof(x->r_buf) - 1);
    return 0;
}

static int stale_k(void *p)
{
    stale *x = p;
    atomic_store(&x->k, weft__task_self());
    char b;
    CHECK_EQ(weft_read(x->c[0], &b, 1), 1);
    int num = x->a[0];
    CHECK_EQ(weft_close(num), 0);
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, x->fresh), 0);
    CHECK_EQ(x->fresh[0], num); /* the lowest free number: the one just closed */
    if (!x->writing)
        CHECK_EQ(write(x->fresh[1], "SECRET", 6), 6);
    return 0;
}

static int stale_root(void *p)
{
    stale *x = p;
    char fill[4096];
    memset(fill, 'f', sizeof(fill));
    if (x->writing)
        while (write(x->a[0], fill, sizeof(fill)) > 0) /* R's write must wait for room */
            ;
    weft_scope *s;
    weft_scope_opts o = {.timeout_ns = SAFETY};
    REQUIRE_EQ(weft_scope_open(&s, &o), 0);
    REQUIRE_EQ(weft_spawn(s, stale_r, x), 0);
    REQUIRE_EQ(weft_spawn(s, stale_k, x), 0);
    while (!support_parked(&x->r) || !support_parked(&x->k))
        REQUIRE_EQ(weft_yield(), 0);
    CHECK_EQ(write(x->c[1], "k", 1), 1);
    if (x->writing)
        while (read(x->a[1], fill, sizeof(fill)) > 0) /* room for R's write */
            ;
    else
        CHECK_EQ(write(x->a[1], "x", 1), 1);
    CHECK_EQ(weft_scope_close(s), 0);
    char got[16];
    ssize_t n = read(x->fresh[1], got, sizeof(got)); /* what R may have written to the new pair */
    x->fresh_got = n > 0 ? n : 0;
    return 0;
}

static void stale_rounds(int writing)
{
    for (int i = 0; i < 20; i++) {
        stale x;
        memset(&x, 0, sizeof(x));
        x.writing = writing;
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, x.c), 0);
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, x.a), 0);
        cr_assert_eq(run_on(1, stale_root, &x), 0);
        ASSERT_CHECKS();
        cr_assert_eq(x.r_rc, -EBADF, "round %d: R's %s returned %ld (read \"%s\")", i,
                     writing ? "write" : "read", x.r_rc, x.r_buf);
        cr_assert_eq(x.fresh_got, 0, "round %d: R wrote %ld bytes into the new socket", i,
                     x.fresh_got);
        close(x.a[1]);
        close(x.c[0]);
        close(x.c[1]);
        close(x.fresh[0]);
        close(x.fresh[1]);
    }
}

Test(io_misuse, a_read_woken_before_weft_close_does_not_read_the_next_file, .timeout = 60)
{
    stale_rounds(0);
}

Test(io_misuse, a_write_woken_before_weft_close_does_not_write_the_next_file, .timeout = 60)
{
    stale_rounds(1);
}

/* ---- weft_connect to a UNIX-domain listener whose queue is full -------------------------------
 */

/*
 * connect(2) of a non-blocking UNIX-domain socket says EAGAIN when the listener's queue is full,
 * and no readiness tells when there is room. weft_connect waits all the same, as a blocking
 * connect would: until the listener accepts (then it connects), its deadline (-ETIMEDOUT) or a
 * cancel (-ECANCELED); never -EAGAIN.
 */
typedef struct backlog {
    struct sockaddr_un addr;
    int listener;
    int conns[8];
    int n;        /* connections made before the queue was full */
    long waiting; /* the connect that had to wait, once the listener accepted */
    long timed_out, cancelled;
    atomic_int connecting;
    int closed_fd, reused_fd; /* a waiting connect's socket, weft_closed; the next socket made */
    long closed;              /* what that connect returned */
} backlog;

static int connect_one(backlog *b)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    b->conns[b->n] = fd;
    return weft_connect(fd, (struct sockaddr *)&b->addr, sizeof(b->addr));
}

static int backlog_waiter(void *p)
{
    backlog *b = p;
    atomic_store(&b->connecting, 1);
    b->waiting = connect_one(b);
    return 0;
}

static int backlog_cancelled(void *p)
{
    backlog *b = p;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    atomic_store(&b->connecting, 1);
    b->cancelled = weft_connect(fd, (struct sockaddr *)&b->addr, sizeof(b->addr));
    close(fd);
    return 0;
}

static int backlog_closed(void *p)
{
    backlog *b = p;
    b->closed_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    atomic_store(&b->connecting, 1);
    b->closed = weft_connect(b->closed_fd, (struct sockaddr *)&b->addr, sizeof(b->addr));
    return 0;
}

static int backlog_root(void *p)
{
    backlog *b = p;
    /* Fill the queue: each connect completes at once until it is full (a backlog of 1 holds 2). */
    long rc;
    weft_scope *s;
    weft_scope_opts o = {.timeout_ns = 50 * WEFT_MSEC};
    REQUIRE_EQ(weft_scope_open(&s, &o), 0);
    while ((rc = connect_one(b)) == 0 && b->n < 6)
        b->n++;
    b->timed_out = rc;
    close(b->conns[b->n]);
    weft_scope_close(s);
    /* A cancel ends such a connect as it ends any wait. */
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    REQUIRE_EQ(weft_spawn(s, backlog_cancelled, b), 0);
    REQUIRE_EQ(yield_until(&b->connecting, 1), 0);
    for (int i = 0; i < 10; i++)
        REQUIRE_EQ(weft_yield(), 0);
    REQUIRE_EQ(weft_scope_cancel(s), 0);
    weft_scope_close(s);
    /* One that waits, then connects once the listener accepts one of those queued. */
    atomic_store(&b->connecting, 0);
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    REQUIRE_EQ(weft_spawn(s, backlog_waiter, b), 0);
    REQUIRE_EQ(yield_until(&b->connecting, 1), 0);
    for (int i = 0; i < 10; i++)
        REQUIRE_EQ(weft_yield(), 0);
    int accepted = weft_accept(b->listener, NULL, NULL);
    CHECK(accepted >= 0);
    CHECK_EQ(weft_scope_close(s), 0);
    close(accepted);
    /* One that waits, ended by a weft_close of its socket, whose number the next socket takes
     * before the listener has room: that socket is not the waiting call's to connect. */
    atomic_store(&b->connecting, 0);
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    REQUIRE_EQ(weft_spawn(s, backlog_closed, b), 0);
    REQUIRE_EQ(yield_until(&b->connecting, 1), 0);
    for (int i = 0; i < 10; i++)
        REQUIRE_EQ(weft_yield(), 0);
    CHECK_EQ(weft_close(b->closed_fd), 0);
    b->reused_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    accepted = weft_accept(b->listener, NULL, NULL);
    CHECK(accepted >= 0);
    CHECK_EQ(weft_scope_close(s), 0);
    close(accepted);
    return 0;
}

/* A UNIX-domain stream listener at a path of its own (`name` and the process id) in /tmp,
 * non-blocking, with a queue of `queue`; its address in *addr. */
static int unix_listener(struct sockaddr_un *addr, const char *name, int queue)
{
    memset(addr, 0, sizeof(*addr));
    addr->sun_family = AF_UNIX;
    snprintf(addr->sun_path, sizeof(addr->sun_path), "/tmp/weft-test-%s-%d", name, getpid());
    unlink(addr->sun_path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    cr_assert(fd >= 0);
    cr_assert_eq(bind(fd, (struct sockaddr *)addr, sizeof(*addr)), 0);
    cr_assert_eq(listen(fd, queue), 0);
    return fd;
}

Test(io_misuse, a_unix_connect_to_a_full_queue_waits_for_room, .timeout = 60)
{
    backlog b;
    memset(&b, 0, sizeof(b));
    b.listener = unix_listener(&b.addr, "backlog", 1);
    int rc = run_on(2, backlog_root, &b);
    unlink(b.addr.sun_path);
    cr_assert_eq(rc, 0);
    ASSERT_CHECKS();
    cr_assert(b.n >= 1 && b.n < 6, "connections before the queue was full: %d", b.n);
    cr_assert_eq(b.timed_out, -ETIMEDOUT, "the connect to the full queue: %ld", b.timed_out);
    cr_assert_eq(b.cancelled, -ECANCELED, "the cancelled connect: %ld", b.cancelled);
    cr_assert_eq(b.waiting, 0, "the connect that waited for room: %ld", b.waiting);
    struct sockaddr_un peer;
    socklen_t len = sizeof(peer);
    cr_assert_eq(getpeername(b.conns[b.n], (struct sockaddr *)&peer, &len), 0);
    cr_assert_eq(b.closed, -EBADF, "the connect whose socket was weft_closed: %ld", b.closed);
    cr_assert_eq(b.reused_fd, b.closed_fd, "the next socket took the number");
    len = sizeof(peer);
    cr_assert_eq(getpeername(b.reused_fd, (struct sockaddr *)&peer, &len), -1,
                 "the next socket with the number was connected by the call on the old one");
    for (int i = 0; i <= b.n; i++)
        close(b.conns[i]);
    close(b.reused_fd);
    close(b.listener);
}

/* ---- weft_connect of another runtime's descriptor ------------------------------------------ */

/* A connect that completes at once needs no wait, so it works from a task of another runtime
 * (weft.h: only a wait is refused); a UNIX-domain connect to a listener with room is one. */
typedef struct cross_connect {
    struct sockaddr_un addr;
    int fd;
    long a_mark, b_connect;
} cross_connect;

static int cross_mark_in_a(void *p)
{
    cross_connect *c = p;
    weft_fd_edges e;
    c->a_mark = weft_fd_mark(c->fd, &e);
    return 0;
}

static int cross_connect_from_b(void *p)
{
    cross_connect *c = p;
    c->b_connect = weft_connect(c->fd, (struct sockaddr *)&c->addr, sizeof(c->addr));
    return 0;
}

Test(io_misuse, a_connect_that_need_not_wait_works_on_another_runtime_s_descriptor, .timeout = 60)
{
    cross_connect c;
    memset(&c, 0, sizeof(c));
    int listener = unix_listener(&c.addr, "cross", 8);
    c.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    weft_runtime *a = start(1);
    weft_handle *h;
    cr_assert_eq(weft_submit(a, cross_mark_in_a, &c, &h), 0);
    int st;
    cr_assert_eq(weft_handle_wait(h, weft_now() + SAFETY, &st), 0);
    weft_handle_release(h);
    int rc = run_on(1, cross_connect_from_b, &c);
    cr_assert_eq(weft_runtime_shutdown(a), 0);
    unlink(c.addr.sun_path);
    cr_assert_eq(rc, 0);
    cr_assert_eq(c.a_mark, 0, "the mark in A: %ld", c.a_mark);
    cr_assert_eq(c.b_connect, 0, "the connect from B: %ld", c.b_connect);
    struct sockaddr_un peer;
    socklen_t len = sizeof(peer);
    cr_assert_eq(getpeername(c.fd, (struct sockaddr *)&peer, &len), 0);
    weft_close(c.fd);
    close(listener);
}

/* ---- a read side shut where the kernel still says EAGAIN ---------------------------------------
 * After shutdown(SHUT_RD), a datagram socket answers a non-blocking receive with EAGAIN where a
 * blocking one returns 0, and a UNIX-domain listener after shutdown(SHUT_RDWR) answers a
 * non-blocking accept with EAGAIN where a blocking one returns EINVAL; no edge is to come. The
 * calls return what the blocking ones do, for a task already waiting as for one that comes
 * after the shutdown, instead of waiting until their deadlines. */
typedef struct shut_case {
    int udp, listener;
    atomic_int waiting;
    long recv_parked, recv_after, accept_parked, accept_after;
} shut_case;

static int shut_recv(void *p)
{
    shut_case *c = p;
    char byte;
    atomic_fetch_add(&c->waiting, 1);
    c->recv_parked = weft_recv(c->udp, &byte, 1, 0);
    return 0;
}

static int shut_accept(void *p)
{
    shut_case *c = p;
    atomic_fetch_add(&c->waiting, 1);
    c->accept_parked = weft_accept(c->listener, NULL, NULL);
    return 0;
}

static int shut_root(void *p)
{
    shut_case *c = p;
    weft_scope *s;
    /* A deadline far beyond the test's, should a call wait on: it must not. */
    REQUIRE_EQ(weft_scope_open(&s, &(weft_scope_opts){.timeout_ns = 30 * WEFT_SEC}), 0);
    REQUIRE_EQ(weft_spawn(s, shut_recv, c), 0);
    REQUIRE_EQ(weft_spawn(s, shut_accept, c), 0);
    REQUIRE_EQ(yield_until(&c->waiting, 2), 0);
    for (int i = 0; i < 10; i++)
        REQUIRE_EQ(weft_yield(), 0);
    CHECK_EQ(shutdown(c->udp, SHUT_RD), 0);
    CHECK_EQ(shutdown(c->listener, SHUT_RDWR), 0);
    CHECK_EQ(weft_scope_close(s), 0);
    char byte;
    c->recv_after = weft_recv(c->udp, &byte, 1, 0);
    c->accept_after = weft_accept(c->listener, NULL, NULL);
    return 0;
}

Test(io_misuse, a_read_side_shut_ends_a_datagram_receive_and_a_unix_accept, .timeout = 60)
{
    shut_case c;
    memset(&c, 0, sizeof(c));
    c.udp = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    cr_assert_eq(bind(c.udp, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(getsockname(c.udp, (struct sockaddr *)&a, &alen), 0);
    cr_assert_eq(connect(c.udp, (struct sockaddr *)&a, alen), 0); /* shutdown wants a peer */
    struct sockaddr_un addr;
    c.listener = unix_listener(&addr, "shut", 8);
    int rc = run_on(2, shut_root, &c);
    unlink(addr.sun_path);
    cr_assert_eq(rc, 0);
    ASSERT_CHECKS();
    cr_assert_eq(c.recv_parked, 0, "a receive waiting at the shutdown: %ld", c.recv_parked);
    cr_assert_eq(c.recv_after, 0, "a receive after the shutdown: %ld", c.recv_after);
    cr_assert_eq(c.accept_parked, -EINVAL, "an accept waiting at the shutdown: %ld",
                 c.accept_parked);
    cr_assert_eq(c.accept_after, -EINVAL, "an accept after the shutdown: %ld", c.accept_after);
    weft_close(c.udp);
    weft_close(c.listener);
}

/* ---- a socket connected again after its read side was shut -------------------------------------
 * A refused connect shuts the socket's both sides, and the poller notes the read side shut; the
 * same socket may connect again (after a refusal, or a disconnect with connect(AF_UNSPEC)), and
 * is open then, with no event to say so. A read that finds nothing there must wait for data, as a
 * blocking read would (here until a short deadline), not return the end of the stream. */
typedef struct again_case {
    int noted;  /* the poller had noted the read side shut before the new connect */
    long empty; /* the read before anything was sent */
    long got;   /* the read after */
    char buf[8];
} again_case;

/* Whether the poller has noted `fd`'s read side shut. */
static int read_side_noted(int fd)
{
    weft__fd_mark m;
    weft__fd_watch(fd, WEFT__FD_READ, &m);
    return m.rec && weft__fd_read_shut(&m);
}

static int again_root(void *p)
{
    again_case *c = p;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    /* Bound and not listening yet: a connect to it is refused. */
    int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    REQUIRE_EQ(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
    REQUIRE_EQ(getsockname(l, (struct sockaddr *)&a, &alen), 0);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK_EQ(weft_connect(fd, (struct sockaddr *)&a, alen), -ECONNREFUSED);
    /* The other worker, idle in the poller, takes the refusal's events. */
    weft_time end = weft_now() + SAFETY;
    while (!(c->noted = read_side_noted(fd)) && weft_now() < end)
        weft_yield();
    REQUIRE_EQ(listen(l, 4), 0);
    /* The first try after a refusal may report the old failure (ECONNABORTED). */
    int rc = -1;
    for (int i = 0; i < 3 && rc != 0; i++)
        rc = weft_connect(fd, (struct sockaddr *)&a, alen);
    CHECK_EQ(rc, 0);
    int server = weft_accept(l, NULL, NULL);
    CHECK(server >= 0);
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, &(weft_scope_opts){.timeout_ns = 100 * WEFT_MSEC}), 0);
    c->empty = weft_read(fd, c->buf, sizeof c->buf);
    CHECK_EQ(weft_scope_close(s), -ETIMEDOUT);
    CHECK_EQ(weft_write(server, "hello", 5), 5);
    c->got = weft_read(fd, c->buf, sizeof c->buf);
    weft_close(server);
    weft_close(fd);
    weft_close(l);
    return 0;
}

Test(io_misuse, a_socket_connected_again_after_a_refusal_waits_for_its_data, .timeout = 60)
{
    again_case c;
    memset(&c, 0, sizeof(c));
    cr_assert_eq(run_on(2, again_root, &c), 0);
    ASSERT_CHECKS();
    cr_assert(c.noted, "the refused connect's shut read side was never noted");
    cr_assert_eq(c.empty, -ETIMEDOUT, "a read with nothing sent returned %ld", c.empty);
    cr_assert_eq(c.got, 5, "the read returned %ld, not the 5 bytes sent", c.got);
    cr_assert(memcmp(c.buf, "hello", 5) == 0);
}

/* ---- a receive of 0 bytes ----------------------------------------------------------------------
 * Returns 0 at once, as a read of 0 bytes does, on a socket with nothing to read: the kernel
 * answers a non-blocking receive of 0 bytes with EAGAIN, where waiting would be for data the
 * call would not take. */
typedef struct nothing_case {
    long udp, unix_stream, tcp, from, read;
} nothing_case;

static int nothing_root(void *p)
{
    nothing_case *c = p;
    char byte;
    weft_scope *s;
    /* Should a call wait, its deadline ends it (and the test). */
    REQUIRE_EQ(weft_scope_open(&s, &(weft_scope_opts){.timeout_ns = 5 * WEFT_SEC}), 0);
    int udp = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    CHECK_EQ(bind(udp, (struct sockaddr *)&a, sizeof(a)), 0);
    c->udp = weft_recv(udp, &byte, 0, 0);
    c->from = weft_recvfrom(udp, &byte, 0, 0, (struct sockaddr *)&a, &alen);
    int pair[2];
    REQUIRE_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair), 0);
    c->unix_stream = weft_recv(pair[0], &byte, 0, 0);
    c->read = weft_read(pair[0], &byte, 0);
    int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    a.sin_port = 0;
    CHECK_EQ(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
    alen = sizeof(a);
    CHECK_EQ(getsockname(l, (struct sockaddr *)&a, &alen), 0);
    CHECK_EQ(listen(l, 1), 0);
    int t = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK_EQ(weft_connect(t, (struct sockaddr *)&a, alen), 0);
    c->tcp = weft_recv(t, &byte, 0, 0);
    CHECK_EQ(weft_scope_close(s), 0);
    int fds[] = {udp, pair[0], pair[1], l, t};
    for (int i = 0; i < 5; i++)
        weft_close(fds[i]);
    return 0;
}

Test(io_misuse, a_receive_of_zero_bytes_returns_at_once, .timeout = 60)
{
    nothing_case c;
    memset(&c, 0xff, sizeof(c));
    cr_assert_eq(run_on(1, nothing_root, &c), 0);
    ASSERT_CHECKS();
    cr_assert_eq(c.udp, 0, "UDP recv: %ld", c.udp);
    cr_assert_eq(c.from, 0, "UDP recvfrom: %ld", c.from);
    cr_assert_eq(c.unix_stream, 0, "UNIX stream recv: %ld", c.unix_stream);
    cr_assert_eq(c.read, 0, "UNIX stream read: %ld", c.read);
    cr_assert_eq(c.tcp, 0, "TCP recv: %ld", c.tcp);
}
