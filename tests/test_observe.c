// SPDX-License-Identifier: MIT
/*
 * Looking into a running runtime: metrics snapshots that add up on known workloads, the names of
 * the runtime's threads, and the reports routed to a callback (the watchdog's on its thread, the
 * overflow's in a fault handler, in a child process).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support_criterion.h"

/* ---- metrics ------------------------------------------------------------------------------ */

#define N_TASKS 1000

static int nothing(void *arg)
{
    (void)arg;
    return 0;
}

static weft_metrics seen;

static int spawn_n_root(void *arg)
{
    (void)arg;
    weft_scope *s;
    CHECK_EQ(weft_scope_open(&s, NULL), 0);
    for (int i = 0; i < N_TASKS; i++)
        CHECK_EQ(weft_spawn(s, nothing, NULL), 0);
    CHECK_EQ(weft_scope_close(s), 0);
    CHECK_EQ(weft_runtime_metrics(NULL, &seen, sizeof(seen), NULL, 0), 0);
    return 0;
}

Test(observe, metrics_count_spawns_and_starts)
{
    cr_assert_eq(run_on(1, spawn_n_root, NULL), 0);
    ASSERT_CHECKS();
    cr_assert_eq(seen.workers, 1u);
    cr_assert_eq(seen.total.spawned, N_TASKS, "spawned %llu",
                 (unsigned long long)seen.total.spawned);
    /* The root (submitted) and every child, inline or not. */
    cr_assert_eq(seen.total.started, N_TASKS + 1, "started %llu",
                 (unsigned long long)seen.total.started);
    cr_assert_eq(seen.submitted, 1u);
    cr_assert_leq(seen.total.inline_runs, N_TASKS);
    cr_assert_eq(seen.total.stolen, 0u);
    cr_assert_eq(seen.total.spawn_queue, 0u);
}

static weft_event *ev;

static int waiter(void *arg)
{
    (void)arg;
    return weft_event_wait(ev);
}

static int setter(void *arg)
{
    (void)arg;
    weft_yield(); /* the waiter parks first */
    return weft_event_set(ev);
}

static weft_metrics before, after;

static int park_root(void *arg)
{
    (void)arg;
    CHECK_EQ(weft_runtime_metrics(NULL, &before, sizeof(before), NULL, 0), 0);
    CHECK_EQ(weft_event_create(&ev), 0);
    weft_scope *s;
    CHECK_EQ(weft_scope_open(&s, NULL), 0);
    weft_spawn_opts own = {.stack_size = 64 * 1024}; /* not inline: each on a stack of its own */
    CHECK_EQ(weft_spawn_ex(s, waiter, NULL, &own), 0);
    CHECK_EQ(weft_spawn_ex(s, setter, NULL, &own), 0);
    CHECK_EQ(weft_scope_close(s), 0);
    weft_event_destroy(ev);
    CHECK_EQ(weft_runtime_metrics(NULL, &after, sizeof(after), NULL, 0), 0);
    return 0;
}

Test(observe, metrics_count_a_park_and_its_wake)
{
    cr_assert_eq(run_on(1, park_root, NULL), 0);
    ASSERT_CHECKS();
    /* The waiter's park on the event, the root's on its join at least. */
    cr_assert_geq(after.total.parked - before.total.parked, 1);
    cr_assert_geq(after.total.woken - before.total.woken, 1);
    cr_assert_eq(after.total.spawned - before.total.spawned, 2);
    cr_assert_eq(after.total.started - before.total.started, 2);
}

/* Two tasks that each wait until both run at once: at two workers the second can only run if
 * the idle worker steals it from the first one's queue. */
static atomic_int running_now;
static weft_worker_metrics per_worker[2];

static int meet(void *arg)
{
    (void)arg;
    atomic_fetch_add(&running_now, 1);
    weft_time give_up = weft_now() + 10 * WEFT_SEC; /* safety net only */
    while (atomic_load(&running_now) < 2 && weft_now() < give_up)
        sched_yield();
    return atomic_load(&running_now) >= 2 ? 0 : -ETIMEDOUT;
}

