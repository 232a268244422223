// SPDX-License-Identifier: MIT
/*
 * Shared plumbing of weft_bench: the clock, RSS probes and the contract line of
 * benchmarks/README.md ("name threads=T seconds=S check=C [key=value...]").
 */
#ifndef WEFT_BENCH_H
#define WEFT_BENCH_H

#include "weft.h"

/* What a workload measured; main() prints it and turns a bad check into the exit status. */
typedef struct bench_result {
    double seconds;
    long long check;
    long long expect;
    /* Extra contract fields; a negative value means "not reported". */
    double ns_per_op;
    double rss_per_task;
    double p50_us; /* timers: median and 99th percentile of wake-up lateness */
    double p99_us;
} bench_result;

/* A workload: runs with `threads` workers and fills *out. Returns 0, or non-zero when it could
 * not run at all (the reason is already on stderr). */
typedef int (*bench_fn)(unsigned threads, bench_result *out);

int wl_fib(unsigned threads, bench_result *out);
int wl_fib_scope(unsigned threads, bench_result *out);
int wl_fib_serial(unsigned threads, bench_result *out);
int wl_skynet(unsigned threads, bench_result *out);
int wl_yield(unsigned threads, bench_result *out);
int wl_semfan(unsigned threads, bench_result *out);
int wl_semfan_scope(unsigned threads, bench_result *out);
int wl_cancel(unsigned threads, bench_result *out);
int wl_million(unsigned threads, bench_result *out);
int wl_blocking(unsigned threads, bench_result *out);
int wl_blocking_pthread(unsigned threads, bench_result *out);
int wl_timers(unsigned threads, bench_result *out);
int wl_pfor(unsigned threads, bench_result *out);
int wl_pfor_serial(unsigned threads, bench_result *out);
int wl_chan_pingpong(unsigned threads, bench_result *out);
int wl_pipeline(unsigned threads, bench_result *out);
int wl_fanout(unsigned threads, bench_result *out);

/* Seconds on CLOCK_MONOTONIC. */
double bench_now(void);

/* Resident set size now, in bytes (/proc/self/statm). */
long long bench_rss_now(void);

/* Peak resident set size of the process so far, in bytes (getrusage). */
long long bench_rss_peak(void);

/* Reports a failed library call once on stderr and marks the run as failed; tasks call it and
 * carry on, so that a broken run still ends and prints its (failing) check. */
void bench_error(const char *what, int rc);

/* Whether bench_error was called. */
int bench_failed(void);

/* A zeroed weft_config with `threads` workers; workloads start from it. */
void bench_config(weft_config *cfg, unsigned threads);

#endif
