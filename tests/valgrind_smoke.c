// SPDX-License-Identifier: MIT
/*
 * A small tour of the runtime for Valgrind (tools/test --stage valgrind runs it under
 * `valgrind --error-exitcode=1 --leak-check=full`): spawn and join, nested scopes, sleep, cancel,
 * a deadline, a semaphore with parked waiters, blocking calls, a failure with a message, and a
 * long-lived runtime fed from this thread. Memcheck must find no error and no leak: task stacks
 * are registered with VALGRIND_STACK_REGISTER, so switching between them is not mistaken for
 * wild stack-pointer moves.
 *
 * Also an ordinary stress program (label "valgrind" too), so every build runs it natively.
 * Prints one line; exits 0 when every step returned what it should, 1 otherwise.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "weft.h"

static atomic_int failures;

#define EXPECT(call, want)                                                                         \
    do {                                                                                           \
        int got_ = (call);                                                                         \
        if (got_ != (want)) {                                                                      \
            atomic_fetch_add(&failures, 1);                                                        \
            fprintf(stderr, "valgrind_smoke:%d: %s returned %d, expected %d\n", __LINE__, #call,   \
                    got_, (int)(want));                                                            \
        }                                                                                          \
    } while (0)

static atomic_int ran;

static int leaf(void *arg)
{
    /* Some stack and heap use of its own, in the task's stack. */
    char buf[512];
    memset(buf, (int)(intptr_t)arg, sizeof(buf));
    atomic_fetch_add(&ran, buf[7] == (char)(intptr_t)arg);
    return weft_yield();
}

static int fork_join(void *arg)
{
    int depth = (int)(intptr_t)arg;
    if (depth == 0)
        return leaf((void *)(intptr_t)3);
    weft_scope *s;
    int rc = weft_scope_open(&s, NULL);
    if (rc)
        return rc;
    for (int i = 0; i < 3 && rc == 0; i++)
        rc = weft_spawn(s, fork_join, (void *)(intptr_t)(depth - 1));
    int jrc = weft_scope_join(s);
    weft_scope_release(s);
    return rc ? rc : jrc;
}

static int sleeper(void *arg)
{
    return weft_sleep_for((weft_time)(intptr_t)arg * WEFT_MSEC);
}

static int holder(void *arg)
{
    weft_sem *sem = arg;
    int rc = weft_sem_acquire(sem);
    if (rc)
        return rc;
    rc = weft_sleep_for(WEFT_MSEC);
    weft_sem_release(sem);
    return rc;
}

static int blocking_sum(void *arg)
{
    int *v = arg; /* on the caller's stack */
    struct timespec ts = {0, 2 * 1000 * 1000};
    nanosleep(&ts, NULL);
    return v[0] + v[1];
}

static int failing(void *arg)
{
    (void)arg;
    return weft_fail(-EIO, "disk %d is on fire", 7);
}

