// SPDX-License-Identifier: MIT
/*
 * weft's calls never set errno (weft.h): each call here is made with errno set to a value no
 * system call gives, and errno must read the same afterwards. From a plain thread: the runtime's
 * start, run, end, submissions and waits, a dump, calls on a bad descriptor. From tasks: I/O calls
 * that fail (a bad descriptor, a pipe whose reader is gone, a regular file, a refused connect)
 * and that park before they succeed. And a task's errno is its own across suspension points:
 * tasks that each set a value of their own, then yield and sleep among others doing the same on
 * the same worker threads, and beside a socket ping-pong that keeps the poller busy, read their
 * own value back every time; a new task, deferred or not, does not start with its record's last
 * value.
 *
 * Usage: errno_kept
 */
#define STRESS_NAME "errno_kept"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include <wchar.h>

#include "../support.h"
#include "weft.h"

#define MARK 4242 /* no errno value */
#define OWN_TASKS 16
#define OWN_ROUNDS 200

/* The calling thread's errno, looked up afresh: a task may resume on another thread, and the
 * compiler may keep errno's address across a call (weft.h, the migration hazard). */
static __attribute__((noinline)) int *errno_now(void)
{
    int *e = &errno;
    __asm__ volatile("" : "+r"(e));
    return e;
}

/* errno after `call`, made with errno set to MARK: CHECKed to be MARK still. */
#define KEPT(call)                                                                                 \
    do {                                                                                           \
        *errno_now() = MARK;                                                                       \
        long rc_ = (long)(call);                                                                   \
        int e_ = *errno_now();                                                                     \
        CHECK(e_ == MARK, "%s returned %ld and left errno %d", #call, rc_, e_);                    \
    } while (0)

static int nothing(void *arg)
{
    (void)arg;
    return 0;
}

static int sleep_a_little(void *arg)
{
    (void)arg;
    return weft_sleep_for(20 * WEFT_MSEC) == 0 ? 0 : 1;
}

/* A value of its own, checked after every suspension point among tasks doing the same. */
static int own_value(void *arg)
{
    int mine = 1000 + (int)(intptr_t)arg;
    for (int i = 0; i < OWN_ROUNDS; i++) {
        *errno_now() = mine;
        if (i % 16 == 0)
            weft_sleep_for(WEFT_USEC);
        else
            weft_yield();
        int e = *errno_now();
        CHECK(e == mine, "task %d: errno %d after a suspension point", mine, e);
        if (e != mine)
            return 1;
    }
    return 0;
}

typedef struct {
    int fds[2];
} pipe_pair;

static int write_later(void *arg)
{
    pipe_pair *p = arg;
    for (int i = 0; i < 5; i++)
        weft_yield();
    *errno_now() = 7; /* this task's own */
    return weft_write(p->fds[1], "x", 1) == 1 ? 0 : 1;
}

/* ---- own values while the poller is busy: a park's own look for work drains the poller's
 * wake-up counter, a read that ends in EAGAIN, in the parking task's context ---- */

#define PING_ROUNDS 20000

typedef struct {
    int fds[2];
    atomic_int stop;
    atomic_long checks;
} busy_io;

static int ping(void *arg)
{
    busy_io *b = arg;
    char c = 'x';
    for (int i = 0; i < PING_ROUNDS; i++)
        if (weft_write(b->fds[0], &c, 1) != 1 || weft_read(b->fds[0], &c, 1) != 1)
            break;
    shutdown(b->fds[0], SHUT_WR);
    atomic_store(&b->stop, 1);
    return 0;
}

static int pong(void *arg)
{
    busy_io *b = arg;
    char c;
    while (weft_read(b->fds[1], &c, 1) == 1)
        if (weft_write(b->fds[1], &c, 1) != 1)
            break;
    return 0;
}

static int own_value_beside_io(void *arg)
{
    busy_io *b = arg;
    for (int i = 0; !atomic_load(&b->stop); i++) {
        int mine = 100000 + i % 1000;
        *errno_now() = mine;
        if (i % 2)
            weft_yield();
        else
            weft_sleep_for(20 * WEFT_USEC);
        int e = *errno_now();
        atomic_fetch_add(&b->checks, 1);
        CHECK(e == mine, "errno %d after a suspension point beside busy I/O, %d set", e, mine);
        if (e != mine)
            return 1;
    }
    return 0;
}

static int beside_io(void *arg)
{
    (void)arg;
    static busy_io b;
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, b.fds) == 0,
          "socketpair");
    weft_scope *s;
    if (weft_scope_open(&s, NULL) != 0)
        return 1;
    CHECK(weft_spawn(s, pong, &b) == 0, "spawn");
    CHECK(weft_spawn(s, ping, &b) == 0, "spawn");
    for (int i = 0; i < 6; i++)
        CHECK(weft_spawn(s, own_value_beside_io, &b) == 0, "spawn");
    CHECK(weft_scope_close(s) == 0, "a task failed");
    CHECK(atomic_load(&b.checks) > 0, "no check made");
    close(b.fds[0]);
    close(b.fds[1]);
    return 0;
}

