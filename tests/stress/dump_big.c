// SPDX-License-Identifier: MIT
/*
 * What a dump of a large tree costs, and whom it holds up: 100,000 parked tasks (fewer under the
 * sanitizers), dumped from a plain thread as JSON and as text into /dev/null, while a ticker task
 * on each worker yields in a loop and records the longest gap between two of its turns. The same
 * gaps are recorded over a window as long as the dumps took, without a dump, for comparison.
 *
 * The dumps are timed twice: with every task parked (the tickers wait for an event), and with
 * the tickers running. Checks: every dump writes every parked task (at least). Prints the
 * figures.
 *
 * Usage: dump_big [tasks [workers [rounds]]]
 */
#define STRESS_NAME "dump_big"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "../support.h"
#include "weft.h"

#if defined(UNDER_TSAN)
#define DEFAULT_TASKS 2000
#elif defined(__SANITIZE_ADDRESS__)
#define DEFAULT_TASKS 20000
#else
#define DEFAULT_TASKS 100000
#endif

static weft_event *ev, *go;
static atomic_int arrived, tickers_started, stop_ticking;
static _Atomic long long max_gap; /* the longest gap of the window being measured */
/* The same in CPU time of the worker's thread: what the worker did between two turns, without
 * the time the system gave its CPU to another thread (on a loaded machine, most of a wall-clock
 * gap). A worker held up by a lock would spin or yield here. */
static _Atomic long long max_cpu_gap;
static int ntasks, nworkers;

static int parked(void *arg)
{
    (void)arg;
    atomic_fetch_add(&arrived, 1);
    return weft_event_wait(ev) == 0 ? 0 : 1;
}

static weft_time thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (weft_time)ts.tv_sec * WEFT_SEC + ts.tv_nsec;
}

static void raise_to(_Atomic long long *high, long long v)
{
    long long m = atomic_load(high);
    while (v > m && !atomic_compare_exchange_weak(high, &m, v)) {
    }
}

static int ticker(void *arg)
{
    (void)arg;
    atomic_fetch_add(&tickers_started, 1);
    if (weft_event_wait(go) != 0)
        return 1;
    weft_time last = weft_now(), last_cpu = thread_cpu();
    while (!atomic_load(&stop_ticking)) {
        weft_yield();
        weft_time now = weft_now(), cpu = thread_cpu();
        raise_to(&max_gap, (long long)(now - last));
        /* Only while on the same thread: a move to another worker reads another clock. */
        if (cpu >= last_cpu)
            raise_to(&max_cpu_gap, (long long)(cpu - last_cpu));
        last = now;
        last_cpu = cpu;
    }
    return 0;
}

static int root(void *arg)
{
    (void)arg;
    weft_scope *s;
    if (weft_scope_open(&s, &(weft_scope_opts){.name = "parked"}) != 0)
        return 1;
    for (int i = 0; i < nworkers; i++)
        weft_spawn_ex(s, ticker, NULL, &(weft_spawn_opts){.name = "ticker"});
    for (int i = 0; i < ntasks; i++)
        if (weft_spawn(s, parked, NULL) != 0)
            return 1;
    weft_scope_join(s);
    weft_scope_release(s);
    return 0;
}

/* One dump, JSON (f = 0) or text: its time, and the best so far in *best. */
static weft_time timed_dump(weft_runtime *rt, int fd, int f, weft_time *best)
{
    weft_time t0 = weft_now();
    int n = weft_dump(rt, fd, f ? WEFT_DUMP_TEXT : WEFT_DUMP_JSON);
    weft_time t = weft_now() - t0;
    CHECK(n >= ntasks, "a dump of %d tasks wrote %d", ntasks, n);
    if (t < *best)
        *best = t;
    return t;
}

static double ms(weft_time ns)
{
    return (double)ns / 1e6;
}

int main(int argc, char **argv)
{
    alarm(600);
    ntasks = argc > 1 ? atoi(argv[1]) : DEFAULT_TASKS;
    nworkers = argc > 2 ? atoi(argv[2]) : 2;
    int rounds = argc > 3 ? atoi(argv[3]) : 5;
    weft_runtime *rt;
    CHECK(weft_event_create(&ev) == 0 && weft_event_create(&go) == 0, "events");
    CHECK(weft_runtime_start(&rt, &(weft_config){.workers = (unsigned)nworkers}) == 0, "start");
    weft_handle *h;
    CHECK(weft_submit(rt, root, NULL, &h) == 0, "submit");
    spin_until(&arrived, ntasks);
    spin_until(&tickers_started, nworkers);
    int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);

    /* Alone: every task parked, the tickers too. */
    weft_time alone[2] = {WEFT_NEVER, WEFT_NEVER}, busy[2] = {WEFT_NEVER, WEFT_NEVER};
    for (int r = 0; r < rounds; r++)
        for (int f = 0; f < 2; f++)
            timed_dump(rt, devnull, f, &alone[f]);
    /* With a ticker running on each worker. */
    weft_event_set(go);
    weft_time total = 0;
    atomic_store(&max_gap, 0);
    atomic_store(&max_cpu_gap, 0);
    for (int r = 0; r < rounds; r++)
        for (int f = 0; f < 2; f++)
            total += timed_dump(rt, devnull, f, &busy[f]);
    long long during = atomic_load(&max_gap), during_cpu = atomic_load(&max_cpu_gap);
    /* The same length of time without a dump: a measuring window, not a wait for an event. */
    atomic_store(&max_gap, 0);
    atomic_store(&max_cpu_gap, 0);
    struct timespec quiet = {(time_t)(total / WEFT_SEC), (long)(total % WEFT_SEC)};
    nanosleep(&quiet, NULL);
    long long without = atomic_load(&max_gap), without_cpu = atomic_load(&max_cpu_gap);

    atomic_store(&stop_ticking, 1);
    weft_event_set(ev);
    int st = -1;
    CHECK(weft_handle_wait(h, WEFT_NEVER, &st) == 0 && st == 0, "root: %d", st);
    weft_handle_release(h);
    CHECK(weft_runtime_shutdown(rt) == 0, "shutdown");
    weft_event_destroy(ev);
    weft_event_destroy(go);
    close(devnull);
    printf("dump_big: %d parked tasks, %d workers; best of %d: json %.1f ms, text %.1f ms "
           "(with a yielding task on each worker: json %.1f ms, text %.1f ms); longest gap "
           "between two turns of those tasks: %.2f ms during the dumps, %.2f ms without; in the "
           "worker's CPU time: %.3f ms during, %.3f ms without\n",
           ntasks, nworkers, rounds, ms(alone[0]), ms(alone[1]), ms(busy[0]), ms(busy[1]),
           ms(during), ms(without), ms(during_cpu), ms(without_cpu));
    return atomic_load(&failures) ? 1 : 0;
}
