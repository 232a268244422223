// SPDX-License-Identifier: MIT
/*
 * omp_bench WORKLOAD THREADS — the OpenMP peer of weft_bench (benchmarks/README.md), built twice
 * by tools/bench: with gcc -fopenmp (libgomp, system omp-gomp) and with clang -fopenmp=libomp
 * (LLVM's libomp, system omp-llvm). The loops use `parallel for` with a reduction clause, the
 * classic way to write one; fib and skynet use explicit tasks (`task` spawns, `taskwait` joins
 * the children of the current task: OpenMP's structured fork/join). Workloads it cannot express
 * honestly (tasks that park in a sleep or on a semaphore, channels) print nothing.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime under -std=c17 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FIB_N 30
#define FIB_EXPECT 832040LL
#define SKYNET_SIZE 1000000L
#define SKYNET_EXPECT 499999500000LL
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

/* Every call with n >= 2 is a task, as the contract asks: no cutoff, no final clause. The
 * runtime may still run a task at once in its creator when its queues are long (libgomp does):
 * that is its own scheduling, not ours. */
static long fib_tasks(int n)
{
    if (n < 2)
        return n;
    long x = 0;
#pragma omp task shared(x)
    x = fib_tasks(n - 1);
    long y = fib_tasks(n - 2);
#pragma omp taskwait
    return x + y;
}

/* noinline and a volatile argument: the same call tree as the task version, as in weft_bench. */
__attribute__((noinline)) static long fib_plain(int n)
{
    if (n < 2)
        return n;
    return fib_plain(n - 1) + fib_plain(n - 2);
}

static long long skynet(long num, long size)
{
    if (size == 1)
        return num;
    long long kids[10];
    long step = size / 10;
    for (int i = 0; i < 10; i++) {
#pragma omp task shared(kids)
        kids[i] = skynet(num + i * step, step);
    }
#pragma omp taskwait
    long long sum = 0;
    for (int i = 0; i < 10; i++)
        sum += kids[i];
    return sum;
}

/* Runs the root of a task tree on one thread of a team that is already started (weft's workers
 * are started before its interval), timing from the root call to its result. */
static double run_tree(int which, long long *result)
{
    double seconds = 0;
#pragma omp parallel
    {}
#pragma omp parallel
#pragma omp single
    {
        double t0 = now();
        *result = which == 0 ? fib_tasks(FIB_N) : skynet(0, SKYNET_SIZE);
        seconds = now() - t0;
    }
    return seconds;
}

static int report(const char *wl, int threads, double seconds, long long check, long long expect)
{
    printf("%s threads=%d seconds=%.6f check=%lld\n", wl, threads, seconds, check);
    if (check != expect) {
        fprintf(stderr, "omp_bench: %s: check %lld, expected %lld\n", wl, check, expect);
        return 1;
    }
    return 0;
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
    long long result = 0;
    if (strcmp(wl, "fib") == 0) {
        seconds = run_tree(0, &result);
        return report(wl, threads, seconds, result, FIB_EXPECT);
    } else if (strcmp(wl, "fib-serial") == 0) {
        volatile int n = FIB_N;
        double t0 = now();
        result = fib_plain(n);
        seconds = now() - t0;
        return report(wl, threads, seconds, result, FIB_EXPECT);
    } else if (strcmp(wl, "skynet") == 0) {
        seconds = run_tree(1, &result);
        return report(wl, threads, seconds, result, SKYNET_EXPECT);
    } else if (strcmp(wl, "pfor") == 0) {
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

    return report(wl, threads, seconds, llround(sum / 1000), PFOR_EXPECT);
}
