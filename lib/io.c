// SPDX-License-Identifier: MIT
/*
 * The public I/O calls (weft.h, "I/O on file descriptors"): each tries its system call, and
 * when the descriptor is not ready parks on its record (fd.h) and tries again.
 *
 * errno is read only inside the non-inlined system-call helpers below, right after the call that
 * set it: a task may resume on another OS thread after a park, and glibc lets the compiler keep
 * errno's (thread-local) address across one. Every public call puts the caller's errno back as
 * it found it (errno_keep.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "errno_keep.h"
#include "fd.h"
#include "scope.h"
#include "wait.h"

/* A write to a pipe or socket whose reader is gone raised SIGPIPE; weft's threads block it, so
 * it stays pending on this thread: take it, so that it never reaches the program later. */
static __attribute__((noinline)) void drop_sigpipe(void)
{
    sigset_t pipe_only;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    struct timespec none = {0, 0};
    int saved = errno;
    while (sigtimedwait(&pipe_only, NULL, &none) == SIGPIPE)
        ;
    errno = saved;
}

/* A result of a system call as a count or a negative errno value. */
static __attribute__((noinline)) ssize_t result_of(ssize_t r)
{
    if (r >= 0)
        return r;
    int e = errno;
    if (e == EPIPE)
        drop_sigpipe();
    return e == EWOULDBLOCK ? -EAGAIN : -e;
}

typedef ssize_t (*io_op)(int fd, void *ctx);

static ssize_t op_accept(int fd, void *c);

/* Whether the read side of `fd` is shut now. The registration's note of it (weft__fd_read_shut)
 * says it was once; a socket that connects again (after a refused connect, which shuts it, or a
 * disconnect with connect(AF_UNSPEC)) is open again, with no event to say so. Asked only where
 * the note would end a read that found nothing: rare, so one system call there costs nothing. */
static __attribute__((noinline)) int read_side_shut(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    int n = poll(&p, 1, 0);
    return n < 0 || (n == 1 && (p.revents & (POLLRDHUP | POLLNVAL)) != 0);
}

/* The loop every call shares: try, and while the descriptor is not ready, park and try again.
 * The mark is taken before the try, so that an edge that comes between a try and the park is
 * seen by the park (fd.h). `whole`: for a plain read of that many bytes, which a short result
 * may show to have emptied the descriptor (weft__fd_note_short_read), 0 for any other call; a
 * read that the last short one showed to find nothing is not tried at all. */
static ssize_t io_try(int fd, int dir, io_op op, void *ctx, size_t whole)
{
    weft__task *t = weft__task_self();
    if (!t)
        return -EPERM;
    int code = weft__wait_enter(t, dir == WEFT__FD_READ ? WEFT__ON_FD_READ : WEFT__ON_FD_WRITE,
                                (const void *)(intptr_t)fd);
    if (code)
        return code;
    weft__fd_mark last = {NULL, 0, 0}; /* the registration this call waited on, if it did */
    for (;;) {
        weft__fd_mark m;
        weft__fd_watch(fd, dir, &m);
        /* Woken, then closed with weft_close before this try. */
        if (last.rec && !weft__fd_same_registration(&m, &last))
            return -EBADF;
        ssize_t n = whole && weft__fd_read_dry(&m, t) ? -EAGAIN : op(fd, ctx);
        if (n > 0 && (size_t)n < whole && m.rec)
            weft__fd_note_short_read(fd, &m);
        if (n != -EAGAIN && n != -EINTR)
            return n;
        if (n == -EINTR)
            continue;
        /* Nothing to read, and nothing will come: what a blocking call returns. */
        if (dir == WEFT__FD_READ && m.rec && weft__fd_read_shut(&m) && read_side_shut(fd))
            return op == op_accept ? -EINVAL : 0;
        int rc =
            m.rec ? weft__fd_park(t, 1 << dir, &m, WEFT_NEVER) : weft__fd_register(fd, dir, &m);
        if (rc < 0)
            return rc;
        last = m;
    }
}

