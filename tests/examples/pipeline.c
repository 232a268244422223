// SPDX-License-Identifier: MIT
/*
 * A channel pipeline: a source, a stage of several workers, a sink, with the end of the input
 * propagated by closing channels.
 *
 *     numbers, squares = asyncio.Queue(16), asyncio.Queue(16)
 *     async with asyncio.TaskGroup() as tg:
 *         tg.create_task(source(numbers))            # then numbers.shutdown()
 *         for _ in range(3): tg.create_task(square(numbers, squares))
 *         tg.create_task(sink(squares))              # until QueueShutDown
 *
 * Closing a channel stops its sends and lets its receivers drain what is buffered before they
 * get -EPIPE. The source closes its output when it is done; each stage worker stops at -EPIPE,
 * and the last one to stop closes the stage's output, so that the sink sees the end exactly
 * once, after every item. A failure anywhere cancels the whole pipeline (a fail-fast scope).
 */
#include "example.h"
#include "weft.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>

#define N 2000
#define STAGE_WORKERS 3

typedef struct pipeline {
    weft_chan *numbers; /* source -> stage */
    weft_chan *squares; /* stage -> sink */
    atomic_int stage_running;
    int64_t sum;
    int received;
} pipeline;

static int source(void *arg)
{
    pipeline *p = arg;
    int rc = 0;
    for (int64_t i = 1; i <= N && rc == 0; i++)
        rc = weft_chan_send(p->numbers, &i);
    weft_chan_close(p->numbers); /* the end of the input */
    return rc;
}

static int square(void *arg)
{
    pipeline *p = arg;
    int64_t x;
    int rc;
    while ((rc = weft_chan_recv(p->numbers, &x)) == 0) {
        int64_t y = x * x;
        if ((rc = weft_chan_send(p->squares, &y)) != 0)
            break;
    }
    /* The last worker of the stage passes the end on. */
    if (atomic_fetch_sub(&p->stage_running, 1) == 1)
        weft_chan_close(p->squares);
    return rc == -EPIPE ? 0 : rc;
}

static int sink(void *arg)
{
    pipeline *p = arg;
    int64_t y;
    int rc;
    while ((rc = weft_chan_recv(p->squares, &y)) == 0) {
        p->sum += y;
        p->received++;
    }
    return rc == -EPIPE ? 0 : rc;
}

static int main_task(void *arg)
{
    (void)arg;
    pipeline p = {.stage_running = STAGE_WORKERS};
    EXPECT(weft_chan_create(&p.numbers, sizeof(int64_t), 16) == 0);
    EXPECT(weft_chan_create(&p.squares, sizeof(int64_t), 16) == 0);

    weft_scope *s;
    EXPECT(weft_scope_open(&s, &(weft_scope_opts){.name = "pipeline"}) == 0);
    EXPECT(weft_spawn(s, source, &p) == 0);
    for (int i = 0; i < STAGE_WORKERS; i++)
        EXPECT(weft_spawn(s, square, &p) == 0);
    EXPECT(weft_spawn(s, sink, &p) == 0);
    int rc = weft_scope_close(s);

    int64_t want = (int64_t)N * (N + 1) * (2 * N + 1) / 6;
    printf("pipeline: join %d, %d squares received, sum %lld (expected %lld)\n", rc, p.received,
           (long long)p.sum, (long long)want);
    EXPECT(rc == 0);
    EXPECT(p.received == N);
    EXPECT(p.sum == want);
    EXPECT(weft_chan_send(p.squares, &p.sum) == -EPIPE); /* closed for good */
    EXPECT(weft_chan_destroy(p.numbers) == 0);
    EXPECT(weft_chan_destroy(p.squares) == 0);
    return 0;
}

int main(void)
{
    EXPECT(weft_run(NULL, main_task, NULL) == 0);
    printf("pipeline: ok\n");
    return 0;
}
