// SPDX-License-Identifier: MIT
/*
 * Channel workloads: chan-pingpong (two tasks, rendezvous channels, round trips), pipeline
 * (source -> three stages -> sink through channels of 64) and fanout (one producer, a consumer
 * per worker, one collector). Items are int64_t. Each writer closes the channel it writes when it
 * is done, and its readers end on -EPIPE, as pipelines are written; on any other error the run
 * cancels its scope, so that a broken run ends and prints its (failing) check instead of hanging.
 */
#include "bench.h"

#include <errno.h>
#include <stdatomic.h>

#define ROUND_TRIPS 1000000L
#define ITEMS 1000000L
#define STAGES 3
#define CAPACITY 64

/* Sum of i for i < ITEMS. */
#define ITEMS_SUM (ITEMS * (ITEMS - 1) / 2)

struct chan_run {
    weft_scope *scope;
    weft_chan *chans[STAGES + 1];
    atomic_int live; /* fanout: consumers still running */
    long long result;
    double seconds;
};

static void chan_fail(struct chan_run *r, const char *what, int rc)
{
    bench_error(what, rc);
    weft_scope_cancel(r->scope);
}

static int chan_create_all(struct chan_run *r, int n, size_t capacity)
{
    for (int i = 0; i < n; i++) {
        int rc = weft_chan_create(&r->chans[i], sizeof(int64_t), capacity);
        if (rc != 0) {
            bench_error("weft_chan_create", rc);
            while (i-- > 0)
                weft_chan_destroy(r->chans[i]);
            return rc;
        }
    }
    return 0;
}

static void chan_destroy_all(struct chan_run *r, int n)
{
    for (int i = 0; i < n; i++) {
        int rc = weft_chan_destroy(r->chans[i]);
        if (rc != 0)
            bench_error("weft_chan_destroy", rc);
    }
}

/* Opens the run's scope, lets `spawn_all` spawn the workload's tasks into it, and closes it:
 * `seconds` runs from before the first spawn to the end of the join. */
static int chan_timed(struct chan_run *r, int (*spawn_all)(struct chan_run *))
{
    int rc = weft_scope_open(&r->scope, NULL);
    if (rc != 0) {
        bench_error("weft_scope_open", rc);
        return rc;
    }
    double t0 = bench_now();
    rc = spawn_all(r);
    if (rc != 0) {
        bench_error("weft_spawn", rc);
        weft_scope_cancel(r->scope);
    }
    rc = weft_scope_close(r->scope);
    r->seconds = bench_now() - t0;
    if (rc != 0)
        bench_error("weft_scope_close", rc);
    return 0;
}

/* Takes each item of chans[k], adds one, and hands it to chans[k + 1], until chans[k] is closed
 * (or, on any other error, cancels the run): the body of pingpong's ponger, a pipeline stage and
 * a fanout consumer. */
static void forward(struct chan_run *r, int k, const char *what)
{
    for (;;) {
        int64_t x;
        int rc = weft_chan_recv(r->chans[k], &x);
        if (rc == -EPIPE)
            break;
        x++;
        if (rc == 0)
            rc = weft_chan_send(r->chans[k + 1], &x);
        if (rc != 0) {
            chan_fail(r, what, rc);
            break;
        }
    }
}

/* ---- chan-pingpong --------------------------------------------------------------------------- */

static int pinger(void *p)
{
    struct chan_run *r = p;
    long done = 0;
    for (int64_t i = 0; i < ROUND_TRIPS; i++) {
        int64_t back;
        int rc = weft_chan_send(r->chans[0], &i);
        if (rc == 0)
            rc = weft_chan_recv(r->chans[1], &back);
        if (rc != 0) {
            chan_fail(r, "pingpong", rc);
            break;
        }
        if (back == i + 1)
            done++;
    }
    weft_chan_close(r->chans[0]);
    r->result = done;
    return 0;
}

static int ponger(void *p)
{
    struct chan_run *r = p;
    forward(r, 0, "pingpong");
    return 0;
}

static int pingpong_spawn(struct chan_run *r)
{
    int rc = weft_spawn(r->scope, ponger, r);
    return rc ? rc : weft_spawn(r->scope, pinger, r);
}

static int pingpong_root(void *p)
{
    struct chan_run *r = p;
    if (chan_create_all(r, 2, 0) != 0)
        return 0;
    chan_timed(r, pingpong_spawn);
    chan_destroy_all(r, 2);
    return 0;
}

/* ---- pipeline -------------------------------------------------------------------------------- */

