// SPDX-License-Identifier: MIT
/*
 * Checks made off the test's thread, for the Criterion suites (with everything in support.h).
 *
 * Criterion's assertions may only run on the test's own thread: checks inside tasks and foreign
 * threads are recorded here and asserted once the runtime has ended, with ASSERT_CHECKS().
 */
#ifndef WEFT_TESTS_SUPPORT_CRITERION_H
#define WEFT_TESTS_SUPPORT_CRITERION_H

#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>

#include "support.h"

static atomic_int check_failures;
static char check_first[512];

static inline void check_fail(const char *file, int line, const char *fmt, ...)
{
    if (atomic_fetch_add(&check_failures, 1) != 0)
        return;
    int n = snprintf(check_first, sizeof(check_first), "%s:%d: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(check_first + n, sizeof(check_first) - (size_t)n, fmt, ap);
    va_end(ap);
}

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            check_fail(__FILE__, __LINE__, "CHECK(%s)", #c);                                       \
    } while (0)
#define CHECK_EQ(a, b)                                                                             \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_)                                                                              \
            check_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, a_, b_);              \
    } while (0)
#define CHECK_GE(a, b)                                                                             \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (!(a_ >= b_))                                                                           \
            check_fail(__FILE__, __LINE__, "%s >= %s: %lld < %lld", #a, #b, a_, b_);               \
    } while (0)
/* In a task: record the failure and end the task. */
#define REQUIRE_EQ(a, b)                                                                           \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_) {                                                                            \
            check_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, a_, b_);              \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)
#define ASSERT_CHECKS()                                                                            \
    cr_assert_eq(atomic_load(&check_failures), 0, "%d failed check(s); first: %s",                 \
                 atomic_load(&check_failures), check_first)

#endif /* WEFT_TESTS_SUPPORT_CRITERION_H */
