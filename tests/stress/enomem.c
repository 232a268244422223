// SPDX-License-Identifier: MIT
/*
 * Out of memory, everywhere: makes the n-th allocation of the library fail, for n = 1, 2, ...
 * until n lies past the last allocation of the scenario, and checks each time that the failure
 * comes back as -ENOMEM (or, for a spawn, a refused spawn) with nothing half-done: every spawn
 * that was accepted ran exactly once, every token came back, the runtime shut down, and (in the
 * ASan build) nothing leaked. The scenario touches runtime start, scope open with a deadline,
 * spawn, max_concurrency, sleep (timer arm), semaphore waits, blocking calls, failures with
 * messages, the failure of a scope its task left open, and submission from a foreign thread.
 *
 * A second part lowers RLIMIT_AS in a child process so that stacks cannot be mapped, and checks
 * that spawning then returns -ENOMEM instead of crashing.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alloc.h"
#include "weft.h"

static int failures;

#define CHECK(c, ...)                                                                              \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "enomem: %s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #c);          \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

typedef struct scenario {
    weft_sem *sem;
    atomic_int ran;      /* task bodies that started */
    atomic_int accepted; /* spawns that returned 0 */
    atomic_int unexpected;
    atomic_int holding;
} scenario;

static void expect(scenario *c, int rc, int ok1, int ok2)
{
    if (rc != 0 && rc != ok1 && rc != ok2) {
        fprintf(stderr, "enomem: unexpected code %d\n", rc);
        atomic_fetch_add(&c->unexpected, 1);
    }
}

static int trivial(void *arg)
{
    return (int)(long)arg;
}

static int child(void *arg)
{
    scenario *c = arg;
    atomic_fetch_add(&c->ran, 1);
    expect(c, weft_sleep_for(20 * WEFT_USEC), -ENOMEM, -ENOMEM);
    int rc = weft_sem_acquire(c->sem);
    expect(c, rc, -ENOMEM, -ENOMEM);
    if (rc == 0) {
        if (atomic_fetch_add(&c->holding, 1) >= 2)
            atomic_fetch_add(&c->unexpected, 1);
        weft_yield();
        atomic_fetch_sub(&c->holding, 1);
        expect(c, weft_sem_release(c->sem), 1, 1);
    }
    int result = 0;
    expect(c, weft_blocking(trivial, (void *)7L, &result), -ENOMEM, -EAGAIN);
    return 0;
}

static int failing_child(void *arg)
{
    scenario *c = arg;
    atomic_fetch_add(&c->ran, 1);
    return weft_fail(-EIO, "failing on purpose with a message of some length");
}

static void spawn_counted(scenario *c, weft_scope *s, weft_fn fn)
{
    int rc = weft_spawn(s, fn, c);
    if (rc == 0)
        atomic_fetch_add(&c->accepted, 1);
    else
        expect(c, rc, -ENOMEM, -ENOMEM);
}

/* Returns with a scope open whose child fails: the implicit join hands the failure up. */
static int forgetful(void *arg)
{
    scenario *c = arg;
    atomic_fetch_add(&c->ran, 1);
    weft_scope *s;
    weft_scope_opts o = {.name = "forgotten"};
    int rc = weft_scope_open(&s, &o);
    if (rc) {
        expect(c, rc, -ENOMEM, -ENOMEM);
        return 0;
    }
    spawn_counted(c, s, failing_child);
    return 0;
}

static int root(void *arg)
{
    scenario *c = arg;
    weft_scope *s;
    weft_scope_opts o = {.timeout_ns = 60 * WEFT_SEC, .policy = WEFT_COLLECT, .name = "outer"};
    int rc = weft_scope_open(&s, &o);
    if (rc)
        return rc;
    for (int i = 0; i < 6; i++)
        spawn_counted(c, s, child);
    spawn_counted(c, s, failing_child);
    spawn_counted(c, s, forgetful);
    weft_scope *limited;
    weft_scope_opts lo = {.max_concurrency = 2, .policy = WEFT_COLLECT};
    rc = weft_scope_open(&limited, &lo);
    if (rc == 0) {
        for (int i = 0; i < 4; i++)
            spawn_counted(c, limited, child);
        expect(c, weft_scope_join(limited), -ENOMEM, -ENOMEM);
        weft_scope_release(limited);
    } else {
        expect(c, rc, -ENOMEM, -ENOMEM);
    }
    rc = weft_scope_join(s);
    expect(c, rc, -EIO, -ENOMEM);
    weft_scope_release(s);
    return 0;
}

