// SPDX-License-Identifier: MIT
// boost_fiber_bench WORKLOAD THREADS — the Boost.Fiber peer of weft_bench (benchmarks/README.md).
// Boost.Fiber's fibers are stackful user-space threads, as weft's tasks are: THREADS OS threads
// share them through the library's work_stealing scheduler, a fiber is joined by
// fiber::join(), and its channels, mutex and condition variable park the fiber, not the thread.
// It has no scope, no cancellation and no pool for blocking calls, so cancel, million and the
// blocking workloads print nothing; nor does pfor (no parallel loop of its own).
#include <boost/fiber/all.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace
{

constexpr int fib_n = 30;
constexpr long long fib_expect = 832040;
constexpr long skynet_size = 1000000;
constexpr long long skynet_expect = 499999500000LL;
constexpr int yields = 1000000;
constexpr int semfan_tasks = 100000;
constexpr int semfan_tokens = 64;
constexpr std::int64_t items = 1000000;
// Boost's buffered_channel wants a power of two and keeps one slot of its ring empty, so this
// channel holds 63 items where the contract's hold 64: the nearest it can say.
constexpr std::size_t chan_capacity = 64;

double now()
{
    using namespace std::chrono;
    return duration<double>(steady_clock::now().time_since_epoch()).count();
}

// THREADS OS threads under one work_stealing scheduler: this thread and THREADS - 1 more, which
// park their main fiber on a condition variable until the pool ends, so that the scheduler
// runs stolen fibers on them meanwhile. The scheduler's constructor waits until every thread
// has joined it, so the workers are running before any interval starts.
class pool
{
  public:
    explicit pool(unsigned threads) : threads_(threads)
    {
        for (unsigned i = 1; i < threads; i++)
            others_.emplace_back([this] {
                boost::fibers::use_scheduling_algorithm<boost::fibers::algo::work_stealing>(
                    threads_);
                std::unique_lock<std::mutex> lock(mutex_);
                done_cv_.wait(lock, [this] { return done_; });
            });
        boost::fibers::use_scheduling_algorithm<boost::fibers::algo::work_stealing>(threads_);
    }
    ~pool()
    {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            done_ = true;
        }
        done_cv_.notify_all();
        for (auto &t : others_)
            t.join();
    }
    pool(const pool &) = delete;
    pool &operator=(const pool &) = delete;

  private:
    unsigned threads_;
    std::vector<std::thread> others_;
    std::mutex mutex_;
    boost::fibers::condition_variable_any done_cv_;
    bool done_ = false;
};

long fib_fibers(int n)
{
    if (n < 2)
        return n;
    long x = 0;
    boost::fibers::fiber child([&x, n] { x = fib_fibers(n - 1); });
    long y = fib_fibers(n - 2);
    child.join();
    return x + y;
}

// noinline: the same call tree as the fiber version, as in weft_bench's fib-serial.
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
    std::array<long long, 10> kids{};
    std::array<boost::fibers::fiber, 10> children;
    long step = size / 10;
    for (int i = 0; i < 10; i++)
        children[i] =
            boost::fibers::fiber([&kids, i, num, step] { kids[i] = skynet(num + i * step, step); });
    for (auto &c : children)
        c.join();
    long long sum = 0;
    for (long long k : kids)
        sum += k;
    return sum;
}

// Boost.Fiber has no semaphore; this is the one its documentation's primitives make: a count
// under a fiber mutex and a fiber condition variable, which park the waiting fiber.
class semaphore
{
  public:
    explicit semaphore(int tokens) : tokens_(tokens) {}
    void acquire()
    {
        std::unique_lock<boost::fibers::mutex> lock(mutex_);
        cv_.wait(lock, [this] { return tokens_ > 0; });
        tokens_--;
    }
    void release()
    {
        {
            std::lock_guard<boost::fibers::mutex> lock(mutex_);
            tokens_++;
        }
        cv_.notify_one();
    }
    int tokens()
    {
        std::lock_guard<boost::fibers::mutex> lock(mutex_);
        return tokens_;
    }

  private:
    boost::fibers::mutex mutex_;
    boost::fibers::condition_variable cv_;
    int tokens_;
};

// semfan acquires inside each fiber; semfan-scope takes the token in the spawning loop before
// starting each fiber (Go's and errgroup's way to bound a group), so that no more than 64
// fibers exist unfinished at once, as no more than 64 of a weft scope's children start.
long long semfan(bool bound_spawns)
{
    semaphore sem(semfan_tokens);
    std::atomic<long long> counter{0};
    std::vector<boost::fibers::fiber> fibers;
    fibers.reserve(semfan_tasks);
    for (int i = 0; i < semfan_tasks; i++) {
        if (bound_spawns)
            sem.acquire();
        fibers.emplace_back([&sem, &counter, bound_spawns] {
            if (!bound_spawns)
                sem.acquire();
            boost::this_fiber::yield();
            counter.fetch_add(1, std::memory_order_relaxed);
            sem.release();
        });
    }
    for (auto &f : fibers)
        f.join();
    if (sem.tokens() != semfan_tokens) {
        std::fprintf(stderr, "boost_fiber_bench: %d tokens at the end, expected %d\n", sem.tokens(),
                     semfan_tokens);
        return -1;
    }
    return counter.load();
}