/* io_try, errno as the caller had it. */
static ssize_t io_as(int fd, int dir, io_op op, void *ctx, size_t whole)
{
    int kept = weft__errno_keep();
    ssize_t n = io_try(fd, dir, op, ctx, whole);
    weft__errno_put_back(kept);
    return n;
}

static ssize_t io(int fd, int dir, io_op op, void *ctx)
{
    return io_as(fd, dir, op, ctx, 0);
}

typedef struct buf_ctx {
    void *buf;
    const void *cbuf;
    size_t len;
    int flags;
    const struct iovec *iov;
    int iovcnt;
    struct sockaddr *addr;
    const struct sockaddr *caddr;
    socklen_t *addrlen;
    socklen_t caddrlen;
} buf_ctx;

static ssize_t op_read(int fd, void *c)
{
    buf_ctx *b = c;
    return result_of(read(fd, b->buf, b->len));
}

static ssize_t op_write(int fd, void *c)
{
    buf_ctx *b = c;
    return result_of(write(fd, b->cbuf, b->len));
}

static ssize_t op_readv(int fd, void *c)
{
    buf_ctx *b = c;
    return result_of(readv(fd, b->iov, b->iovcnt));
}

static ssize_t op_writev(int fd, void *c)
{
    buf_ctx *b = c;
    return result_of(writev(fd, b->iov, b->iovcnt));
}

static ssize_t op_recvfrom(int fd, void *c)
{
    buf_ctx *b = c;
    return result_of(recvfrom(fd, b->buf, b->len, b->flags, b->addr, b->addrlen));
}

/* A receive of 0 bytes: 0 at once when nothing is there (a blocking one would wait for data
 * only to drop it, or keep it, by the socket's kind), as the read of 0 bytes does. */
static ssize_t op_recv_nothing(int fd, void *c)
{
    ssize_t n = op_recvfrom(fd, c);
    return n == -EAGAIN ? 0 : n;
}

static ssize_t op_sendto(int fd, void *c)
{
    buf_ctx *b = c;
    return result_of(sendto(fd, b->cbuf, b->len, b->flags | MSG_NOSIGNAL, b->caddr, b->caddrlen));
}

static ssize_t op_accept(int fd, void *c)
{
    buf_ctx *b = c;
    return result_of(accept4(fd, b->addr, b->addrlen, SOCK_NONBLOCK | SOCK_CLOEXEC));
}

/* recv's and recvfrom's way into io_as. A peek leaves the data where it was, and a read of the
 * error queue says nothing of the data: neither notes a short read. Urgent data is the one place
 * where a TCP read stops short of what is queued, so a program that reads it ends the notes for
 * the descriptor (weft__fd_note_urgent). */
static ssize_t io_recv(int fd, buf_ctx *b)
{
    if ((b->flags & MSG_OOB) && weft__fd_note_urgent(fd) != 0)
        return -ENOMEM; /* no record to keep the note: the read could stop short later */
    if (b->len == 0)
        return io_as(fd, WEFT__FD_READ, op_recv_nothing, b, 0);
    size_t whole = b->flags & (MSG_PEEK | MSG_OOB | MSG_ERRQUEUE) ? 0 : b->len;
    return io_as(fd, WEFT__FD_READ, op_recvfrom, b, whole);
}

ssize_t weft_read(int fd, void *buf, size_t len)
{
    buf_ctx b = {.buf = buf, .len = len};
    return io_as(fd, WEFT__FD_READ, op_read, &b, len);
}

ssize_t weft_write(int fd, const void *buf, size_t len)
{
    buf_ctx b = {.cbuf = buf, .len = len};
    return io(fd, WEFT__FD_WRITE, op_write, &b);
}

ssize_t weft_readv(int fd, const struct iovec *iov, int iovcnt)
{
    buf_ctx b = {.iov = iov, .iovcnt = iovcnt};
    return io(fd, WEFT__FD_READ, op_readv, &b);
}

ssize_t weft_writev(int fd, const struct iovec *iov, int iovcnt)
{
    buf_ctx b = {.iov = iov, .iovcnt = iovcnt};
    return io(fd, WEFT__FD_WRITE, op_writev, &b);
}

