// SPDX-License-Identifier: MIT
/*
 * weft where epoll_pwait2 is missing (a kernel before Linux 5.11, or a sandbox's seccomp filter
 * that predates the call and answers ENOSYS or EPERM): the poller must fall back to epoll_wait,
 * and a worker with nothing to do must sleep there. (Without the fallback each wait failed at
 * once, and an idle worker looked for work and waited again without end: a CPU per worker.)
 *
 * The program defines epoll_pwait2 itself, which the static library's call binds to: it fails
 * with ENOSYS and counts its calls. Then, at two workers:
 *   - a task waits to read a pipe while the root sleeps 50 ms, so that both workers idle, one of
 *     them in the poller: the sleep must end (the fallback's timeout), and epoll_pwait2 must have
 *     been tried no more than once per worker (a worker that spun tries it thousands of times);
 *   - the root then writes a byte into the pipe: the task must read it (readiness through the
 *     fallback).
 *
 * Usage: no_pwait2
 * Prints one line per check; exits 0 when all held, 1 otherwise.
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "../support.h"
#include "weft.h"

#define WORKERS 2

static atomic_long pwait2_calls;

int epoll_pwait2(int epfd, struct epoll_event *events, int maxevents,
                 const struct timespec *timeout, const sigset_t *sigmask)
{
    (void)epfd, (void)events, (void)maxevents, (void)timeout, (void)sigmask;
    atomic_fetch_add(&pwait2_calls, 1);
    errno = ENOSYS;
    return -1;
}

typedef struct idle {
    int pipe[2];
    int sleep_rc, write_rc;
    long calls_after_sleep;
    ssize_t read_rc;
    char byte;
} idle;

static int reader(void *p)
{
    idle *c = p;
    c->read_rc = weft_read(c->pipe[0], &c->byte, 1);
    return 0;
}

static int idle_root(void *p)
{
    idle *c = p;
    weft_scope *s;
    int rc = weft_scope_open(&s, NULL);
    if (rc)
        return rc;
    rc = weft_spawn(s, reader, c);
    /* The reader registers the pipe and parks; then nothing runs for 50 ms. */
    c->sleep_rc = weft_sleep_for(50 * WEFT_MSEC);
    c->calls_after_sleep = atomic_load(&pwait2_calls);
    c->write_rc = (int)write(c->pipe[1], "x", 1);
    int jrc = weft_scope_close(s);
    return rc ? rc : jrc;
}

int main(void)
{
    idle c;
    memset(&c, 0, sizeof(c));
    if (pipe(c.pipe) != 0 || weft_fd_nonblock(c.pipe[0]) != 0) {
        printf("no_pwait2: FAILED: no pipe: %s\n", strerror(errno));
        return 1;
    }
    int rc = run_on(WORKERS, idle_root, &c);
    printf("no_pwait2: weft_run %d, sleep %d, epoll_pwait2 tried %ld time(s) by the end of the "
           "sleep (at most %d), write %d, read %zd '%c'\n",
           rc, c.sleep_rc, c.calls_after_sleep, WORKERS, c.write_rc, c.read_rc,
           c.byte ? c.byte : '?');
    int failed = rc != 0 || c.sleep_rc != 0 || c.calls_after_sleep < 1 ||
                 c.calls_after_sleep > WORKERS || c.write_rc != 1 || c.read_rc != 1 ||
                 c.byte != 'x';
    printf("no_pwait2: %s\n", failed ? "FAILED" : "OK");
    return failed;
}
