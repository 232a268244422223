// SPDX-License-Identifier: MIT
/*
 * weft_bench WORKLOAD THREADS — runs one workload of benchmarks/README.md on weft and prints its
 * contract line. The exit status is non-zero when the check fails, so that tools/bench can tell
 * a fast wrong answer from a result.
 */
#include "bench.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static const struct {
    const char *name;
    bench_fn fn;
} workloads[] = {
    {"fib", wl_fib},
    {"fib-scope", wl_fib_scope},
    {"fib-serial", wl_fib_serial},
    {"skynet", wl_skynet},
    {"yield", wl_yield},
    {"semfan", wl_semfan},
    {"semfan-scope", wl_semfan_scope},
    {"cancel", wl_cancel},
    {"million", wl_million},
    {"blocking", wl_blocking},
    {"blocking-pthread", wl_blocking_pthread},
    {"timers", wl_timers},
    {"pfor", wl_pfor},
    {"pfor-serial", wl_pfor_serial},
    {"chan-pingpong", wl_chan_pingpong},
    {"pipeline", wl_pipeline},
    {"fanout", wl_fanout},
};

#define N_WORKLOADS (sizeof workloads / sizeof workloads[0])

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

long long bench_rss_now(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long long size = 0, resident = 0;
    if (f == NULL)
        return 0;
    if (fscanf(f, "%lld %lld", &size, &resident) != 2)
        resident = 0;
    fclose(f);
    return resident * (long long)sysconf(_SC_PAGESIZE);
}

long long bench_rss_peak(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (long long)ru.ru_maxrss * 1024; /* Linux reports KiB */
}

static atomic_int failed;

void bench_error(const char *what, int rc)
{
    /* Only the first report: a broken spawn in fib would otherwise print a million lines. */
    if (atomic_exchange(&failed, 1) == 0)
        fprintf(stderr, "weft_bench: %s: %s (%d)\n", what, strerror(rc < 0 ? -rc : rc), rc);
}

int bench_failed(void)
{
    return atomic_load(&failed);
}

void bench_config(weft_config *cfg, unsigned threads)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->workers = threads;
}

static void usage(void)
{
    fprintf(stderr, "usage: weft_bench WORKLOAD THREADS\nworkloads:");
    for (size_t i = 0; i < N_WORKLOADS; i++)
        fprintf(stderr, " %s", workloads[i].name);
    fputc('\n', stderr);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        usage();
        return 2;
    }
    char *end;
    long threads = strtol(argv[2], &end, 10);
    if (*end != '\0' || threads < 1 || threads > 4096) {
        usage();
        return 2;
    }
    bench_fn fn = NULL;
    for (size_t i = 0; i < N_WORKLOADS; i++)
        if (strcmp(argv[1], workloads[i].name) == 0)
            fn = workloads[i].fn;
    if (fn == NULL) {
        usage();
        return 2;
    }

    bench_result r = {.ns_per_op = -1, .rss_per_task = -1, .p50_us = -1, .p99_us = -1};
    if (fn((unsigned)threads, &r) != 0)
        return 1;

    printf("%s threads=%ld seconds=%.6f check=%lld", argv[1], threads, r.seconds, r.check);
    if (r.ns_per_op >= 0)
        printf(" ns_per_op=%.1f", r.ns_per_op);
    if (r.rss_per_task >= 0)
        printf(" rss_per_task=%.0f", r.rss_per_task);
    if (r.p50_us >= 0)
        printf(" p50_us=%.1f p99_us=%.1f", r.p50_us, r.p99_us);
    putchar('\n');
    fflush(stdout);

    if (r.check != r.expect) {
        fprintf(stderr, "weft_bench: %s: check %lld, expected %lld\n", argv[1], r.check, r.expect);
        return 1;
    }
    return bench_failed() ? 1 : 0;
}
