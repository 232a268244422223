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
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
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

/* ---- a report callback that shuts its own runtime down --------------------------------------- */

typedef struct self_stop {
    weft_runtime *rt;
    atomic_int reported;
    int shutdown_rc;
} self_stop;

static void stop_from_report(void *arg, int kind, const char *line)
{
    (void)kind, (void)line;
    self_stop *ss = arg;
    if (atomic_load(&ss->reported))
        return;
    ss->shutdown_rc = weft_runtime_shutdown(ss->rt); /* before the hog is let go: it still runs */
    atomic_store(&ss->reported, 1);
}

static int hog_until_reported(void *arg)
{
    self_stop *ss = arg;
    weft_time give_up = weft_now() + 10 * WEFT_SEC; /* safety net only */
    while (!atomic_load(&ss->reported) && weft_now() < give_up)
        ;
    return atomic_load(&ss->reported) ? 0 : -ETIMEDOUT;
}

/* The callback runs on the watchdog's thread, which the shutdown would join and whose reads of
 * the runtime it would outlive (freed memory: ASan caught it in 19 of 20 runs). */
Test(observe, a_report_callback_may_not_shut_its_own_runtime_down)
{
    self_stop ss;
    memset(&ss, 0, sizeof(ss));
    weft_config cfg = {
        .workers = 2, .watchdog_ns = 20 * WEFT_MSEC, .report = stop_from_report, .report_arg = &ss};
    cr_assert_eq(weft_runtime_start(&ss.rt, &cfg), 0);
    weft_handle *h;
    cr_assert_eq(weft_submit(ss.rt, hog_until_reported, &ss, &h), 0);
    int status = -1;
    cr_assert_eq(weft_handle_wait(h, WEFT_NEVER, &status), 0);
    cr_assert_eq(status, 0, "no report came");
    cr_assert_eq(ss.shutdown_rc, -EDEADLK);
    weft_handle_release(h);
    cr_assert_eq(weft_runtime_shutdown(ss.rt), 0);
}

/* ---- hogs that take turns are each reported once -------------------------------------------- */

#define TURN_HOGS 3
#define TURN_ROUNDS 4

static atomic_int turn_reports[TURN_HOGS];

static void count_report(void *arg, int kind, const char *line)
{
    (void)arg;
    if (kind != WEFT_REPORT_WATCHDOG)
        return;
    for (int i = 0; i < TURN_HOGS; i++) {
        char name[32];
        snprintf(name, sizeof(name), "'turn-hog-%d'", i);
        if (strstr(line, name))
            atomic_fetch_add(&turn_reports[i], 1);
    }
}

static weft_time thread_cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (weft_time)ts.tv_sec * WEFT_SEC + ts.tv_nsec;
}

/* Rounds of holding the worker for three times the watchdog's limit of CPU time, each followed by
 * a yield that lets the next hog run: the worker's task changes between reports. */
static int turn_hog(void *arg)
{
    (void)arg;
    for (int r = 0; r < TURN_ROUNDS; r++) {
        weft_time until = thread_cpu_now() + 60 * WEFT_MSEC;
        while (thread_cpu_now() < until)
            ;
        weft_yield();
    }
    return 0;
}

static int turn_root(void *arg)
{
    (void)arg;
    weft_scope *s;
    CHECK_EQ(weft_scope_open(&s, NULL), 0);
    for (int i = 0; i < TURN_HOGS; i++) {
        char name[32];
        snprintf(name, sizeof(name), "turn-hog-%d", i);
        weft_spawn_opts o = {.name = name};
        CHECK_EQ(weft_spawn_ex(s, turn_hog, NULL, &o), 0);
    }
    CHECK_EQ(weft_scope_close(s), 0);
    return 0;
}

