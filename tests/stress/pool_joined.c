// SPDX-License-Identifier: MIT
/*
 * Nothing of a runtime runs after weft_run returns: rounds of a runtime whose root makes calls
 * on the blocking pool (from several tasks at once, so that the pool starts several threads),
 * each followed by a count of the process's threads. The pool's threads were detached and the
 * runtime's end waited only for their count: a thread still ran its last steps (the library's
 * and the C library's exit of a thread) after weft_run returned, in a third of the rounds, and a
 * program that then unloaded the library crashed in it.
 *
 * Checked: after every weft_run, /proc/self/task holds as many threads as after the first.
 *
 * Usage: pool_joined [rounds]
 */
#define STRESS_NAME "pool_joined"

#include <dirent.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "../support.h"
#include "weft.h"

#ifdef UNDER_TSAN
#define DEFAULT_ROUNDS 60
#else
#define DEFAULT_ROUNDS 300
#endif

#define CALLERS 4

static atomic_long calls;

static long threads_now(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -errno;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static int on_pool(void *arg)
{
    (void)arg;
    atomic_fetch_add(&calls, 1);
    return 0;
}

static int caller(void *arg)
{
    (void)arg;
    int result = -1;
    int rc = weft_blocking(on_pool, NULL, &result);
    return rc ? rc : result;
}

static int root(void *arg)
{
    (void)arg;
    weft_scope *s;
    int rc = weft_scope_open(&s, NULL);
    if (rc)
        return rc;
    for (int i = 0; i < CALLERS && rc == 0; i++)
        rc = weft_spawn(s, caller, NULL);
    int joined = weft_scope_close(s);
    return rc ? rc : joined;
}

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? atol(argv[1]) : DEFAULT_ROUNDS;
    if (rounds < 1) {
        fprintf(stderr, "usage: pool_joined [rounds]\n");
        return 2;
    }
    /* The count after a first runtime: a sanitizer's runtime starts a thread of its own with the
     * process's second thread. */
    CHECK(weft_run(&(weft_config){.workers = 2, .watchdog_ns = -1}, root, NULL) == 0, "warm-up");
    long before = threads_now();
    CHECK(before > 0, "cannot count threads: %ld", before);
    long extra_rounds = 0;
    for (long r = 0; r < rounds; r++) {
        /* No watchdog: its thread is joined already; only the pool is under test. */
        int rc = weft_run(&(weft_config){.workers = 2, .watchdog_ns = -1}, root, NULL);
        CHECK(rc == 0, "round %ld: weft_run returned %d", r, rc);
        long after = threads_now();
        if (after != before)
            extra_rounds++;
        CHECK(after == before, "round %ld: %ld threads after weft_run, %ld before", r, after,
              before);
    }
    CHECK(atomic_load(&calls) == (rounds + 1) * CALLERS, "%ld calls ran, %ld made",
          atomic_load(&calls), (rounds + 1) * CALLERS);
    printf("pool_joined: %s: %ld rounds, %ld with a thread left running after weft_run\n",
           failures ? "FAILED" : "OK", rounds, extra_rounds);
    return failures ? 1 : 0;
}
