// SPDX-License-Identifier: MIT
/*
 * I/O on descriptors: waits that park the task, the wrappers, weft_close, cancellation and
 * deadlines of I/O waits, and the ways sockets end (half-close, reset, a reader gone).
 *
 * Every server and client here is a task of the same runtime, on 127.0.0.1 and a port the
 * kernel picks. Tasks never call Criterion's assertions: they record with CHECK, and the test
 * asserts once weft_run has returned.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support_criterion.h"
#include "support_task.h"
#include "task.h"
#include "weft.h"

/* A connected pair of non-blocking Unix stream sockets. */
static void unix_pair(int *a, int *b)
{
    int pair[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair), 0);
    *a = pair[0];
    *b = pair[1];
}

/* ---- sockets on the loopback ------------------------------------------------------------- */

/* A non-blocking listening socket on 127.0.0.1 and a free port, stored in *port. */
static int listen_on_loopback(int backlog, uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, backlog) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

/* A task-side connect to 127.0.0.1:port: the connected non-blocking socket, or a negative code. */
static int connect_loopback(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = htons(port)};
    int rc = weft_connect(fd, (struct sockaddr *)&a, sizeof(a));
    if (rc != 0) {
        weft_close(fd);
        return rc;
    }
    return fd;
}

/* ---- a pipe: a reader parks until the writer writes -------------------------------------------
 */

typedef struct pipe_case {
    int fds[2];
    atomic_int reader_waiting;
    char got[16];
    ssize_t n;
} pipe_case;

static int pipe_reader(void *p)
{
    pipe_case *pc = p;
    atomic_store(&pc->reader_waiting, 1);
    pc->n = weft_read(pc->fds[0], pc->got, sizeof(pc->got));
    return 0;
}

static int pipe_writer(void *p)
{
    pipe_case *pc = p;
    /* The reader runs first on one worker (its spawn is newer... either way the read works). */
    while (!atomic_load(&pc->reader_waiting))
        weft_yield();
    weft_yield();
    CHECK_EQ(weft_write(pc->fds[1], "hello", 5), 5);
    return 0;
}

static int pipe_root(void *p)
{
    pipe_case *pc = p;
    REQUIRE_EQ(pipe2(pc->fds, O_NONBLOCK | O_CLOEXEC), 0);
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    REQUIRE_EQ(weft_spawn(s, pipe_reader, pc), 0);
    REQUIRE_EQ(weft_spawn(s, pipe_writer, pc), 0);
    CHECK_EQ(weft_scope_close(s), 0);
    CHECK_EQ(weft_close(pc->fds[0]), 0);
    CHECK_EQ(weft_close(pc->fds[1]), 0);
    return 0;
}

Test(io, read_parks_until_the_pipe_has_data)
{
    for (unsigned workers = 1; workers <= 2; workers++) {
        pipe_case pc;
        memset(&pc, 0, sizeof(pc));
        cr_assert_eq(run_on(workers, pipe_root, &pc), 0);
        ASSERT_CHECKS();
        cr_assert_eq(pc.n, 5);
        cr_assert_eq(memcmp(pc.got, "hello", 5), 0);
    }
}

/* ---- an echo over TCP: accept, connect, many round trips ----------------------------------- */

#define ECHO_CLIENTS 50
#define ECHO_ROUNDS 200

typedef struct echo_case {
    int listener;
    uint16_t port;
    atomic_int served, round_trips, mismatches;
} echo_case;

static int echo_conn(void *p)
{
    int fd = (int)(intptr_t)p;
    char buf[256];
    ssize_t n;
    while ((n = weft_read(fd, buf, sizeof(buf))) > 0)
        if (weft_write_all(fd, buf, (size_t)n, NULL) != n)
            break;
    weft_close(fd);
    return 0;
}

static int echo_server(void *p)
{
    echo_case *ec = p;
    weft_scope *conns;
    REQUIRE_EQ(weft_scope_open(&conns, NULL), 0);
    for (int i = 0; i < ECHO_CLIENTS; i++) {
        int fd = weft_accept(ec->listener, NULL, NULL);
        CHECK_GE(fd, 0);
        if (fd < 0)
            break;
        CHECK_EQ(weft_spawn(conns, echo_conn, (void *)(intptr_t)fd), 0);
        atomic_fetch_add(&ec->served, 1);
    }
    CHECK_EQ(weft_scope_close(conns), 0);
    return 0;
}