static int root(void *arg)
{
    (void)arg;
    weft_scope *s;

    /* Spawn and join: 3^4 leaves in nested scopes. */
    EXPECT(fork_join((void *)(intptr_t)4), 0);
    EXPECT(atomic_load(&ran), 81);

    /* Sleep, and a per-spawn stack size. */
    EXPECT(weft_scope_open(&s, NULL), 0);
    for (int i = 0; i < 8; i++)
        EXPECT(weft_spawn_ex(s, sleeper, (void *)(intptr_t)(1 + i % 3),
                             &(weft_spawn_opts){.name = "sleeper", .stack_size = 64 * 1024}),
               0);
    EXPECT(weft_scope_join(s), 0);
    EXPECT(weft_scope_release(s), 0);

    /* Cancel parked sleepers, and a deadline. */
    EXPECT(weft_scope_open(&s, NULL), 0);
    for (int i = 0; i < 8; i++)
        EXPECT(weft_spawn(s, sleeper, (void *)(intptr_t)100000), 0);
    EXPECT(weft_sleep_for(WEFT_MSEC), 0);
    EXPECT(weft_scope_cancel(s), 0);
    EXPECT(weft_scope_join(s), -ECANCELED);
    EXPECT(weft_scope_release(s), 0);
    EXPECT(weft_scope_open(&s, &(weft_scope_opts){.timeout_ns = 5 * WEFT_MSEC}), 0);
    EXPECT(weft_spawn(s, sleeper, (void *)(intptr_t)100000), 0);
    EXPECT(weft_scope_join(s), -ETIMEDOUT);
    EXPECT(weft_scope_release(s), 0);

    /* A semaphore: more holders than tokens, so some park. */
    weft_sem *sem;
    EXPECT(weft_sem_create(&sem, 2), 0);
    EXPECT(weft_scope_open(&s, NULL), 0);
    for (int i = 0; i < 10; i++)
        EXPECT(weft_spawn(s, holder, sem), 0);
    EXPECT(weft_scope_join(s), 0);
    EXPECT(weft_scope_release(s), 0);
    EXPECT((int)weft_sem_available(sem), 2);
    EXPECT(weft_sem_release(sem), -EOVERFLOW);
    EXPECT(weft_sem_destroy(sem), 0);

    /* Blocking calls, with their arguments on this task's stack. */
    int v[2] = {20, 22}, result = 0;
    EXPECT(weft_blocking(blocking_sum, v, &result), 0);
    EXPECT(result, 42);

    /* A failure with a message, collected. */
    EXPECT(weft_scope_open(&s, &(weft_scope_opts){.name = "collect", .policy = WEFT_COLLECT}), 0);
    EXPECT(weft_spawn(s, failing, NULL), 0);
    EXPECT(weft_spawn(s, failing, NULL), 0);
    EXPECT(weft_scope_join(s), -EIO);
    EXPECT((int)weft_scope_error_count(s), 2);
    const weft_error *e = weft_scope_error(s, 0);
    EXPECT(e && strcmp(e->message, "disk 7 is on fire") == 0, 1);
    EXPECT(weft_scope_release(s), 0);

    /* A scope the task forgets to release: joined and released when it returns. */
    EXPECT(weft_scope_open(&s, NULL), 0);
    EXPECT(weft_spawn(s, sleeper, (void *)(intptr_t)1), 0);
    return 0;
}

static int submitted(void *arg)
{
    return (int)(intptr_t)arg + weft_sleep_for(WEFT_MSEC);
}

int main(void)
{
    weft_config cfg = {.workers = 2};
    EXPECT(weft_run(&cfg, root, NULL), 0);

    /* A long-lived runtime, fed from this thread. */
    weft_runtime *rt;
    EXPECT(weft_runtime_start(&rt, &cfg), 0);
    weft_handle *h[4];
    for (int i = 0; i < 4; i++)
        EXPECT(weft_submit(rt, submitted, (void *)(intptr_t)i, &h[i]), 0);
    for (int i = 0; i < 4; i++) {
        int st = -1;
        EXPECT(weft_handle_wait(h[i], WEFT_NEVER, &st), 0);
        EXPECT(st, i);
        EXPECT(weft_handle_release(h[i]), 0);
    }
    weft_handle *late;
    EXPECT(weft_submit(rt, sleeper, (void *)(intptr_t)100000, &late), 0);
    EXPECT(weft_runtime_shutdown(rt), 0); /* cancels the sleeper */
    int st = 0;
    EXPECT(weft_handle_wait(late, WEFT_NEVER, &st), 0);
    EXPECT(st, -ECANCELED);
    EXPECT(weft_handle_release(late), 0);

    int n = atomic_load(&failures);
    printf("valgrind_smoke: %s (%d failed step%s)\n", n ? "FAILED" : "OK", n, n == 1 ? "" : "s");
    return n ? 1 : 0;
}
