// SPDX-License-Identifier: MIT
/*
 * Pieces shared by the test programs: running a root task on a number of workers, waiting for a
 * counter from a task or from a plain thread, a seeded random sequence, the ThreadSanitizer
 * switch, and the checks of the plain stress programs.
 *
 * Header-only (static inline functions and macros), so that every test stays a single source
 * file. Nothing here depends on Criterion; the Criterion suites include support_criterion.h,
 * which adds the checks they make off the test's thread.
 */
#ifndef WEFT_TESTS_SUPPORT_H
#define WEFT_TESTS_SUPPORT_H

#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include "weft.h"

/* Defined when built with ThreadSanitizer, where every task that gets a stack of its own costs a
 * TSan fiber (a millisecond or more): programs scale their default sizes down with it. */
#if defined(__SANITIZE_THREAD__) || defined(WEFT_TSAN)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif

#define HOUR (3600 * WEFT_SEC)

static inline int run_on(unsigned workers, weft_fn root, void *arg)
{
    weft_config cfg = {.workers = workers};
    return weft_run(&cfg, root, arg);
}

/* One more in `*count`; raises `*high` to the new count if it is higher (a high-water mark kept
 * across threads). Returns the new count. */
static inline int count_up_with_high(atomic_int *count, atomic_int *high)
{
    int now = atomic_fetch_add(count, 1) + 1;
    int m = atomic_load(high);
    while (now > m && !atomic_compare_exchange_weak(high, &m, now)) {
    }
    return now;
}

/* In a task: polls *v with weft_yield() until it reaches `target`; other tasks run meanwhile. */
static inline int yield_until(atomic_int *v, int target)
{
    while (atomic_load(v) < target) {
        int rc = weft_yield();
        if (rc)
            return rc;
    }
    return 0;
}

/* On a plain thread: waits for *v >= target without sleeping. */
static inline void spin_until(atomic_int *v, int target)
{
    while (atomic_load(v) < target)
        sched_yield();
}

/* splitmix64: the next number of the sequence whose state is *s. */
static inline uint64_t next_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline unsigned below(uint64_t *s, unsigned n)
{
    return (unsigned)(next_rand(s) % n);
}

/* ---- fork-join fib ---------------------------------------------------------------------------
 *
 * fib(n) with a task per call: fib(n - 1) spawned into a scope of its own, fib(n - 2) computed by
 * a plain call, the scope joined. A failed open, spawn or join makes the result negative, far
 * below any right one (n up to 30). `spawned`, if not NULL, counts the children spawned. */
#define SUPPORT_FIB_FAILED (-1000000000L)

typedef struct support_fib_arg {
    int n;
    long result;
    atomic_long *spawned;
} support_fib_arg;

static inline long support_fib(int n, atomic_long *spawned);

static inline int support_fib_task(void *p)
{
    support_fib_arg *a = p;
    a->result = support_fib(a->n, a->spawned);
    return 0;
}

static inline long support_fib(int n, atomic_long *spawned)
{
    if (n < 2)
        return n;
    support_fib_arg child = {.n = n - 1, .spawned = spawned};
    weft_scope *s;
    if (weft_scope_open(&s, NULL) != 0)
        return SUPPORT_FIB_FAILED;
    if (weft_spawn(s, support_fib_task, &child) != 0)
        child.result = SUPPORT_FIB_FAILED;
    else if (spawned)
        atomic_fetch_add(spawned, 1);
    long y = support_fib(n - 2, spawned);
    if (weft_scope_close(s) != 0)
        return SUPPORT_FIB_FAILED;
    return child.result + y;
}

/* ---- checks in plain stress programs ---------------------------------------------------------
 *
 * A stress program defines STRESS_NAME (its name, a string literal) before including this header
 * and gets `failures`, the number of failed checks, and CHECK(c, fmt, ...), which counts a failed
 * check and prints the first ten on stderr. With STRESS_SEEDED defined as well it also gets
 * `run_seed`, which the program sets and every message shows. */
#ifdef STRESS_NAME

static atomic_int failures;

#ifdef STRESS_SEEDED
static unsigned long long run_seed; /* printed with failures: rerun with it as argv[2] */
#define STRESS_CHECK_HEADER_(c)                                                                    \
    fprintf(stderr, STRESS_NAME " (seed %llu): %s:%d: CHECK(%s) failed: ", run_seed, __FILE__,     \
            __LINE__, #c)
#else
#define STRESS_CHECK_HEADER_(c)                                                                    \
    fprintf(stderr, STRESS_NAME ": %s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #c)
#endif

#define CHECK(c, ...)                                                                              \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            if (atomic_fetch_add(&failures, 1) < 10) {                                             \
                STRESS_CHECK_HEADER_(c);                                                           \
                fprintf(stderr, __VA_ARGS__);                                                      \
                fputc('\n', stderr);                                                               \
            }                                                                                      \
        }                                                                                          \
    } while (0)

#endif /* STRESS_NAME */

#endif /* WEFT_TESTS_SUPPORT_H */