static int echo_client(void *p)
{
    echo_case *ec = p;
    int fd = connect_loopback(ec->port);
    CHECK_GE(fd, 0);
    if (fd < 0)
        return fd;
    char out[64], in[64];
    for (int r = 0; r < ECHO_ROUNDS; r++) {
        memset(out, 'a' + (r % 26), sizeof(out));
        out[0] = (char)r;
        CHECK_EQ(weft_send_all(fd, out, sizeof(out), 0, NULL), (ssize_t)sizeof(out));
        size_t got = 0;
        while (got < sizeof(in)) {
            ssize_t n = weft_recv(fd, in + got, sizeof(in) - got, 0);
            CHECK(n > 0);
            if (n <= 0)
                goto out;
            got += (size_t)n;
        }
        if (memcmp(in, out, sizeof(in)) != 0)
            atomic_fetch_add(&ec->mismatches, 1);
        atomic_fetch_add(&ec->round_trips, 1);
    }
out:
    CHECK_EQ(weft_close(fd), 0);
    return 0;
}

static int echo_root(void *p)
{
    echo_case *ec = p;
    ec->listener = listen_on_loopback(ECHO_CLIENTS, &ec->port);
    REQUIRE_EQ(ec->listener >= 0, 1);
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    REQUIRE_EQ(weft_spawn(s, echo_server, ec), 0);
    for (int i = 0; i < ECHO_CLIENTS; i++)
        REQUIRE_EQ(weft_spawn(s, echo_client, ec), 0);
    CHECK_EQ(weft_scope_close(s), 0);
    CHECK_EQ(weft_close(ec->listener), 0);
    return 0;
}

Test(io, echo_over_tcp_one_task_per_connection, .timeout = 60)
{
    for (unsigned workers = 1; workers <= 2; workers++) {
        echo_case ec;
        memset(&ec, 0, sizeof(ec));
        cr_assert_eq(run_on(workers, echo_root, &ec), 0);
        ASSERT_CHECKS();
        cr_assert_eq(atomic_load(&ec.served), ECHO_CLIENTS);
        cr_assert_eq(atomic_load(&ec.round_trips), ECHO_CLIENTS * ECHO_ROUNDS);
        cr_assert_eq(atomic_load(&ec.mismatches), 0);
    }
}

/* ---- cancellation and deadlines end every kind of I/O wait ------------------------------ */

enum { IN_ACCEPT, IN_CONNECT, IN_READ, IN_WRITE, IN_FD_WAIT, NWAITS };
static const char *const wait_name[NWAITS] = {"accept", "connect", "read", "write", "fd_wait"};

typedef struct stuck {
    int kind, by_deadline;
    int listener, full_listener, a, b; /* a connected pair: a <-> b */
    uint16_t full_port;
    atomic_int waiting;
    long rc;
    weft_cancel_reason reason;
} stuck;

static int stuck_waiter(void *p)
{
    stuck *st = p;
    atomic_store(&st->waiting, 1);
    char buf[64 * 1024];
    memset(buf, 'x', sizeof(buf));
    switch (st->kind) {
    case IN_ACCEPT:
        st->rc = weft_accept(st->listener, NULL, NULL);
        break;
    case IN_CONNECT: {
        /* A listener whose backlog is full, and not accepting: the handshake waits. */
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                                .sin_port = htons(st->full_port)};
        st->rc = weft_connect(fd, (struct sockaddr *)&a, sizeof(a));
        weft_close(fd);
        break;
    }
    case IN_READ:
        st->rc = weft_read(st->a, buf, sizeof(buf));
        break;
    case IN_WRITE: /* the peer never reads: the buffers fill, then the write parks */
        for (;;) {
            ssize_t n = weft_write(st->a, buf, sizeof(buf));
            if (n < 0) {
                st->rc = n;
                break;
            }
        }
        break;
    case IN_FD_WAIT:
        st->rc = weft_fd_wait(st->a, WEFT_READABLE, WEFT_NEVER);
        break;
    }
    st->reason = weft_cancel_reason_self();
    return 0;
}

