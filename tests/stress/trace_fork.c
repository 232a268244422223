// SPDX-License-Identifier: MIT
/*
 * The trace of a fork tree on two workers (weft_fork_join), checked by check_trace.py: every fork
 * another worker took is a task with one start and one end in the trace, and the forks the
 * callers ran themselves are no tasks at all. The leaves yield now and then, so that some forks
 * are taken (by the other worker, or by the caller's worker while the caller waits).
 *
 * Usage: trace_fork FILE PYTHON CHECKER
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "../support.h"

#define N 18

typedef struct fib_arg {
    int n;
    long result;
} fib_arg;

static int fib(void *p)
{
    fib_arg *a = p;
    if (a->n < 2) {
        a->result = a->n;
        if (a->n == 1 && (uintptr_t)p % 64 == 0)
            weft_yield(); /* a leaf in some frames: a suspension point in the tree */
        return 0;
    }
    fib_arg x = {.n = a->n - 1}, y = {.n = a->n - 2};
    int rc = weft_fork_join(fib, &x, fib, &y);
    a->result = x.result + y.result;
    return rc;
}

typedef struct run {
    long result;
    unsigned long long made; /* tasks spawned while the tree ran: the forks that were taken */
    int rc;
} run;

static int root(void *p)
{
    run *r = p;
    weft_metrics before, after;
    if (weft_runtime_metrics(NULL, &before, sizeof(before), NULL, 0) != 0)
        return -EIO;
    fib_arg a = {.n = N};
    r->rc = fib(&a);
    r->result = a.result;
    if (weft_runtime_metrics(NULL, &after, sizeof(after), NULL, 0) != 0)
        return -EIO;
    r->made = after.total.spawned - before.total.spawned;
    return 0;
}

static long fib_plain(int n)
{
    return n < 2 ? n : fib_plain(n - 1) + fib_plain(n - 2);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: trace_fork FILE PYTHON CHECKER\n");
        return 2;
    }
    run r = {0};
    weft_config cfg = {.workers = 2, .trace_path = argv[1]};
    int rc = weft_run(&cfg, root, &r);
    if (rc != 0 || r.rc != 0 || r.result != fib_plain(N)) {
        fprintf(stderr, "trace_fork: weft_run %d, fork %d, fib(%d) = %ld\n", rc, r.rc, N, r.result);
        return 1;
    }
    if (r.made == 0) {
        fprintf(stderr, "trace_fork: no fork was taken; the trace shows nothing of them\n");
        return 1;
    }
    char tasks[32];
    snprintf(tasks, sizeof(tasks), "%llu", r.made + 1); /* and the root */
    execl(argv[2], argv[2], argv[3], argv[1], tasks, (char *)NULL);
    perror("exec");
    return 1;
}
