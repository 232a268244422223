// SPDX-License-Identifier: MIT
/*
 * pfor: the sum of sqrt(i) for i < 10^8 as a parallel reduce with the default grain, against
 * pfor-serial, the same loop in one plain call. Both run the loop through one noinline function,
 * so that the parallel pieces and the floor execute the same machine code.
 */
#include "bench.h"

#include <math.h>

#define PFOR_N 100000000LL
/* round(sum / 1000): the sum is 666666661666.46; summation orders differ from one another by
 * far less than the 166 it would take to move the rounding. */
#define PFOR_EXPECT 666666662LL

__attribute__((noinline)) static double sqrt_sum(int64_t begin, int64_t end)
{
    double s = 0;
    for (int64_t i = begin; i < end; i++)
        s += sqrt((double)i);
    return s;
}

static long long pfor_check(double sum)
{
    return llround(sum / 1000);
}

static int sqrt_map(int64_t begin, int64_t end, void *partial, void *arg)
{
    (void)arg;
    *(double *)partial += sqrt_sum(begin, end);
    return 0;
}

static void add_double(void *acc, const void *partial, void *arg)
{
    (void)arg;
    *(double *)acc += *(const double *)partial;
}

struct pfor_root {
    double sum;
    double seconds;
};

static int pfor_root(void *p)
{
    struct pfor_root *r = p;
    const double zero = 0;
    double t0 = bench_now();
    int rc = weft_parallel_reduce(0, PFOR_N, 0, sizeof(double), &zero, sqrt_map, add_double, NULL,
                                  &r->sum);
    r->seconds = bench_now() - t0;
    if (rc != 0)
        bench_error("weft_parallel_reduce", rc);
    return 0;
}

int wl_pfor(unsigned threads, bench_result *out)
{
    weft_config cfg;
    bench_config(&cfg, threads);
    struct pfor_root r = {0};
    int rc = weft_run(&cfg, pfor_root, &r);
    if (rc != 0)
        bench_error("weft_run", rc);
    out->seconds = r.seconds;
    out->check = pfor_check(r.sum);
    out->expect = PFOR_EXPECT;
    return 0;
}

int wl_pfor_serial(unsigned threads, bench_result *out)
{
    (void)threads;
    /* volatile: the bound is not known to the compiler, as the reduce's pieces are not. */
    volatile int64_t n = PFOR_N;
    double t0 = bench_now();
    double sum = sqrt_sum(0, n);
    out->seconds = bench_now() - t0;
    out->check = pfor_check(sum);
    out->expect = PFOR_EXPECT;
    return 0;
}