/* One run with the n-th allocation failing. Returns how many allocations the run made. */
static long run_once(long n)
{
    scenario c = {0};
    int rc = weft_sem_create(&c.sem, 2);
    CHECK(rc == 0, "sem");
    weft__alloc_fail_at(n);
    weft_config cfg = {.workers = 1, .watchdog_ns = -1};
    rc = weft_run(&cfg, root, &c);
    /* The foreign-thread bridge, under the same count. */
    weft_runtime *rt = NULL;
    int src = weft_runtime_start(&rt, &cfg);
    if (src == 0) {
        weft_handle *h;
        int sub = weft_submit(rt, trivial, (void *)0L, &h);
        if (sub == 0) {
            int status = -1;
            CHECK(weft_handle_wait(h, WEFT_NEVER, &status) == 0, "wait, n=%ld", n);
            CHECK(status == 0, "status %d, n=%ld", status, n);
            weft_handle_release(h);
        } else {
            CHECK(sub == -ENOMEM, "submit %d, n=%ld", sub, n);
        }
        CHECK(weft_runtime_shutdown(rt) == 0, "shutdown, n=%ld", n);
    } else {
        CHECK(src == -ENOMEM, "runtime start %d, n=%ld", src, n);
    }
    long made = weft__alloc_count();
    weft__alloc_fail_at(0);
    CHECK(rc == 0 || rc == -ENOMEM, "weft_run returned %d, n=%ld", rc, n);
    CHECK(atomic_load(&c.ran) == atomic_load(&c.accepted), "%d ran, %d accepted, n=%ld",
          atomic_load(&c.ran), atomic_load(&c.accepted), n);
    CHECK(atomic_load(&c.unexpected) == 0, "unexpected codes, n=%ld", n);
    CHECK(weft_sem_available(c.sem) == 2, "tokens %u, n=%ld", weft_sem_available(c.sem), n);
    weft_sem_destroy(c.sem);
    return made;
}

/* ---- stacks that cannot be mapped --------------------------------------------------------- */
/* Not under the sanitizers: they reserve terabytes of address space, so RLIMIT_AS cannot be
 * lowered under them. */
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)

static int parker(void *arg)
{
    (void)arg;
    weft_sleep_for(3600 * WEFT_SEC);
    return 0;
}

static int spawn_until_refused(void *arg)
{
    int *refused = arg;
    weft_scope *s;
    if (weft_scope_open(&s, NULL) != 0)
        return 1;
    for (int i = 0; i < 1000000; i++) {
        int rc = weft_spawn(s, parker, NULL);
        if (rc == -ENOMEM) {
            *refused = 1;
            break;
        }
        if (rc != 0)
            return 2;
        if (i % 64 == 0)
            weft_yield(); /* let them start, so that their stacks are taken */
    }
    weft_scope_cancel(s);
    weft_scope_join(s);
    weft_scope_release(s);
    return 0;
}

static void rlimit_part(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        /* Room for the runtime and a few slabs of stacks, not for a million stacks. */
        struct rlimit rl = {.rlim_cur = (rlim_t)1 << 30, .rlim_max = (rlim_t)1 << 30};
        setrlimit(RLIMIT_AS, &rl);
        int refused = 0;
        weft_config cfg = {.workers = 1, .watchdog_ns = -1};
        int rc = weft_run(&cfg, spawn_until_refused, &refused);
        _exit(rc == 0 && refused ? 0 : 10 + rc);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "with RLIMIT_AS lowered: status %#x (want a refused spawn, no crash)", status);
}
#endif

int main(void)
{
    long n = 1, made;
    do {
        made = run_once(n);
        if (failures)
            break;
    } while (++n <= made);
    printf("enomem: failed allocation 1..%ld of %ld in turn\n", n - 1, made);
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
    rlimit_part();
#endif
    printf("enomem: %s, %d failed checks\n", failures ? "FAIL" : "ok", failures);
    return failures ? 1 : 0;
}
