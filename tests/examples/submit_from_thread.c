// SPDX-License-Identifier: MIT
/*
 * A long-lived runtime fed from a plain thread: a GUI's event loop, a server's own thread, any
 * code that is not a weft task and hands work to weft:
 *
 *     loop = asyncio.new_event_loop()                                # in a thread of its own
 *     fut = asyncio.run_coroutine_threadsafe(job(n), loop)
 *     result = fut.result(timeout=5)
 *     fut.cancel()
 *
 * weft_runtime_start starts the workers and returns; weft_submit hands them a task from any
 * thread and gives back a handle; weft_handle_wait blocks the plain thread (never a worker)
 * until the task ends or a deadline passes; weft_handle_cancel cancels it; and
 * weft_runtime_shutdown cancels what is left and stops the workers.
 */
#include "example.h"
#include "weft.h"

#include <errno.h>

#define JOBS 4

typedef struct job {
    int n;
    int64_t result;
} job;

static int sum_squares(int64_t begin, int64_t end, void *partial, void *arg)
{
    (void)arg;
    for (int64_t i = begin; i < end; i++)
        *(int64_t *)partial += i * i;
    return 0;
}

static void add(void *acc, const void *partial, void *arg)
{
    (void)arg;
    *(int64_t *)acc += *(const int64_t *)partial;
}

/* A job on the workers: the sum of i*i below n, as a parallel reduce. */
static int compute(void *arg)
{
    job *j = arg;
    int64_t zero = 0;
    return weft_parallel_reduce(0, j->n, 0, sizeof(int64_t), &zero, sum_squares, add, NULL,
                                &j->result);
}

/* A job that waits for something that never comes: only a cancel ends it. */
static int wait_forever(void *arg)
{
    return weft_event_wait(arg);
}

int main(void)
{
    /* This thread is the "GUI thread": it never runs a task, it only submits and waits. */
    weft_runtime *rt;
    EXPECT(weft_runtime_start(&rt, &(weft_config){.workers = 2}) == 0);

    job jobs[JOBS];
    weft_handle *handles[JOBS];
    for (int i = 0; i < JOBS; i++) {
        jobs[i] = (job){.n = 1000 * (i + 1)};
        EXPECT(weft_submit(rt, compute, &jobs[i], &handles[i]) == 0);
    }
    weft_event *never;
    weft_handle *stuck;
    EXPECT(weft_event_create(&never) == 0);
    EXPECT(weft_submit(rt, wait_forever, never, &stuck) == 0);

    for (int i = 0; i < JOBS; i++) {
        int status = -1;
        EXPECT(weft_handle_wait(handles[i], weft_now() + 5 * WEFT_SEC, &status) == 0);
        int64_t n = jobs[i].n, want = (n - 1) * n * (2 * n - 1) / 6;
        printf("job %d: sum of squares below %d = %lld (status %d)\n", i, jobs[i].n,
               (long long)jobs[i].result, status);
        EXPECT(status == 0 && jobs[i].result == want);
        weft_handle_release(handles[i]);
    }

    /* The stuck job: a wait with a deadline gives up, a cancel ends it. */
    int status = 0;
    EXPECT(weft_handle_wait(stuck, weft_now() + 20 * WEFT_MSEC, &status) == -ETIMEDOUT);
    EXPECT(weft_handle_cancel(stuck) == 0);
    EXPECT(weft_handle_wait(stuck, weft_now() + 5 * WEFT_SEC, &status) == 0);
    printf("the stuck job ended with %d after its cancel\n", status);
    EXPECT(status == -ECANCELED);
    weft_handle_release(stuck);

    EXPECT(weft_runtime_shutdown(rt) == 0);
    EXPECT(weft_submit(rt, compute, &jobs[0], &handles[0]) == -ESHUTDOWN);
    EXPECT(weft_event_destroy(never) == 0);
    printf("submit_from_thread: ok\n");
    return 0;
}