struct stage {
    struct chan_run *r;
    int k; /* reads chans[k], writes chans[k + 1] */
};

static int source(void *p)
{
    struct chan_run *r = p;
    for (int64_t i = 0; i < ITEMS; i++) {
        int rc = weft_chan_send(r->chans[0], &i);
        if (rc != 0) {
            chan_fail(r, "pipeline source", rc);
            break;
        }
    }
    weft_chan_close(r->chans[0]);
    return 0;
}

static int stage(void *p)
{
    struct stage *s = p;
    struct chan_run *r = s->r;
    forward(r, s->k, "pipeline stage");
    weft_chan_close(r->chans[s->k + 1]);
    return 0;
}

/* Sums what comes out of `chans[k]` until it is closed. */
static int sink_of(struct chan_run *r, int k, const char *what)
{
    long long sum = 0;
    for (;;) {
        int64_t x;
        int rc = weft_chan_recv(r->chans[k], &x);
        if (rc == -EPIPE)
            break;
        if (rc != 0) {
            chan_fail(r, what, rc);
            break;
        }
        sum += x;
    }
    r->result = sum;
    return 0;
}

static int pipeline_sink(void *p)
{
    return sink_of(p, STAGES, "pipeline sink");
}

static struct stage stages[STAGES];

static int pipeline_spawn(struct chan_run *r)
{
    int rc = weft_spawn(r->scope, pipeline_sink, r);
    for (int k = STAGES - 1; k >= 0 && rc == 0; k--) {
        stages[k] = (struct stage){.r = r, .k = k};
        rc = weft_spawn(r->scope, stage, &stages[k]);
    }
    return rc ? rc : weft_spawn(r->scope, source, r);
}

static int pipeline_root(void *p)
{
    struct chan_run *r = p;
    if (chan_create_all(r, STAGES + 1, CAPACITY) != 0)
        return 0;
    chan_timed(r, pipeline_spawn);
    chan_destroy_all(r, STAGES + 1);
    return 0;
}

/* ---- fanout ---------------------------------------------------------------------------------- */

/* chans[0]: the producer to the consumers; chans[1]: the consumers to the collector, closed by
 * the last consumer to end. */
static int consumer(void *p)
{
    struct chan_run *r = p;
    forward(r, 0, "fanout consumer");
    if (atomic_fetch_sub(&r->live, 1) == 1)
        weft_chan_close(r->chans[1]);
    return 0;
}

static int collector(void *p)
{
    return sink_of(p, 1, "fanout collector");
}

static int fanout_spawn(struct chan_run *r)
{
    unsigned consumers = weft_workers();
    atomic_store(&r->live, (int)consumers);
    int rc = weft_spawn(r->scope, collector, r);
    for (unsigned i = 0; i < consumers && rc == 0; i++)
        rc = weft_spawn(r->scope, consumer, r);
    /* The producer is `source`: items 0..ITEMS-1 into chans[0], then close. */
    return rc ? rc : weft_spawn(r->scope, source, r);
}

static int fanout_root(void *p)
{
    struct chan_run *r = p;
    if (chan_create_all(r, 2, CAPACITY) != 0)
        return 0;
    chan_timed(r, fanout_spawn);
    chan_destroy_all(r, 2);
    return 0;
}

/* ---- entry points ------------------------------------------------------------------------------
 */

static void chan_run_on(unsigned threads, weft_fn root, struct chan_run *r)
{
    weft_config cfg;
    bench_config(&cfg, threads);
    int rc = weft_run(&cfg, root, r);
    if (rc != 0)
        bench_error("weft_run", rc);
}

int wl_chan_pingpong(unsigned threads, bench_result *out)
{
    struct chan_run r = {0};
    chan_run_on(threads, pingpong_root, &r);
    out->seconds = r.seconds;
    out->ns_per_op = r.seconds * 1e9 / ROUND_TRIPS;
    out->check = r.result;
    out->expect = ROUND_TRIPS;
    return 0;
}

int wl_pipeline(unsigned threads, bench_result *out)
{
    struct chan_run r = {0};
    chan_run_on(threads, pipeline_root, &r);
    out->seconds = r.seconds;
    out->check = r.result;
    out->expect = ITEMS_SUM + STAGES * ITEMS;
    return 0;
}

int wl_fanout(unsigned threads, bench_result *out)
{
    struct chan_run r = {0};
    chan_run_on(threads, fanout_root, &r);
    out->seconds = r.seconds;
    out->check = r.result;
    out->expect = ITEMS_SUM + ITEMS;
    return 0;
}
