// SPDX-License-Identifier: MIT
/*
 * Progress reporting on long work: a reporter task beside the work.
 *
 *     async def reporter(done: asyncio.Event):
 *         while True:
 *             try:
 *                 async with asyncio.timeout(0.02):
 *                     await done.wait()
 *                 return report(final=True)
 *             except TimeoutError:
 *                 report()
 *
 *     async with asyncio.TaskGroup() as tg:
 *         tg.create_task(reporter(done))
 *         tg.create_task(work(done))       # sets `done` when it ends, however it ends
 *
 * The idiom that does not deadlock: the reporter never waits for the work to reach a count (a
 * failed or cancelled work never would); it waits for an event the work sets whenever it ends,
 * with a short timeout whose expiry is the tick. Work and reporter share a fail-fast scope, so a
 * failure of either cancels the other, and a cancel from outside stops both.
 */
#include "example.h"
#include "weft.h"

#include <errno.h>
#include <stdatomic.h>

#define STEPS 100

typedef struct job {
    atomic_int done_steps;
    weft_event *finished;
    int reports;    /* interim reports */
    int last_seen;  /* steps at the last report */
    int monotonic;  /* every report saw at least as many steps as the one before */
    int final_seen; /* steps at the final report, -1 if none */
    int fail_at;    /* the work fails at this step (0: never) */
} job;

static int work(void *arg)
{
    job *j = arg;
    int rc = 0;
    for (int i = 0; i < STEPS && rc == 0; i++) {
        rc = weft_sleep_for(2 * WEFT_MSEC); /* a step of I/O-bound work */
        if (rc == 0 && i + 1 == j->fail_at)
            rc = weft_fail(-EIO, "step %d failed", i + 1);
        if (rc == 0)
            atomic_fetch_add(&j->done_steps, 1);
    }
    weft_event_set(j->finished); /* on every path: the reporter's only way out */
    return rc;
}

static void report(job *j, const char *what)
{
    int now = atomic_load(&j->done_steps);
    if (now < j->last_seen)
        j->monotonic = 0;
    j->last_seen = now;
    printf("%s: %d/%d steps (%d%%)\n", what, now, STEPS, now * 100 / STEPS);
}

static int reporter(void *arg)
{
    job *j = arg;
    for (;;) {
        weft_scope *tick;
        int rc = weft_scope_open(&tick, &(weft_scope_opts){.timeout_ns = 20 * WEFT_MSEC});
        if (rc != 0)
            return rc == -ECANCELED ? 0 : rc;
        rc = weft_event_wait(j->finished);
        int ticked = weft_scope_expired(tick);
        weft_scope_close(tick);
        if (rc == 0) {
            report(j, "done");
            j->final_seen = j->last_seen;
            return 0;
        }
        if (!ticked)
            return 0; /* cancelled from outside: the work is being stopped as well */
        report(j, "progress");
        j->reports++;
    }
}

/* Runs the work with its reporter beside it; returns the join's result. */
static int run_with_progress(job *j)
{
    EXPECT(weft_event_create(&j->finished) == 0);
    weft_scope *s;
    EXPECT(weft_scope_open(&s, NULL) == 0);
    EXPECT(weft_spawn(s, work, j) == 0);
    EXPECT(weft_spawn(s, reporter, j) == 0);
    int rc = weft_scope_close(s);
    EXPECT(weft_event_destroy(j->finished) == 0);
    return rc;
}

static int main_task(void *arg)
{
    (void)arg;
    job j = {.monotonic = 1, .final_seen = -1};
    int rc = run_with_progress(&j);
    printf("%d interim reports\n", j.reports);
    EXPECT(rc == 0);
    EXPECT(j.final_seen == STEPS);
    EXPECT(j.monotonic);
    EXPECT(j.reports >= 1); /* 100 steps of 2 ms, a report every 20 ms */

    /* Work that fails half-way: the reporter ends with it, and the join reports the failure. */
    job broken = {.monotonic = 1, .final_seen = -1, .fail_at = 30};
    rc = run_with_progress(&broken);
    printf("the failing work: join %d after %d steps\n", rc, atomic_load(&broken.done_steps));
    EXPECT(rc == -EIO);
    EXPECT(atomic_load(&broken.done_steps) == 29);
    return 0;
}

int main(void)
{
    EXPECT(weft_run(NULL, main_task, NULL) == 0);
    printf("progress: ok\n");
    return 0;
}