/* ---- a new task's errno is not its record's last owner's ---- */

typedef struct {
    atomic_int done;
    int first; /* the errno a task found when it first ran */
} fresh_case;

static int leaves_a_value(void *arg)
{
    fresh_case *f = arg;
    *errno_now() = 4242;
    weft_yield(); /* switched out with it: the record keeps it */
    atomic_fetch_add(&f->done, 1);
    return 0;
}

static int reads_its_first(void *arg)
{
    fresh_case *f = arg;
    f->first = *errno_now();
    atomic_fetch_add(&f->done, 1);
    return 0;
}

static int fresh_tasks(void *arg)
{
    (void)arg;
    for (int i = 0; i < 100; i++) {
        fresh_case f = {.first = -1};
        weft_scope *s;
        if (weft_scope_open(&s, NULL) != 0)
            return 1;
        /* Yields, not the join, run them: each on a stack of its own, not as a call. */
        CHECK(weft_spawn(s, leaves_a_value, &f) == 0, "spawn");
        CHECK(yield_until(&f.done, 1) == 0, "yield");
        *errno_now() = 9;
        CHECK(weft_spawn(s, reads_its_first, &f) == 0, "spawn");
        CHECK(yield_until(&f.done, 2) == 0, "yield");
        CHECK(weft_scope_close(s) == 0, "a task failed");
        CHECK(f.first != 4242, "round %d: a new task started with another task's errno", i);
    }
    return 0;
}

/* The same for a deferred child, which starts on the record and stack of the sibling that ended
 * before it (a scope of max_concurrency 1). */
static int deferred_tasks(void *arg)
{
    (void)arg;
    for (int i = 0; i < 20; i++) {
        fresh_case f = {.first = -1};
        weft_scope *s;
        if (weft_scope_open(&s, &(weft_scope_opts){.max_concurrency = 1}) != 0)
            return 1;
        CHECK(weft_spawn(s, leaves_a_value, &f) == 0, "spawn");
        CHECK(weft_spawn(s, reads_its_first, &f) == 0, "spawn");
        CHECK(yield_until(&f.done, 2) == 0, "yield");
        CHECK(weft_scope_close(s) == 0, "a task failed");
        CHECK(f.first != 4242, "round %d: a deferred task started with its sibling's errno", i);
    }
    return 0;
}

