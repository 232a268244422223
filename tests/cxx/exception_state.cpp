// SPDX-License-Identifier: MIT
/*
 * C++ exception state belongs to the task, not to the worker's thread (lib/eh.h). The C++
 * runtime keeps the exceptions being handled and the count std::uncaught_exceptions returns per
 * OS thread; tasks that park inside a catch block, or in a destructor run while an exception
 * unwinds, share their worker's thread with other tasks and may resume on another thread.
 *
 * Checked, over many tasks on two workers and on one:
 *   - a task that parks inside a catch block still handles its own exception there
 *     (std::current_exception names it) and `throw;` rethrows it, wherever it resumes;
 *   - two tasks that take turns inside their catch blocks on one worker each keep their own
 *     exception alive (the first to leave its block used to destroy the other's);
 *   - a task that never threw sees no exception handled and none in flight, whatever ran before
 *     it on its thread;
 *   - a scope joined in a destructor during unwinding: its children (run inline by that join, or
 *     elsewhere) see no exception in flight, so a commit-unless-unwinding guard commits;
 *   - a parallel loop run inside a catch block: no piece sees the caller's exception, the pieces
 *     the caller runs itself included.
 *
 * Usage: cxx_exception_state [rounds]. Exit status 0 when every check held.
 */
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>

#include "weft.h"

namespace
{

std::atomic<int> failures{0};

void fail(const char *what, long detail)
{
    if (failures.fetch_add(1) < 10)
        std::fprintf(stderr, "cxx_exception_state: %s (%ld)\n", what, detail);
}

// Nothing handled, nothing in flight: what a task that never threw must see.
void expect_clean(const char *where)
{
    if (std::current_exception() != nullptr)
        fail(where, 1);
    if (std::uncaught_exceptions() != 0)
        fail(where, std::uncaught_exceptions());
}

struct tagged : std::runtime_error {
    long tag;
    explicit tagged(long t) : std::runtime_error("tagged"), tag(t) {}
};

long tag_of(const std::exception_ptr &p)
{
    try {
        std::rethrow_exception(p);
    } catch (const tagged &e) {
        return e.tag;
    } catch (...) {
        return -1;
    }
}

// Catches its own exception, parks in the catch block (sleeps and yields, so that it may move),
// checks that the exception being handled is still its own, then rethrows it with `throw;`.
int catcher(void *arg)
{
    long tag = reinterpret_cast<long>(arg);
    expect_clean("a catcher before it throws");
    try {
        try {
            throw tagged(tag);
        } catch (const tagged &) {
            for (int i = 0; i < 4; i++) {
                if (i % 2)
                    weft_yield();
                else
                    weft_sleep_for(50 * WEFT_USEC);
                if (tag_of(std::current_exception()) != tag)
                    fail("the exception handled after a park is another's", tag);
            }
            throw;
        }
    } catch (const tagged &e) {
        if (e.tag != tag)
            fail("rethrown: another task's exception", e.tag);
    } catch (...) {
        fail("rethrown: something else", tag);
    }
    expect_clean("a catcher after its catch blocks");
    return 0;
}

// Never throws; looks at the state between parks.
int bystander(void *)
{
    for (int i = 0; i < 8; i++) {
        expect_clean("a task that never threw");
        weft_yield();
    }
    return 0;
}

std::atomic<int> committed{0}, rolled_back{0};

// The usual commit-unless-unwinding guard.
struct transaction {
    int at_start = std::uncaught_exceptions();
    ~transaction()
    {
        if (std::uncaught_exceptions() > at_start)
            rolled_back.fetch_add(1);
        else
            committed.fetch_add(1);
    }
};

int child(void *)
{
    transaction t; // succeeds: must commit
    expect_clean("a child of a scope joined during unwinding");
    for (int i = 0; i < 3; i++)
        weft_sleep_for(20 * WEFT_USEC);
    return 0;
}

// A scope's C++ wrapper joins in its destructor, on the exception path too.
struct scope_guard {
    weft_scope *s = nullptr;
    scope_guard()
    {
        weft_scope_open(&s, nullptr);
    }
    ~scope_guard()
    {
        weft_scope_close(s);
    }
};

int unwinder(void *)
{
    try {
        scope_guard g;
        for (int i = 0; i < 16; i++)
            weft_spawn(g.s, child, nullptr);
        throw std::runtime_error("fails after spawning");
    } catch (const std::runtime_error &) {
    }
    expect_clean("after the unwinding join");
    return 0;
}

int piece(int64_t, int64_t, void *)
{
    expect_clean("a piece of a loop run inside a catch block");
    return 0;
}

int looper(void *)
{
    try {
        throw tagged(0);
    } catch (const tagged &) {
        if (weft_parallel_for(0, 256, 1, piece, nullptr) != 0)
            fail("the loop failed", 0);
    }
    return 0;
}

int round_root(void *)
{
    weft_scope *s;
    if (weft_scope_open(&s, nullptr))
        return -1;
    for (long i = 1; i <= 64; i++) {
        weft_spawn(s, catcher, reinterpret_cast<void *>(i));
        if (i % 8 == 0) {
            weft_spawn(s, bystander, nullptr);
            weft_spawn(s, unwinder, nullptr);
            weft_spawn(s, looper, nullptr);
        }
    }
    return weft_scope_close(s);
}

} // namespace

/* ThreadSanitizer costs each task that gets a stack of its own a fiber (a millisecond or more):
 * fewer rounds there, as the C stress programs take (support.h). */
#if defined(__SANITIZE_THREAD__)
constexpr int default_rounds = 6;
#else
constexpr int default_rounds = 20;
#endif

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? std::atoi(argv[1]) : default_rounds;
    for (unsigned workers = 1; workers <= 2; workers++) {
        for (int r = 0; r < rounds; r++) {
            weft_config cfg{};
            cfg.workers = workers;
            int rc = weft_run(&cfg, round_root, nullptr);
            if (rc != 0)
                fail("weft_run", rc);
        }
    }
    int expected = rounds * 2 * 8 * 16;
    std::printf("cxx_exception_state: %d rounds at 1 and 2 workers; children committed %d of %d, "
                "rolled back %d; %d failed check(s)\n",
                rounds, committed.load(), expected, rolled_back.load(), failures.load());
    if (committed.load() != expected || rolled_back.load() != 0)
        fail("a child that succeeded did not commit", rolled_back.load());
    return failures.load() ? 1 : 0;
}