ssize_t weft_recv(int fd, void *buf, size_t len, int flags)
{
    buf_ctx b = {.buf = buf, .len = len, .flags = flags};
    return io_recv(fd, &b);
}

ssize_t weft_send(int fd, const void *buf, size_t len, int flags)
{
    buf_ctx b = {.cbuf = buf, .len = len, .flags = flags};
    return io(fd, WEFT__FD_WRITE, op_sendto, &b);
}

ssize_t weft_recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *addr,
                      socklen_t *addrlen)
{
    buf_ctx b = {.buf = buf, .len = len, .flags = flags, .addr = addr, .addrlen = addrlen};
    return io_recv(fd, &b);
}

ssize_t weft_sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *addr,
                    socklen_t addrlen)
{
    buf_ctx b = {.cbuf = buf, .len = len, .flags = flags, .caddr = addr, .caddrlen = addrlen};
    return io(fd, WEFT__FD_WRITE, op_sendto, &b);
}

int weft_accept(int fd, struct sockaddr *addr, socklen_t *addrlen)
{
    buf_ctx b = {.addr = addr, .addrlen = addrlen};
    return (int)io(fd, WEFT__FD_READ, op_accept, &b);
}

/* ---- writing all of it -------------------------------------------------------------------- */

static ssize_t all_done(ssize_t rc, size_t sent, size_t *done)
{
    if (done)
        *done = sent;
    return rc < 0 ? rc : (ssize_t)sent;
}

ssize_t weft_write_all(int fd, const void *buf, size_t len, size_t *done)
{
    if (!weft__task_self())
        return all_done(-EPERM, 0, done); /* also with nothing to write, as weft_write says */
    size_t sent = 0;
    while (sent < len) {
        ssize_t n = weft_write(fd, (const char *)buf + sent, len - sent);
        if (n < 0)
            return all_done(n, sent, done);
        sent += (size_t)n;
    }
    return all_done(0, sent, done);
}

ssize_t weft_send_all(int fd, const void *buf, size_t len, int flags, size_t *done)
{
    if (!weft__task_self())
        return all_done(-EPERM, 0, done);
    size_t sent = 0;
    while (sent < len) {
        ssize_t n = weft_send(fd, (const char *)buf + sent, len - sent, flags);
        if (n < 0)
            return all_done(n, sent, done);
        sent += (size_t)n;
    }
    return all_done(0, sent, done);
}

ssize_t weft_writev_all(int fd, const struct iovec *iov, int iovcnt, size_t *done)
{
    if (!weft__task_self())
        return all_done(-EPERM, 0, done);
    if (iovcnt < 0 || (iovcnt > 0 && !iov))
        return all_done(-EINVAL, 0, done);
    size_t sent = 0;
    int i = 0;
    while (i < iovcnt) {
        /* writev takes at most IOV_MAX buffers (else EINVAL); the rest go in later turns. */
        ssize_t n = weft_writev(fd, iov + i, iovcnt - i < IOV_MAX ? iovcnt - i : IOV_MAX);
        if (n < 0)
            return all_done(n, sent, done);
        sent += (size_t)n;
        /* Past the buffers written whole; the first one written in part is finished alone
         * (the caller's array is left as it was). */
        size_t left = (size_t)n;
        while (i < iovcnt && left >= iov[i].iov_len)
            left -= iov[i++].iov_len;
        if (i < iovcnt && left > 0) {
            size_t part = 0;
            ssize_t rc = weft_write_all(fd, (const char *)iov[i].iov_base + left,
                                        iov[i].iov_len - left, &part);
            sent += part;
            if (rc < 0)
                return all_done(rc, sent, done);
            i++;
        }
    }
    return all_done(0, sent, done);
}

/* ---- connecting ------------------------------------------------------------------------- */

static __attribute__((noinline)) int connect_errno(int fd, const struct sockaddr *addr,
                                                   socklen_t len)
{
    return connect(fd, addr, len) == 0 ? 0 : -errno;
}