static int in_tasks(void *arg)
{
    (void)arg;
    KEPT(weft_read(-1, NULL, 0));
    KEPT(weft_read(987654, (char[1]){0}, 1));
    KEPT(weft_close(987654));
    KEPT(weft_fd_nonblock(987654));

    int fds[2];
    CHECK(pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0, "pipe2");
    close(fds[0]);
    KEPT(weft_write(fds[1], "x", 1)); /* -EPIPE */
    close(fds[1]);

    char path[] = "/tmp/weft-errno-XXXXXX";
    int file = mkstemp(path);
    CHECK(file >= 0, "mkstemp");
    unlink(path);
    KEPT(weft_fd_wait(file, WEFT_READABLE, WEFT_NEVER)); /* -EPERM: a regular file */
    close(file);

    /* A refused connect: a port bound and not listening. */
    int holder = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    CHECK(bind(holder, (struct sockaddr *)&a, sizeof(a)) == 0, "bind");
    CHECK(getsockname(holder, (struct sockaddr *)&a, &alen) == 0, "getsockname");
    int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    KEPT(weft_connect(c, (struct sockaddr *)&a, sizeof(a)));
    close(c);
    close(holder);

    /* A read that finds nothing (EAGAIN inside), parks, and succeeds once another task writes. */
    pipe_pair p;
    CHECK(pipe2(p.fds, O_NONBLOCK | O_CLOEXEC) == 0, "pipe2");
    weft_scope *s;
    if (weft_scope_open(&s, NULL) == 0) {
        CHECK(weft_spawn(s, write_later, &p) == 0, "spawn");
        char ch;
        KEPT(weft_read(p.fds[0], &ch, 1));
        for (int i = 0; i < OWN_TASKS; i++)
            CHECK(weft_spawn(s, own_value, (void *)(intptr_t)i) == 0, "spawn");
        /* Not KEPT: a join runs children as calls on its stack, and errno is theirs to set. */
        CHECK(weft_scope_close(s) == 0, "a task failed");
    }
    close(p.fds[0]);
    close(p.fds[1]);
    KEPT(weft_sleep_for(WEFT_MSEC));
    /* A conversion the C library refuses (a wide character in the C locale: EILSEQ). */
    KEPT(weft_fail(-EIO, "%lc", (wint_t)0x20AC));

#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
    /* An allocation the C library refuses (it sets ENOMEM): 2^48 bytes of items. (A sanitizer's
     * allocator stops the program there instead.) */
    weft_chan *ch = NULL;
    errno = MARK;
    int crc = weft_chan_create(&ch, 65536, (size_t)1 << 32);
    int e = errno;
    CHECK(e == MARK, "weft_chan_create returned %d and left errno %d", crc, e);
    if (crc == 0)
        weft_chan_destroy(ch);
#endif
    return 0;
}

int main(void)
{
    KEPT(weft_run(&(weft_config){.workers = 2}, in_tasks, NULL));
    KEPT(weft_run(&(weft_config){.workers = 2}, beside_io, NULL));
    KEPT(weft_run(&(weft_config){.workers = 1}, fresh_tasks, NULL));
    KEPT(weft_run(&(weft_config){.workers = 1}, deferred_tasks, NULL));
    KEPT(weft_run(&(weft_config){.trace_path = "/nonexistent-dir/trace.json"}, nothing, NULL));
    KEPT(weft_run(&(weft_config){.workers = 100000}, nothing, NULL)); /* -EINVAL */

    weft_runtime *rt = NULL;
    KEPT(weft_runtime_start(&rt, &(weft_config){.workers = 2}));
    if (!rt)
        return 1;
    weft_handle *h = NULL;
    KEPT(weft_submit(rt, sleep_a_little, NULL, &h));
    int status = -1;
    KEPT(weft_handle_wait(h, weft_now() + WEFT_MSEC, &status)); /* -ETIMEDOUT */
    KEPT(weft_handle_wait(h, WEFT_NEVER, &status));
    weft_handle_release(h);
    KEPT(weft_dump(rt, 987654, WEFT_DUMP_TEXT)); /* -EBADF */
    KEPT(weft_close(987654));
    KEPT(weft_fd_nonblock(987654));
    KEPT(weft_runtime_shutdown(rt));
    printf("errno_kept: %s\n", failures ? "FAILED" : "OK");
    return failures ? 1 : 0;
}