long long yield_pair()
{
    std::atomic<long long> done{0};
    auto body = [&done] {
        for (int i = 0; i < yields; i++) {
            boost::this_fiber::yield();
            done.fetch_add(1, std::memory_order_relaxed);
        }
    };
    boost::fibers::fiber a(body), b(body);
    a.join();
    b.join();
    return done.load();
}

using chan = boost::fibers::buffered_channel<std::int64_t>;
using rendezvous = boost::fibers::unbuffered_channel<std::int64_t>;

long long pingpong()
{
    rendezvous there, back;
    long long good = 0;
    boost::fibers::fiber ponger([&] {
        std::int64_t v;
        while (there.pop(v) == boost::fibers::channel_op_status::success)
            back.push(v + 1);
    });
    boost::fibers::fiber pinger([&] {
        for (std::int64_t i = 0; i < items; i++) {
            std::int64_t r;
            there.push(i);
            if (back.pop(r) == boost::fibers::channel_op_status::success && r == i + 1)
                good++;
        }
        there.close();
    });
    pinger.join();
    ponger.join();
    return good;
}

long long pipeline()
{
    std::array<chan, 4> ch{chan(chan_capacity), chan(chan_capacity), chan(chan_capacity),
                           chan(chan_capacity)};
    long long sum = 0;
    std::vector<boost::fibers::fiber> fibers;
    fibers.emplace_back([&] {
        for (std::int64_t i = 0; i < items; i++)
            ch[0].push(i);
        ch[0].close();
    });
    for (int s = 0; s < 3; s++)
        fibers.emplace_back([&, s] {
            for (std::int64_t v : ch[s])
                ch[s + 1].push(v + 1);
            ch[s + 1].close();
        });
    fibers.emplace_back([&] {
        for (std::int64_t v : ch[3])
            sum += v;
    });
    for (auto &f : fibers)
        f.join();
    return sum;
}

long long fanout(unsigned consumers)
{
    chan in(chan_capacity), out(chan_capacity);
    std::atomic<unsigned> running{consumers};
    long long sum = 0;
    std::vector<boost::fibers::fiber> fibers;
    fibers.emplace_back([&] {
        for (std::int64_t i = 0; i < items; i++)
            in.push(i);
        in.close();
    });
    for (unsigned c = 0; c < consumers; c++)
        fibers.emplace_back([&] {
            for (std::int64_t v : in)
                out.push(v + 1);
            if (running.fetch_sub(1) == 1)
                out.close();
        });
    fibers.emplace_back([&] {
        for (std::int64_t v : out)
            sum += v;
    });
    for (auto &f : fibers)
        f.join();
    return sum;
}

} // namespace

int main(int argc, char **argv)
{
    if (argc != 3) {
        std::fprintf(stderr, "usage: boost_fiber_bench WORKLOAD THREADS\n");
        return 2;
    }
    const std::string wl = argv[1];
    int threads = std::atoi(argv[2]);
    if (threads < 1) {
        std::fprintf(stderr, "boost_fiber_bench: bad thread count %s\n", argv[2]);
        return 2;
    }
    long long check = 0, expect = 0;
    double seconds = 0;
    double ns_per_op = -1;
    if (wl == "fib-serial") {
        volatile int n = fib_n;
        double t0 = now();
        check = fib_plain(n);
        seconds = now() - t0;
        expect = fib_expect;
    } else if (wl == "fib" || wl == "skynet" || wl == "yield" || wl == "semfan" ||
               wl == "semfan-scope" || wl == "chan-pingpong" || wl == "pipeline" ||
               wl == "fanout") {
        pool workers(static_cast<unsigned>(threads));
        double t0 = now();
        if (wl == "fib") {
            check = fib_fibers(fib_n);
            expect = fib_expect;
        } else if (wl == "skynet") {
            check = skynet(0, skynet_size);
            expect = skynet_expect;
        } else if (wl == "yield") {
            check = yield_pair();
            expect = 2LL * yields;
        } else if (wl == "semfan" || wl == "semfan-scope") {
            check = semfan(wl == "semfan-scope");
            expect = semfan_tasks;
        } else if (wl == "chan-pingpong") {
            check = pingpong();
            expect = items;
        } else if (wl == "pipeline") {
            check = pipeline();
            expect = 500002500000LL;
        } else {
            check = fanout(static_cast<unsigned>(threads));
            expect = 500000500000LL;
        }
        seconds = now() - t0;
        if (wl == "yield")
            ns_per_op = seconds / (2.0 * yields) * 1e9;
        else if (wl == "chan-pingpong")
            ns_per_op = seconds / static_cast<double>(items) * 1e9;
    } else {
        return 0; // not expressible here: print nothing, the table says n/a
    }
    std::printf("%s threads=%d seconds=%.6f check=%lld", wl.c_str(), threads, seconds, check);
    if (ns_per_op >= 0)
        std::printf(" ns_per_op=%.1f", ns_per_op);
    std::printf("\n");
    if (check != expect) {
        std::fprintf(stderr, "boost_fiber_bench: %s: check %lld, expected %lld\n", wl.c_str(),
                     check, expect);
        return 1;
    }
    return 0;
}