static int steal_root(void *arg)
{
    (void)arg;
    weft_scope *s;
    CHECK_EQ(weft_scope_open(&s, NULL), 0);
    CHECK_EQ(weft_spawn(s, meet, NULL), 0);
    CHECK_EQ(weft_spawn(s, meet, NULL), 0);
    CHECK_EQ(weft_scope_close(s), 0);
    CHECK_EQ(weft_runtime_metrics(NULL, &seen, sizeof(seen), per_worker, 2), 0);
    return 0;
}

Test(observe, metrics_count_steals_at_two_workers)
{
    atomic_store(&running_now, 0);
    cr_assert_eq(run_on(2, steal_root, NULL), 0);
    ASSERT_CHECKS();
    cr_assert_eq(seen.workers, 2u);
    cr_assert_geq(seen.total.stolen, 1);
    cr_assert_eq(per_worker[0].stolen + per_worker[1].stolen, seen.total.stolen);
    cr_assert_eq(per_worker[0].spawned + per_worker[1].spawned, 2);
    cr_assert_eq(seen.total.started, 3); /* the root and both */
}

Test(observe, metrics_bad_input)
{
    weft_metrics m;
    cr_assert_eq(weft_runtime_metrics(NULL, &m, sizeof(m), NULL, 0), -EPERM);
    weft_runtime *rt;
    weft_config cfg = {.workers = 1};
    cr_assert_eq(weft_runtime_start(&rt, &cfg), 0);
    cr_assert_eq(weft_runtime_metrics(rt, NULL, sizeof(m), NULL, 0), -EINVAL);
    cr_assert_eq(weft_runtime_metrics(rt, &m, 0, NULL, 0), -EINVAL);
    /* A smaller (older) struct gets its own bytes only. */
    unsigned char small[8];
    memset(small, 0xee, sizeof(small));
    cr_assert_eq(weft_runtime_metrics(rt, (weft_metrics *)small, 4, NULL, 0), 0);
    cr_assert_eq(*(unsigned *)small, 1u);
    cr_assert_eq(small[4], 0xee);
    cr_assert_eq(weft_runtime_shutdown(rt), 0);
    cr_assert_eq(weft_runtime_metrics(rt, &m, sizeof(m), NULL, 0), -ESHUTDOWN);
}

/* ---- thread names ---------------------------------------------------------------------------- */

static char names[4096];

static int read_names(void *arg)
{
    (void)arg;
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -errno;
    size_t used = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], comm[32] = {0};
        snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
        int fd = open(path, O_RDONLY);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, comm, sizeof(comm) - 1);
        close(fd);
        if (n > 0 && used + (size_t)n < sizeof(names)) {
            memcpy(names + used, comm, (size_t)n); /* each ends in a newline */
            used += (size_t)n;
        }
    }
    closedir(d);
    return 0;
}

static int names_root(void *arg)
{
    (void)arg;
    /* Both workers run a task at once first (meet, above): each has named itself by then. */
    atomic_store(&running_now, 0);
    weft_scope *s;
    CHECK_EQ(weft_scope_open(&s, NULL), 0);
    CHECK_EQ(weft_spawn(s, meet, NULL), 0);
    CHECK_EQ(weft_spawn(s, meet, NULL), 0);
    CHECK_EQ(weft_scope_close(s), 0);
    int result = -1;
    CHECK_EQ(weft_blocking(read_names, NULL, &result), 0);
    CHECK_EQ(result, 0);
    return 0;
}

Test(observe, threads_are_named)
{
    weft_config cfg = {.workers = 2};
    cr_assert_eq(weft_run(&cfg, names_root, NULL), 0);
    ASSERT_CHECKS();
    cr_assert_not_null(strstr(names, "weft-w0\n"), "threads:\n%s", names);
    cr_assert_not_null(strstr(names, "weft-w1\n"), "threads:\n%s", names);
    cr_assert_not_null(strstr(names, "weft-b0\n"), "threads:\n%s", names);
    cr_assert_not_null(strstr(names, "weft-watchdog\n"), "threads:\n%s", names);
}

/* ---- reports to a callback ---------------------------------------------------------------- */

static atomic_int reported;
static int reported_kind;
static char reported_line[512];

static void on_report(void *arg, int kind, const char *line)
{
    if (arg != &reported)
        return;
    if (atomic_load(&reported))
        return;
    reported_kind = kind;
    snprintf(reported_line, sizeof(reported_line), "%s", line);
    atomic_store(&reported, 1);
}