/* Fills the backlog of a listener that never accepts, so that the next connect stays pending.
 * Returns how many client sockets it left open in fds[]. */
static int fill_backlog(uint16_t port, int *fds, int max)
{
    int n = 0;
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = htons(port)};
    for (; n < max; n++) {
        fds[n] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int rc = connect(fds[n], (struct sockaddr *)&a, sizeof(a));
        if (rc != 0 && errno == EINPROGRESS) {
            struct pollfd pf = {.fd = fds[n], .events = POLLOUT};
            if (poll(&pf, 1, 50) == 0) { /* pending: the backlog is full */
                close(fds[n]);
                break;
            }
        }
    }
    return n;
}

static int stuck_root(void *p)
{
    stuck *st = p;
    weft_scope *s;
    weft_scope_opts o = {0};
    if (st->by_deadline)
        o.timeout_ns = 20 * WEFT_MSEC;
    REQUIRE_EQ(weft_scope_open(&s, &o), 0);
    REQUIRE_EQ(weft_spawn(s, stuck_waiter, st), 0);
    if (!st->by_deadline) {
        while (!atomic_load(&st->waiting))
            weft_yield();
        /* Let it reach its wait: it parks, and this task runs again. */
        for (int i = 0; i < 100; i++)
            weft_yield();
        CHECK_EQ(weft_scope_cancel(s), 0);
    }
    weft_scope_join(s);
    CHECK_EQ(weft_scope_release(s), 0);
    return 0;
}

static void run_stuck(int kind, int by_deadline)
{
    stuck st;
    memset(&st, 0, sizeof(st));
    st.kind = kind;
    st.by_deadline = by_deadline;
    uint16_t port;
    st.listener = listen_on_loopback(8, &port);
    cr_assert_geq(st.listener, 0);
    st.full_listener = listen_on_loopback(0, &st.full_port);
    cr_assert_geq(st.full_listener, 0);
    int backlog[64];
    int nbacklog = kind == IN_CONNECT ? fill_backlog(st.full_port, backlog, 64) : 0;
    unix_pair(&st.a, &st.b);
    cr_assert_eq(run_on(2, stuck_root, &st), 0);
    ASSERT_CHECKS();
    long want = by_deadline ? -ETIMEDOUT : -ECANCELED;
    cr_assert_eq(st.rc, want, "%s: returned %ld, expected %ld", wait_name[kind], st.rc, want);
    cr_assert_eq(st.reason, by_deadline ? WEFT_CANCEL_DEADLINE : WEFT_CANCEL_EXPLICIT,
                 "%s: reason %d", wait_name[kind], st.reason);
    for (int i = 0; i < nbacklog; i++)
        close(backlog[i]);
    weft_close(st.a);
    weft_close(st.b);
    weft_close(st.listener);
    weft_close(st.full_listener);
}

Test(io, cancel_ends_every_io_wait, .timeout = 60)
{
    for (int k = 0; k < NWAITS; k++)
        run_stuck(k, 0);
}

Test(io, deadline_ends_every_io_wait, .timeout = 60)
{
    for (int k = 0; k < NWAITS; k++)
        run_stuck(k, 1);
}

/* ---- closing a descriptor other tasks wait on --------------------------------------------- */

typedef struct closing {
    int a, b;
    atomic_int waiting;
    weft__task *_Atomic reader, *_Atomic writer;
    long read_rc, write_rc, second_rc;
} closing;

static int close_reader(void *p)
{
    closing *c = p;
    atomic_store(&c->reader, weft__task_self());
    atomic_fetch_add(&c->waiting, 1);
    char buf[16];
    c->read_rc = weft_read(c->a, buf, sizeof(buf));
    return 0;
}

static int close_second_reader(void *p)
{
    closing *c = p;
    char buf[16];
    c->second_rc = weft_read(c->a, buf, sizeof(buf));
    atomic_fetch_add(&c->waiting, 1);
    return 0;
}

