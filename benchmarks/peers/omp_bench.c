/*
 * omp_bench WORKLOAD THREADS — the OpenMP peer of weft_bench (benchmarks/README.md), built with
 * gcc -fopenmp. It runs the loop workloads only: OpenMP's `parallel for` with a reduction clause
 * is the classic way to write one. Workloads it cannot express honestly print nothing.
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PFOR_N 100000000LL
#define PFOR_EXPECT 666666662LL /* round(sum / 1000), as in weft_bench */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* noinline: the floor runs the same machine code as weft's and oneTBB's pieces. The parallel
 * loop below is the compiler's own outlining of the same statement. */
__attribute__((noinline)) static double sqrt_sum(int64_t begin, int64_t end)
{
    double s = 0;
    for (int64_t i = begin; i < end; i++)
        s += sqrt((double)i);
    return s;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: omp_bench WORKLOAD THREADS\n");
        return 2;
    }
    const char *wl = argv[1];
    int threads = atoi(argv[2]);
    if (threads < 1) {
        fprintf(stderr, "omp_bench: bad thread count %s\n", argv[2]);
        return 2;
    }
    omp_set_dynamic(0);
    omp_set_num_threads(threads);

    double seconds, sum = 0;
    if (strcmp(wl, "pfor") == 0) {
        /* Start the team first: weft's workers are started before its interval. */
#pragma omp parallel
        {
        }
        double t0 = now();
        /* schedule(static): OpenMP's default, one contiguous block per thread. */
#pragma omp parallel for reduction(+ : sum) schedule(static)
        for (int64_t i = 0; i < PFOR_N; i++)
            sum += sqrt((double)i);
        seconds = now() - t0;
    } else if (strcmp(wl, "pfor-serial") == 0) {
        volatile int64_t n = PFOR_N;
        double t0 = now();
        sum = sqrt_sum(0, n);
        seconds = now() - t0;
    } else {
        return 0; /* not expressible here: print nothing, the table says n/a */
    }

    long long check = llround(sum / 1000);
    printf("%s threads=%d seconds=%.6f check=%lld\n", wl, threads, seconds, check);
    if (check != PFOR_EXPECT) {
        fprintf(stderr, "omp_bench: %s: check %lld, expected %lld\n", wl, check, PFOR_EXPECT);
        return 1;
    }
    return 0;
}