/* The pauses between tries of a connect that found its listener's queue full (weft_connect). */
#define CONNECT_PAUSE_MIN (50 * WEFT_USEC)
#define CONNECT_PAUSE_MAX (10 * WEFT_MSEC)

/* 1 once the connection attempt on `fd` is over (its result in *err), 0 while it goes on. */
static __attribute__((noinline)) int connect_over(int fd, int *err)
{
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    if (poll(&p, 1, 0) < 0) {
        *err = -errno;
        return 1;
    }
    if (!(p.revents & (POLLOUT | POLLERR | POLLHUP | POLLNVAL)))
        return 0;
    if (p.revents & POLLNVAL) {
        *err = -EBADF;
        return 1;
    }
    int so = 0;
    socklen_t len = sizeof(so);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &len) != 0)
        so = errno;
    *err = -so;
    return 1;
}

/* Moves the mark `m` of a connect's wait on to the counts of `fd` now: 0, or -EBADF when `fd` was
 * closed with weft_close since `m` was taken (the number may name another socket by now). */
static int connect_mark_again(int fd, weft__fd_mark *m)
{
    weft__fd_mark now;
    weft__fd_watch(fd, WEFT__FD_WRITE, &now);
    if (!weft__fd_same_registration(&now, m))
        return -EBADF;
    *m = now;
    return 0;
}

static int connect_body(int fd, const struct sockaddr *addr, socklen_t addrlen)
{
    weft__task *t = weft__task_self();
    if (!t)
        return -EPERM;
    int code = weft__wait_enter(t, WEFT__ON_FD_WRITE, (const void *)(intptr_t)fd);
    if (code)
        return code;
    /* The mark first: the edge that says the connection is made may come at once. A descriptor
     * of another runtime (-EINVAL) may still connect at once: only a wait is refused. */
    weft__fd_mark m;
    int registered = weft__fd_register(fd, WEFT__FD_WRITE, &m);
    if (registered < 0 && registered != -EINVAL)
        /* epoll refuses only what is no socket (a regular file, a directory): connect(2) would
         * have said so. */
        return registered == -EPERM ? -ENOTSOCK : registered;
    int rc = connect_errno(fd, addr, addrlen);
    /* A UNIX-domain socket whose listener's queue is full: connect(2) says EAGAIN and starts
     * nothing, and no readiness says when there is room (a blocking connect waits for it inside
     * the kernel). So it is tried again after pauses that grow from CONNECT_PAUSE_MIN to
     * CONNECT_PAUSE_MAX, each a wait on the descriptor that a cancel, a deadline or a
     * weft_close ends: after a weft_close the number may name another socket, not to be
     * connected. */
    for (weft_time pause = CONNECT_PAUSE_MIN; rc == -EAGAIN;
         pause = pause * 2 < CONNECT_PAUSE_MAX ? pause * 2 : CONNECT_PAUSE_MAX) {
        int slept;
        if (registered < 0) {
            slept = weft_sleep_for(pause); /* another runtime's: its close is not ours to see */
        } else {
            slept = weft__fd_park(t, 1 << WEFT__FD_WRITE, &m, weft_now() + pause);
            if (slept == -ETIMEDOUT)
                slept = weft_checkpoint(); /* the pause, unless the scope's deadline came */
            if (slept == 0)
                slept = connect_mark_again(fd, &m);
        }
        if (slept)
            return slept;
        rc = connect_errno(fd, addr, addrlen);
    }
    if (rc != -EINPROGRESS && rc != -EINTR && rc != -EALREADY)
        return rc;
    if (registered < 0)
        return registered; /* it would have to wait on another runtime's descriptor */
    for (;;) {
        int err;
        if (connect_over(fd, &err))
            return err;
        rc = weft__fd_park(t, 1 << WEFT__FD_WRITE, &m, WEFT_NEVER);
        if (rc < 0)
            return rc;
        if ((rc = connect_mark_again(fd, &m)) != 0)
            return rc;
    }
}

/* ---- waiting without I/O ----------------------------------------------------------------- */