static int close_writer(void *p)
{
    closing *c = p;
    char buf[64 * 1024];
    memset(buf, 'y', sizeof(buf));
    atomic_store(&c->writer, weft__task_self());
    atomic_fetch_add(&c->waiting, 1);
    for (;;) {
        ssize_t n = weft_write(c->a, buf, sizeof(buf));
        if (n < 0) {
            c->write_rc = n;
            return 0;
        }
    }
}

static int close_root(void *p)
{
    closing *c = p;
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    REQUIRE_EQ(weft_spawn(s, close_reader, c), 0);
    REQUIRE_EQ(weft_spawn(s, close_writer, c), 0);
    /* Both parked before anything else: a second reader that came first would be the one. */
    while (!support_parked(&c->reader) || !support_parked(&c->writer))
        weft_yield();
    /* A second reader of the same descriptor is refused, not queued. */
    REQUIRE_EQ(weft_spawn(s, close_second_reader, c), 0);
    while (atomic_load(&c->waiting) < 3)
        weft_yield();
    CHECK_EQ(weft_close(c->a), 0);
    CHECK_EQ(weft_scope_close(s), 0);
    return 0;
}

Test(io, close_wakes_every_waiter_with_ebadf, .timeout = 60)
{
    for (unsigned workers = 1; workers <= 2; workers++) {
        closing c;
        memset(&c, 0, sizeof(c));
        unix_pair(&c.a, &c.b);
        cr_assert_eq(run_on(workers, close_root, &c), 0);
        ASSERT_CHECKS();
        cr_assert_eq(c.read_rc, -EBADF);
        cr_assert_eq(c.write_rc, -EBADF);
        cr_assert_eq(c.second_rc, -EBUSY);
        close(c.b);
    }
}

/* ---- ends of a connection: half-close, reset, a reader gone ------------------------------- */

typedef struct ends {
    int listener;
    uint16_t port;
    long eof_rc, reset_rc, pipe_rc;
} ends;

static int ends_root(void *p)
{
    ends *e = p;
    char buf[64];
    /* Half-close: the peer shuts its side for writing; a read sees the end of the stream. */
    int c = connect_loopback(e->port);
    REQUIRE_EQ(c >= 0, 1);
    int s = weft_accept(e->listener, NULL, NULL);
    REQUIRE_EQ(s >= 0, 1);
    CHECK_EQ(shutdown(c, SHUT_WR), 0);
    e->eof_rc = weft_read(s, buf, sizeof(buf));
    /* ... while the other direction still works. */
    CHECK_EQ(weft_write(s, "ok", 2), 2);
    CHECK_EQ(weft_read(c, buf, sizeof(buf)), 2);
    weft_close(c);
    weft_close(s);

    /* Reset: the peer closes with a zero linger time. */
    c = connect_loopback(e->port);
    REQUIRE_EQ(c >= 0, 1);
    s = weft_accept(e->listener, NULL, NULL);
    REQUIRE_EQ(s >= 0, 1);
    struct linger l = {.l_onoff = 1, .l_linger = 0};
    CHECK_EQ(setsockopt(c, SOL_SOCKET, SO_LINGER, &l, sizeof(l)), 0);
    weft_close(c);
    e->reset_rc = weft_read(s, buf, sizeof(buf));
    weft_close(s);

    /* A reader gone: writes fail with EPIPE, and no SIGPIPE ends the process. */
    int pfd[2];
    REQUIRE_EQ(pipe2(pfd, O_NONBLOCK | O_CLOEXEC), 0);
    close(pfd[0]);
    e->pipe_rc = weft_write(pfd[1], "x", 1);
    weft_close(pfd[1]);
    return 0;
}

Test(io, half_close_reset_and_broken_pipe, .timeout = 60)
{
    ends e;
    memset(&e, 0, sizeof(e));
    e.listener = listen_on_loopback(8, &e.port);
    cr_assert_geq(e.listener, 0);
    cr_assert_eq(run_on(1, ends_root, &e), 0);
    ASSERT_CHECKS();
    cr_assert_eq(e.eof_rc, 0, "end of stream after the peer's SHUT_WR");
    cr_assert_eq(e.reset_rc, -ECONNRESET);
    cr_assert_eq(e.pipe_rc, -EPIPE);
    close(e.listener);
}

/* ---- EMFILE on accept returns at once ------------------------------------------------------- */