/* Holds its worker, never reaching a suspension point, until the watchdog reports it. */
static int hog(void *arg)
{
    (void)arg;
    weft_time give_up = weft_now() + 10 * WEFT_SEC; /* safety net only */
    while (!atomic_load(&reported) && weft_now() < give_up)
        ;
    return atomic_load(&reported) ? 0 : -ETIMEDOUT;
}

static int hog_root(void *arg)
{
    (void)arg;
    weft_scope *s;
    CHECK_EQ(weft_scope_open(&s, NULL), 0);
    weft_spawn_opts o = {.name = "the-hog"};
    CHECK_EQ(weft_spawn_ex(s, hog, NULL, &o), 0);
    CHECK_EQ(weft_scope_close(s), 0);
    return 0;
}

Test(observe, watchdog_report_goes_to_the_callback)
{
    atomic_store(&reported, 0);
    weft_config cfg = {
        .workers = 1, .watchdog_ns = 20 * WEFT_MSEC, .report = on_report, .report_arg = &reported};
    cr_assert_eq(weft_run(&cfg, hog_root, NULL), 0);
    ASSERT_CHECKS();
    cr_assert_eq(reported_kind, WEFT_REPORT_WATCHDOG);
    cr_assert_not_null(strstr(reported_line, "the-hog"), "line: %s", reported_line);
    cr_assert_null(strchr(reported_line, '\n'), "line: %s", reported_line);
}

/* The overflow callback runs in the fault handler: it only write(2)s, to a pipe opened before. */
static int report_fd = -1;

static void on_overflow(void *arg, int kind, const char *line)
{
    (void)arg;
    char head = kind == WEFT_REPORT_OVERFLOW ? 'O' : '?';
    ssize_t r = write(report_fd, &head, 1);
    r = write(report_fd, line, strlen(line));
    (void)r;
}

/* Zero: recurse until the stack runs out; volatile, so that the compiler sees no endless
 * recursion. */
static volatile unsigned long depth_limit;

static __attribute__((noinline)) unsigned long recurse(volatile char *prev, unsigned long depth)
{
    volatile char frame[512];
    frame[0] = (char)(prev[0] + 1);
    if (depth_limit && depth >= depth_limit)
        return frame[0];
    return recurse(frame, depth + 1) + frame[0]; /* not a tail call */
}

static int deep(void *arg)
{
    (void)arg;
    volatile char start = 0;
    return (int)recurse(&start, 0);
}

static int overflow_root(void *arg)
{
    (void)arg;
    weft_scope *s;
    int rc = weft_scope_open(&s, NULL);
    weft_spawn_opts o = {.name = "deep-one", .stack_size = 64 * 1024};
    if (rc == 0)
        rc = weft_spawn_ex(s, deep, NULL, &o);
    weft_yield();
    return rc ? rc : weft_scope_close(s);
}

Test(observe, overflow_report_goes_to_the_callback)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(fds[0]);
        report_fd = fds[1];
        alarm(20); /* a hang ends the child */
        weft_config cfg = {.workers = 1, .report = on_overflow};
        weft_run(&cfg, overflow_root, NULL);
        _exit(20); /* not reached: the overflow aborts */
    }
    close(fds[1]);
    char got[1024] = {0};
    size_t used = 0;
    ssize_t n;
    while (used < sizeof(got) - 1 && (n = read(fds[0], got + used, sizeof(got) - 1 - used)) > 0)
        used += (size_t)n;
    close(fds[0]);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "status %#x, report: %s", status,
              got);
    cr_assert_eq(got[0], 'O', "report: %s", got);
    cr_assert_not_null(strstr(got, "'deep-one' overflowed its stack of 64 KiB"), "report: %s", got);
}

/* ---- trace configuration ---------------------------------------------------------------------
 */

Test(observe, trace_path_that_cannot_be_opened_fails_the_start)
{
    weft_config cfg = {.workers = 1, .trace_path = "/nonexistent-dir/trace.json"};
    cr_assert_eq(weft_run(&cfg, nothing, NULL), -ENOENT);
    weft_runtime *rt;
    cr_assert_eq(weft_runtime_start(&rt, &cfg), -ENOENT);
}