/* Whether the waits' `deadline` has come; a wait without one reads no clock. */
static inline int passed(weft_time deadline)
{
    return deadline != WEFT_NEVER && deadline <= weft_now();
}

/* The bits of `events` that `fd` is ready for now (a poll without waiting), or a negative errno
 * value. */
static __attribute__((noinline)) int ready_now(int fd, int events)
{
    struct pollfd p = {.fd = fd,
                       .events = (short)(((events & WEFT_READABLE) ? POLLIN : 0) |
                                         ((events & WEFT_WRITABLE) ? POLLOUT : 0))};
    if (poll(&p, 1, 0) < 0)
        return -errno;
    if (p.revents & POLLNVAL)
        return -EBADF;
    int ready = 0;
    if (p.revents & (POLLIN | POLLHUP | POLLERR))
        ready |= WEFT_READABLE;
    if (p.revents & (POLLOUT | POLLHUP | POLLERR))
        ready |= WEFT_WRITABLE;
    return ready & events;
}

/* The readiness bits of the directions of `dirs` whose edge counts moved since the marks `m`
 * (one per direction asked, reading first, all of one record); -EBADF when the descriptor was
 * closed since (its record is no longer registered, or in another generation). */
static int edges_since(int fd, int dirs, const weft__fd_mark *m)
{
    int bits = 0;
    for (int d = 0, n = 0; d < 2; d++) {
        if (!(dirs & (1 << d)))
            continue;
        weft__fd_mark now;
        weft__fd_watch(fd, d, &now);
        if (!weft__fd_same_registration(&now, &m[n]))
            return -EBADF;
        if (now.seq != m[n].seq)
            bits |= d == WEFT__FD_READ ? WEFT_READABLE : WEFT_WRITABLE;
        n++;
    }
    return bits;
}

/* The start both readiness waits share: `events` checked (-EINVAL without either bit), the
 * wait noted for a dump and the cancel state looked at. The directions asked (a mask of
 * 1 << WEFT__FD_READ and 1 << WEFT__FD_WRITE), or a negative code. */
static int wait_begin(weft__task *t, int fd, int events)
{
    /* Any other bit is a mistake (poll(2)'s POLLOUT is 4): a wait on the rest would never end. */
    if (!events || (events & ~(WEFT_READABLE | WEFT_WRITABLE)))
        return -EINVAL;
    int code = weft__wait_enter(t,
                                events == WEFT_READABLE   ? WEFT__ON_FD_READ
                                : events == WEFT_WRITABLE ? WEFT__ON_FD_WRITE
                                                          : WEFT__ON_FD_EITHER,
                                (const void *)(intptr_t)fd);
    if (code)
        return code;
    return ((events & WEFT_READABLE) ? 1 << WEFT__FD_READ : 0) |
           ((events & WEFT_WRITABLE) ? 1 << WEFT__FD_WRITE : 0);
}

static int fd_wait_body(int fd, int events, weft_time deadline)
{
    weft__task *t = weft__task_self();
    if (!t)
        return -EPERM;
    int dirs = wait_begin(t, fd, events);
    if (dirs < 0)
        return dirs;
    events &= WEFT_READABLE | WEFT_WRITABLE;
    weft__fd_mark last = {NULL, 0, 0}; /* the registration this call waited on, if it did */
    for (;;) {
        weft__fd_mark m[2];
        int n = 0;
        for (int d = 0; d < 2; d++) {
            if (!(dirs & (1 << d)))
                continue;
            weft__fd_watch(fd, d, &m[n]);
            /* Closed with weft_close since this call waited: not a file to register anew. */
            if (last.rec && !weft__fd_same_registration(&m[n], &last))
                return -EBADF;
            if (!m[n].rec) {
                int rc = weft__fd_register(fd, d, &m[n]);
                if (rc < 0)
                    return rc;
            }
            n++;
        }
        int ready = ready_now(fd, events);
        if (ready != 0)
            return ready;
        if (passed(deadline))
            return -ETIMEDOUT;
        int rc = weft__fd_park(t, dirs, m, deadline);
        if (rc < 0)
            return rc;
        last = m[0];
        /* Woken by an edge: the directions whose count moved were ready when it came, which is
         * all that a readiness call can promise; asking poll() again would cost a system call
         * per wait to learn it. A count that moved without an edge of ours (the record changed
         * hands) falls through to the look above. */
        int bits = edges_since(fd, dirs, m);
        if (bits > 0)
            return bits;
    }
}