typedef struct emfile {
    int listener;
    uint16_t port;
    long accept_rc;
} emfile;

static int emfile_root(void *p)
{
    emfile *e = p;
    /* A client connection waits in the backlog; the process has no descriptor left for it. */
    int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                            .sin_port = htons(e->port)};
    connect(c, (struct sockaddr *)&a, sizeof(a));
    int hog[256], n = 0;
    while (n < 256 && (hog[n] = dup(0)) >= 0)
        n++;
    e->accept_rc = weft_accept(e->listener, NULL, NULL);
    for (int i = 0; i < n; i++)
        close(hog[i]);
    close(c);
    return 0;
}

Test(io, emfile_on_accept_is_returned_not_waited, .timeout = 60)
{
    /* In a child: it lowers its own descriptor limit. */
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        alarm(20);
        emfile e;
        memset(&e, 0, sizeof(e));
        e.listener = listen_on_loopback(8, &e.port);
        struct rlimit rl = {.rlim_cur = 64, .rlim_max = 64};
        if (e.listener < 0 || setrlimit(RLIMIT_NOFILE, &rl) != 0)
            _exit(3);
        int rc = run_on(1, emfile_root, &e);
        _exit(rc == 0 && e.accept_rc == -EMFILE ? 0 : 1);
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status), "the child did not exit (signal %d)",
              WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    cr_assert_eq(WEXITSTATUS(status), 0, "accept did not return -EMFILE (child status %d)",
                 WEXITSTATUS(status));
}

/* ---- weft_fd_wait ---------------------------------------------------------------------------- */

typedef struct fdw {
    int a, b;
    int writable, timed_out, readable;
} fdw;

static int fdw_root(void *p)
{
    fdw *f = p;
    f->writable = weft_fd_wait(f->a, WEFT_READABLE | WEFT_WRITABLE, WEFT_NEVER);
    f->timed_out = weft_fd_wait(f->a, WEFT_READABLE, weft_now() + 5 * WEFT_MSEC);
    CHECK_EQ(write(f->b, "z", 1), 1);
    f->readable = weft_fd_wait(f->a, WEFT_READABLE, WEFT_NEVER);
    return 0;
}

Test(io, fd_wait_reports_what_is_ready)
{
    fdw f;
    memset(&f, 0, sizeof(f));
    unix_pair(&f.a, &f.b);
    cr_assert_eq(run_on(1, fdw_root, &f), 0);
    ASSERT_CHECKS();
    cr_assert_eq(f.writable, WEFT_WRITABLE);
    cr_assert_eq(f.timed_out, -ETIMEDOUT);
    cr_assert_eq(f.readable, WEFT_READABLE);
    weft_close(f.a);
    close(f.b);
}

/* ---- weft_fd_mark and weft_fd_wait_since ------------------------------------------------------
 */

typedef struct marks {
    int a, b;
    int early, stale, woken, after_drain, writer_ran;
    int full_timed_out, room, closed_wait, stale_mark, cancelled;
    atomic_int parked_reader; /* the reader of `closing` is parked: close it */
} marks;

static int marks_writer(void *p)
{
    marks *m = p;
    m->writer_ran = 1;
    CHECK_EQ(write(m->b, "y", 1), 1);
    return 0;
}

