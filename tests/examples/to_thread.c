// SPDX-License-Identifier: MIT
/*
 * A blocking call moved off the workers:
 *
 *     line = await asyncio.to_thread(read_line_blocking, pipe)
 *
 * weft_blocking runs a function on a thread of the runtime's blocking pool and parks the
 * calling task until it returns; the worker runs other tasks meanwhile. Anything that blocks
 * its thread belongs there: a blocking read or write, getaddrinfo, a library with no
 * non-blocking mode, fsync.
 *
 * The runtime here has ONE worker. The blocking read waits for a line that another task writes
 * only after it has run a few steps on that worker: called directly on the worker, the read
 * would hold the only worker and the program would hang. Through weft_blocking it completes.
 */
#include "example.h"
#include "weft.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

typedef struct read_job {
    int fd; /* a blocking descriptor */
    char line[64];
} read_job;

/* Plain blocking code, as a library would have it: read(2) until a newline. */
static int read_line_blocking(void *arg)
{
    read_job *job = arg;
    size_t len = 0;
    while (len < sizeof job->line - 1) {
        ssize_t n = read(job->fd, job->line + len, 1);
        if (n <= 0)
            return n == 0 ? -EPIPE : -errno;
        if (job->line[len++] == '\n')
            break;
    }
    job->line[len] = '\0';
    return 0;
}

typedef struct demo {
    int pipe[2];
    read_job job;
    int blocking_rc, read_rc;
    atomic_int steps; /* the writer's steps done before it wrote */
} demo;

static int reader(void *arg)
{
    demo *d = arg;
    d->blocking_rc = weft_blocking(read_line_blocking, &d->job, &d->read_rc);
    return d->blocking_rc;
}

/* Runs on the one worker while the read blocks its pool thread. */
static int writer(void *arg)
{
    demo *d = arg;
    for (int i = 0; i < 5; i++) {
        atomic_fetch_add(&d->steps, 1);
        weft_yield();
    }
    static const char msg[] = "hello from a task\n";
    return write(d->pipe[1], msg, sizeof msg - 1) == sizeof msg - 1 ? 0 : -EIO;
}

static int main_task(void *arg)
{
    demo *d = arg;
    d->job.fd = d->pipe[0];
    weft_scope *s;
    EXPECT(weft_scope_open(&s, NULL) == 0);
    EXPECT(weft_spawn(s, reader, d) == 0);
    EXPECT(weft_spawn(s, writer, d) == 0);
    return weft_scope_close(s);
}

int main(void)
{
    demo d = {0};
    EXPECT(pipe(d.pipe) == 0); /* blocking, on purpose */
    weft_config cfg = {.workers = 1};
    int rc = weft_run(&cfg, main_task, &d);
    printf("weft_run: %d; the blocking read returned %d: '%.*s' after %d steps of the writer\n", rc,
           d.read_rc, (int)strcspn(d.job.line, "\n"), d.job.line, atomic_load(&d.steps));
    EXPECT(rc == 0 && d.blocking_rc == 0 && d.read_rc == 0);
    EXPECT(strcmp(d.job.line, "hello from a task\n") == 0);
    EXPECT(atomic_load(&d.steps) == 5);
    close(d.pipe[0]);
    close(d.pipe[1]);
    printf("to_thread: ok\n");
    return 0;
}
