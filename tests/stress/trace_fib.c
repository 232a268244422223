// SPDX-License-Identifier: MIT
/*
 * A traced fib(20) at two workers: the trace file must parse as JSON and hold exactly one start
 * and one end for each task, tasks counted by their ids (check_trace.py does the reading).
 * Usage: trace_fib FILE PYTHON CHECKER [N [written]]: fib(N), 20 by default; with "written",
 * the trace must hold buffers the workers wrote out while they ran (N large enough for that).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "../support.h"

static atomic_long spawned;

static int fib_n = 20;

/* The name the fib runs under, and what the trace keeps of it: its first 24 bytes (lib/README.md),
 * which cut the Cyrillic letter that the 24th byte begins, written as U+FFFD. The name ends in a
 * byte that is no UTF-8 at all (past the cut here; the dump test has one inside). */
#define NAME                                                                                       \
    "weftx-\u0437\u0430\u0434\u0430\u0447\u0430-"                                                  \
    "\u043e\u0431\u0440\u0430\u0431\u043e\u0442\u043a\u0438\xff"
#define TRACED_NAME "weftx-\u0437\u0430\u0434\u0430\u0447\u0430-\u043e\u0431\ufffd"

static int named(void *arg)
{
    long *out = arg;
    *out = support_fib(fib_n, &spawned);
    return 0;
}

static int root(void *arg)
{
    weft_scope *s;
    weft_spawn_opts o = {.name = NAME};
    if (weft_scope_open(&s, NULL) != 0 || weft_spawn_ex(s, named, arg, &o) != 0)
        abort();
    return weft_scope_close(s);
}

static long fib_plain(int n)
{
    return n < 2 ? n : fib_plain(n - 1) + fib_plain(n - 2);
}

int main(int argc, char **argv)
{
    if (argc < 4 || argc > 6) {
        fprintf(stderr, "usage: trace_fib FILE PYTHON CHECKER [N [written]]\n");
        return 2;
    }
    if (argc > 4)
        fib_n = atoi(argv[4]);
    long result = 0;
    weft_config cfg = {.workers = 2, .trace_path = argv[1]};
    int rc = weft_run(&cfg, root, &result);
    if (rc != 0 || result != fib_plain(fib_n)) {
        fprintf(stderr, "weft_run: %d, fib(%d) = %ld\n", rc, fib_n, result);
        return 1;
    }
    char tasks[32];
    snprintf(tasks, sizeof(tasks), "%ld", atomic_load(&spawned) + 2); /* the root, the named */
    execl(argv[2], argv[2], argv[3], argv[1], tasks, TRACED_NAME, argc > 5 ? argv[5] : (char *)NULL,
          (char *)NULL);
    perror("exec");
    return 1;
}
