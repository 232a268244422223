// SPDX-License-Identifier: MIT
/*
 * A worker thread that cannot be created: weft_runtime_start and weft_run return -EAGAIN, with
 * nothing half-done. For runtimes of 1 to 4 workers, the n-th worker's thread fails (n = 1 up to
 * the last), through the thread-creation hook (alloc.h), over and over, while the workers started
 * before it are already running and looking for work.
 *
 * Checked: the code is -EAGAIN; weft_runtime_start leaves *out as it was; weft_run never runs
 * its root; with the failure point past the last worker the runtime starts and runs work; and,
 * under the sanitizers, the workers already started are stopped without a race and nothing leaks.
 *
 * Usage: start_fail [rounds]
 */
#define STRESS_NAME "start_fail"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "../support.h"
#include "alloc.h"
#include "weft.h"

#ifdef UNDER_TSAN
#define DEFAULT_ROUNDS 10
#else
#define DEFAULT_ROUNDS 50
#endif

static atomic_int roots_run;

static int root(void *arg)
{
    (void)arg;
    atomic_fetch_add(&roots_run, 1);
    return 0;
}

static void one_round(void)
{
    for (unsigned workers = 1; workers <= 4; workers++) {
        weft_config cfg = {.workers = workers};
        for (unsigned n = 1; n <= workers; n++) {
            weft_runtime *rt = (weft_runtime *)&cfg; /* must stay as it is */
            weft__alloc_thread_fail_at(n);
            int rc = weft_runtime_start(&rt, &cfg);
            CHECK(rc == -EAGAIN, "%u workers, thread %u fails: weft_runtime_start gave %d", workers,
                  n, rc);
            CHECK(rt == (weft_runtime *)&cfg, "weft_runtime_start wrote *out on failure");
            CHECK(weft__alloc_thread_count() == n, "%ld threads asked for, want %u",
                  weft__alloc_thread_count(), n);
            if (rc == 0)
                weft_runtime_shutdown(rt);

            int before = atomic_load(&roots_run);
            weft__alloc_thread_fail_at(n);
            rc = weft_run(&cfg, root, NULL);
            CHECK(rc == -EAGAIN, "%u workers, thread %u fails: weft_run gave %d", workers, n, rc);
            CHECK(atomic_load(&roots_run) == before, "weft_run ran its root after a failed start");
        }
        /* Past the last worker: nothing fails. */
        weft__alloc_thread_fail_at(workers + 1);
        weft_runtime *rt;
        int rc = weft_runtime_start(&rt, &cfg);
        weft__alloc_thread_fail_at(0);
        CHECK(rc == 0, "%u workers, none fails: weft_runtime_start gave %d", workers, rc);
        if (rc)
            continue;
        weft_handle *h;
        rc = weft_submit(rt, root, NULL, &h);
        CHECK(rc == 0, "submit %d", rc);
        if (rc == 0) {
            int st = -1;
            CHECK(weft_handle_wait(h, WEFT_NEVER, &st) == 0 && st == 0, "status %d", st);
            weft_handle_release(h);
        }
        CHECK(weft_runtime_shutdown(rt) == 0, "shutdown");
    }
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : DEFAULT_ROUNDS;
    for (int i = 0; i < rounds && !atomic_load(&failures); i++)
        one_round();
    weft__alloc_thread_fail_at(0);
    int f = atomic_load(&failures);
    printf(STRESS_NAME ": %d rounds, %d roots run, %d failures\n", rounds, atomic_load(&roots_run),
           f);
    return f ? 1 : 0;
}