Test(observe, hogs_that_take_turns_are_each_reported_once)
{
    for (int i = 0; i < TURN_HOGS; i++)
        atomic_store(&turn_reports[i], 0);
    weft_config cfg = {.workers = 1, .watchdog_ns = 20 * WEFT_MSEC, .report = count_report};
    cr_assert_eq(weft_run(&cfg, turn_root, NULL), 0);
    ASSERT_CHECKS();
    int total = 0;
    for (int i = 0; i < TURN_HOGS; i++) {
        int n = atomic_load(&turn_reports[i]);
        cr_expect_leq(n, 1, "turn-hog-%d reported %d times", i, n);
        total += n;
    }
    cr_assert_gt(total, 0, "no hog was reported");
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

/* A FIFO that no process reads: refused at once (a blocking open would wait for a reader). */
Test(observe, a_trace_fifo_that_no_one_reads_fails_the_start, .timeout = 30)
{
    char dir[] = "/tmp/weft-fifo-XXXXXX", path[64];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/trace", dir);
    cr_assert_eq(mkfifo(path, 0600), 0);
    weft_config cfg = {.workers = 1, .trace_path = path};
    int rc = weft_run(&cfg, nothing, NULL);
    unlink(path);
    rmdir(dir);
    cr_assert_eq(rc, -ENXIO, "weft_run: %d", rc);
}

/* A trace whose writes fail (a full disk: /dev/full) is cut short; the program runs on, and
 * the end of the runtime says so once, through the report callback. */
static char trace_report[512];
static int trace_reports, trace_report_kind;

static void on_trace_report(void *arg, int kind, const char *line)
{
    (void)arg;
    trace_reports++;
    trace_report_kind = kind;
    snprintf(trace_report, sizeof(trace_report), "%s", line);
}

static int spawn_some(void *arg)
{
    (void)arg;
    weft_scope *s;
    int rc = weft_scope_open(&s, NULL);
    for (int i = 0; rc == 0 && i < 1000; i++)
        rc = weft_spawn(s, nothing, NULL);
    int jrc = weft_scope_close(s);
    return rc ? rc : jrc;
}

/* A trace FIFO whose reader leaves during the run: the runtime's end writes the rest on the
 * thread that called weft_run, where SIGPIPE is not blocked. The write fails (-EPIPE) and is
 * reported; the process is not killed. */
static int fifo_reader = -1;

static int close_reader_then_spawn(void *arg)
{
    close(fifo_reader); /* the reader is gone: what the trace still has to write has no reader */
    return spawn_some(arg);
}

Test(observe, a_trace_fifo_whose_reader_left_is_reported, .timeout = 30)
{
    char dir[] = "/tmp/weft-fifo-XXXXXX", path[64];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/trace", dir);
    cr_assert_eq(mkfifo(path, 0600), 0);
    fifo_reader = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    cr_assert(fifo_reader >= 0);
    trace_reports = 0;
    weft_config cfg = {.workers = 2, .trace_path = path, .report = on_trace_report};
    int rc = weft_run(&cfg, close_reader_then_spawn, NULL);
    unlink(path);
    rmdir(dir);
    cr_assert_eq(rc, 0, "weft_run: %d", rc);
    cr_assert_eq(trace_reports, 1, "%d reports", trace_reports);
    cr_assert_not_null(strstr(trace_report, strerror(EPIPE)), "report: %s", trace_report);
}

Test(observe, a_trace_that_cannot_be_written_is_reported)
{
    trace_reports = 0;
    weft_config cfg = {.workers = 2, .trace_path = "/dev/full", .report = on_trace_report};
    cr_assert_eq(weft_run(&cfg, spawn_some, NULL), 0);
    cr_assert_eq(trace_reports, 1, "%d reports", trace_reports);
    cr_assert_eq(trace_report_kind, WEFT_REPORT_TRACE);
    cr_assert_not_null(strstr(trace_report, "/dev/full"), "report: %s", trace_report);
    cr_assert_not_null(strstr(trace_report, strerror(ENOSPC)), "report: %s", trace_report);
}
