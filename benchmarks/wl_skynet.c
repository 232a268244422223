// SPDX-License-Identifier: MIT
/*
 * skynet: a tree of 1,111,111 tasks, ten children per node, 1,000,000 leaves; every inner task
 * opens a scope, spawns its ten children into it, joins and sums what they wrote back.
 */
#include "bench.h"

#define SKYNET_SIZE 1000000L
#define SKYNET_EXPECT 499999500000LL

struct sky_arg {
    long num;
    long size;
    long long result;
};

static int sky_task(void *p)
{
    struct sky_arg *a = p;
    if (a->size == 1) {
        a->result = a->num;
        return 0;
    }
    struct sky_arg kids[10];
    weft_scope *s;
    int rc = weft_scope_open(&s, NULL);
    if (rc != 0) {
        bench_error("weft_scope_open", rc);
        a->result = 0;
        return rc;
    }
    long step = a->size / 10;
    for (int i = 0; i < 10; i++) {
        kids[i] = (struct sky_arg){.num = a->num + i * step, .size = step, .result = 0};
        rc = weft_spawn(s, sky_task, &kids[i]);
        if (rc != 0)
            bench_error("weft_spawn", rc);
    }
    rc = weft_scope_close(s); /* join, then release */
    if (rc != 0)
        bench_error("weft_scope_close", rc);
    long long sum = 0;
    for (int i = 0; i < 10; i++)
        sum += kids[i].result;
    a->result = sum;
    return 0;
}

struct sky_root {
    struct sky_arg top;
    double seconds;
};

static int sky_root(void *p)
{
    struct sky_root *r = p;
    double t0 = bench_now();
    sky_task(&r->top);
    r->seconds = bench_now() - t0;
    return 0;
}

int wl_skynet(unsigned threads, bench_result *out)
{
    weft_config cfg;
    bench_config(&cfg, threads);
    struct sky_root r = {.top = {.num = 0, .size = SKYNET_SIZE}};
    int rc = weft_run(&cfg, sky_root, &r);
    if (rc != 0)
        bench_error("weft_run", rc);
    out->seconds = r.seconds;
    out->check = r.top.result;
    out->expect = SKYNET_EXPECT;
    return 0;
}
