// SPDX-License-Identifier: MIT
// tbb_bench WORKLOAD THREADS — the oneTBB peer of weft_bench (benchmarks/README.md).
// tbb::task_group is TBB's structured fork/join: run() spawns, wait() joins, which is the
// closest match to a weft scope. Workloads TBB cannot express honestly (parking tasks in a
// sleep, semaphores that park tasks, a blocking pool) print nothing.
#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/parallel_reduce.h>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace
{

constexpr int fib_n = 30;
constexpr long long fib_expect = 832040;
constexpr long skynet_size = 1000000;
constexpr long long skynet_expect = 499999500000LL;
constexpr std::int64_t pfor_n = 100000000;
constexpr long long pfor_expect = 666666662; // round(sum / 1000), as in weft_bench

// steady_clock is CLOCK_MONOTONIC on Linux.
double now()
{
    using namespace std::chrono;
    return duration<double>(steady_clock::now().time_since_epoch()).count();
}

long fib_tasks(int n)
{
    if (n < 2)
        return n;
    long x = 0;
    tbb::task_group g;
    g.run([&] { x = fib_tasks(n - 1); });
    long y = fib_tasks(n - 2);
    g.wait();
    return x + y;
}

// noinline: the same call tree as the task version, as in weft_bench's fib-serial.
__attribute__((noinline)) long fib_plain(int n)
{
    if (n < 2)
        return n;
    return fib_plain(n - 1) + fib_plain(n - 2);
}

long long skynet(long num, long size)
{
    if (size == 1)
        return num;
    long long kids[10];
    long step = size / 10;
    tbb::task_group g;
    for (int i = 0; i < 10; i++)
        g.run([&kids, i, num, step] { kids[i] = skynet(num + i * step, step); });
    g.wait();
    long long sum = 0;
    for (long long k : kids)
        sum += k;
    return sum;
}

// noinline: the parallel pieces and the serial floor run the same machine code, as in
// weft_bench.
__attribute__((noinline)) double sqrt_sum(std::int64_t begin, std::int64_t end)
{
    double s = 0;
    for (std::int64_t i = begin; i < end; i++)
        s += std::sqrt(static_cast<double>(i));
    return s;
}

// parallel_reduce with TBB's default (auto) partitioner: TBB picks the grain, as weft does with
// grain 0.
double sqrt_reduce()
{
    return tbb::parallel_reduce(
        tbb::blocked_range<std::int64_t>(0, pfor_n), 0.0,
        [](const tbb::blocked_range<std::int64_t> &r, double acc) {
            return acc + sqrt_sum(r.begin(), r.end());
        },
        [](double a, double b) { return a + b; });
}

} // namespace

int main(int argc, char **argv)
{
    if (argc != 3) {
        std::fprintf(stderr, "usage: tbb_bench WORKLOAD THREADS\n");
        return 2;
    }
    std::string wl = argv[1];
    int threads = std::atoi(argv[2]);
    if (threads < 1) {
        std::fprintf(stderr, "tbb_bench: bad thread count %s\n", argv[2]);
        return 2;
    }

    // global_control caps the whole process; the arena makes the cap explicit for our work.
    tbb::global_control cap(tbb::global_control::max_allowed_parallelism, threads);
    tbb::task_arena arena(threads);

    long long check = 0, expect = 0;
    double seconds = 0;
    if (wl == "fib") {
        arena.execute([&] {
            double t0 = now();
            check = fib_tasks(fib_n);
            seconds = now() - t0;
        });
        expect = fib_expect;
    } else if (wl == "fib-serial") {
        volatile int n = fib_n; // keep fib(30) from being folded into a constant
        double t0 = now();
        check = fib_plain(n);
        seconds = now() - t0;
        expect = fib_expect;
    } else if (wl == "skynet") {
        arena.execute([&] {
            double t0 = now();
            check = skynet(0, skynet_size);
            seconds = now() - t0;
        });
        expect = skynet_expect;
    } else if (wl == "pfor") {
        arena.execute([&] {
            // Wake the arena's workers first: weft's workers are started before its interval.
            tbb::parallel_for(0, threads * 16, [](int) {});
            double t0 = now();
            double sum = sqrt_reduce();
            seconds = now() - t0;
            check = std::llround(sum / 1000);
        });
        expect = pfor_expect;
    } else if (wl == "pfor-serial") {
        volatile std::int64_t n = pfor_n;
        double t0 = now();
        double sum = sqrt_sum(0, n);
        seconds = now() - t0;
        check = std::llround(sum / 1000);
        expect = pfor_expect;
    } else {
        return 0; // not expressible here: print nothing, the table says n/a
    }

    std::printf("%s threads=%d seconds=%.6f check=%lld\n", wl.c_str(), threads, seconds, check);
    if (check != expect) {
        std::fprintf(stderr, "tbb_bench: %s: check %lld, expected %lld\n", wl.c_str(), check,
                     expect);
        return 1;
    }
    return 0;
}