static int marks_root(void *p)
{
    marks *m = p;
    char buf[64];
    weft_fd_edges e;
    /* An edge between the mark and the wait: the wait returns at once. */
    CHECK_EQ(weft_fd_mark(m->a, &e), 0);
    CHECK_EQ(write(m->b, "x", 1), 1);
    m->early = weft_fd_wait_since(m->a, WEFT_READABLE, &e, WEFT_NEVER);
    /* Data that was there before the mark, renewed by nothing: no edge (edge-triggered). */
    CHECK_EQ(weft_fd_mark(m->a, &e), 0);
    m->stale = weft_fd_wait_since(m->a, WEFT_READABLE, &e, weft_now() + 5 * WEFT_MSEC);
    /* Mark, read to EAGAIN, wait: parks until the writer (which runs once this task parks, on
     * the only worker) sends. */
    CHECK_EQ(weft_fd_mark(m->a, &e), 0);
    while (read(m->a, buf, sizeof buf) > 0)
        ;
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    CHECK_EQ(weft_spawn(s, marks_writer, m), 0);
    m->woken = weft_fd_wait_since(m->a, WEFT_READABLE, &e, WEFT_NEVER);
    m->after_drain = m->writer_ran;
    CHECK_EQ(weft_scope_close(s), 0);
    CHECK_EQ(read(m->a, buf, sizeof buf), 1);
    /* Writable: fill the socket, then room comes when the peer reads. */
    CHECK_EQ(weft_fd_mark(m->a, &e), 0);
    while (write(m->a, buf, sizeof buf) > 0)
        ;
    m->full_timed_out = weft_fd_wait_since(m->a, WEFT_WRITABLE, &e, weft_now() + 5 * WEFT_MSEC);
    while (read(m->b, buf, sizeof buf) > 0)
        ;
    m->room = weft_fd_wait_since(m->a, WEFT_READABLE | WEFT_WRITABLE, &e, WEFT_NEVER);
    return 0;
}

Test(io, fd_wait_since_ends_at_an_edge_after_the_mark)
{
    marks m;
    memset(&m, 0, sizeof(m));
    unix_pair(&m.a, &m.b);
    cr_assert_eq(run_on(1, marks_root, &m), 0);
    ASSERT_CHECKS();
    cr_assert_eq(m.early, WEFT_READABLE);
    cr_assert_eq(m.stale, -ETIMEDOUT, "data from before the mark ended the wait: %d", m.stale);
    cr_assert_eq(m.woken, WEFT_READABLE);
    cr_assert(m.after_drain, "the wait returned before anything was written");
    cr_assert_eq(m.full_timed_out, -ETIMEDOUT);
    cr_assert(m.room & WEFT_WRITABLE, "room: %d", m.room);
    weft_close(m.a);
    close(m.b);
}

static int marks_closer(void *p)
{
    marks *m = p;
    while (!atomic_load(&m->parked_reader))
        weft_yield();
    CHECK_EQ(weft_close(m->a), 0);
    return 0;
}

static int marks_waiter(void *p)
{
    marks *m = p;
    weft_fd_edges e;
    CHECK_EQ(weft_fd_mark(m->a, &e), 0);
    atomic_store(&m->parked_reader, 1); /* one worker: the closer runs once this task parks */
    m->closed_wait = weft_fd_wait_since(m->a, WEFT_READABLE, &e, WEFT_NEVER);
    m->stale_mark = weft_fd_wait_since(m->a, WEFT_READABLE, &e, WEFT_NEVER);
    return 0;
}

static int marks_cancelled(void *p)
{
    marks *m = p;
    weft_fd_edges e;
    CHECK_EQ(weft_fd_mark(m->b, &e), 0);
    m->cancelled = weft_fd_wait_since(m->b, WEFT_READABLE, &e, WEFT_NEVER);
    return 0;
}

static int marks_close_root(void *p)
{
    marks *m = p;
    weft_scope *s, *c;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    CHECK_EQ(weft_spawn(s, marks_waiter, m), 0);
    CHECK_EQ(weft_spawn(s, marks_closer, m), 0);
    CHECK_EQ(weft_scope_close(s), 0);
    REQUIRE_EQ(weft_scope_open(&c, NULL), 0);
    CHECK_EQ(weft_spawn(c, marks_cancelled, m), 0);
    weft_yield(); /* it parks: nothing is ever written to b */
    CHECK_EQ(weft_scope_cancel(c), 0);
    CHECK_EQ(weft_scope_close(c), -ECANCELED);
    return 0;
}

Test(io, fd_wait_since_ends_at_close_and_cancel)
{
    marks m;
    memset(&m, 0, sizeof(m));
    unix_pair(&m.a, &m.b);
    cr_assert_eq(run_on(1, marks_close_root, &m), 0);
    ASSERT_CHECKS();
    cr_assert_eq(m.closed_wait, -EBADF);
    cr_assert_eq(m.stale_mark, -EBADF, "a mark from before weft_close: %d", m.stale_mark);
    cr_assert_eq(m.cancelled, -ECANCELED);
    weft_close(m.b);
}