static int fd_mark_body(int fd, weft_fd_edges *edges)
{
    weft__task *t = weft__task_self();
    if (!t)
        return -EPERM;
    if (!edges)
        return -EINVAL;
    weft__fd_mark m[2];
    for (int d = 0; d < 2; d++) {
        weft__fd_watch(fd, d, &m[d]);
        if (!m[d].rec) {
            int rc = weft__fd_register(fd, d, &m[d]);
            if (rc < 0)
                return rc;
        }
    }
    /* Another runtime's (its waits would be refused at the first look: refused here), or closed
     * since either look. */
    int rc = weft__fd_still_ours(m, 2, t);
    if (rc)
        return rc;
    edges->gen = m[0].gen;
    edges->seq[WEFT__FD_READ] = m[0].seq;
    edges->seq[WEFT__FD_WRITE] = m[1].seq;
    return 0;
}

static int fd_wait_since_body(int fd, int events, const weft_fd_edges *since, weft_time deadline)
{
    weft__task *t = weft__task_self();
    if (!t)
        return -EPERM;
    if (!since)
        return -EINVAL;
    int dirs = wait_begin(t, fd, events);
    if (dirs < 0)
        return dirs;
    weft__fd_mark m[2];
    int n = 0;
    for (int d = 0; d < 2; d++) {
        if (!(dirs & (1 << d)))
            continue;
        weft__fd_watch(fd, d, &m[n]);
        if (!m[n].rec)
            return -EBADF; /* never registered, or closed since */
        m[n].gen = since->gen;
        m[n].seq = since->seq[d];
        n++;
    }
    for (;;) {
        int bits = edges_since(fd, dirs, m);
        if (bits != 0)
            return bits;
        if (passed(deadline))
            return -ETIMEDOUT;
        int rc = weft__fd_park(t, dirs, m, deadline);
        if (rc < 0)
            return rc;
    }
}

static int fd_nonblock_body(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0))
        return -errno;
    return 0;
}

static int close_body(int fd)
{
    if (fd < 0)
        return -EBADF;
    weft__fd_close_begin(fd);
    int rc = close(fd) == 0 ? 0 : -errno;
    weft__fd_close_end(fd);
    return rc;
}

/* ---- the public calls that are no I/O loop: errno as the caller had it ---------------- */

int weft_connect(int fd, const struct sockaddr *addr, socklen_t addrlen)
{
    int kept = weft__errno_keep();
    int rc = connect_body(fd, addr, addrlen);
    weft__errno_put_back(kept);
    return rc;
}

int weft_fd_wait(int fd, int events, weft_time deadline)
{
    int kept = weft__errno_keep();
    int rc = fd_wait_body(fd, events, deadline);
    weft__errno_put_back(kept);
    return rc;
}

int weft_fd_mark(int fd, weft_fd_edges *edges)
{
    int kept = weft__errno_keep();
    int rc = fd_mark_body(fd, edges);
    weft__errno_put_back(kept);
    return rc;
}

int weft_fd_wait_since(int fd, int events, const weft_fd_edges *since, weft_time deadline)
{
    int kept = weft__errno_keep();
    int rc = fd_wait_since_body(fd, events, since, deadline);
    weft__errno_put_back(kept);
    return rc;
}

int weft_fd_nonblock(int fd)
{
    int kept = weft__errno_keep();
    int rc = fd_nonblock_body(fd);
    weft__errno_put_back(kept);
    return rc;
}

int weft_close(int fd)
{
    int kept = weft__errno_keep();
    int rc = close_body(fd);
    weft__errno_put_back(kept);
    return rc;
}
