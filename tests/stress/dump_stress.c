// SPDX-License-Identifier: MIT
/*
 * Dumps of a runtime whose tasks spawn, park, wake and end at a high rate on every worker, and of
 * a runtime shutting down (weft_dump reads records the workers write meanwhile: lib/dump.c).
 *
 * Part 1: on four workers, a storm of tasks (nested scopes, some of them limited, a shared
 * semaphore, a channel passed between pairs, yields, children run inline by joins, cancels of
 * whole subtrees) while two plain threads and a task dump it without pause, as JSON and as text,
 * into memory files. Every dump returns a count or nothing else; a JSON dump holds exactly that
 * many tasks and is whole (it ends its arrays and its object).
 * Part 2: a plain thread dumps while another shuts the runtime down: each dump returns a count
 * or -ESHUTDOWN, and every dump after the shutdown returned is -ESHUTDOWN.
 * Under ASan nothing the dump reads may be freed memory; under TSan the library's own writes and
 * reads must still pair up (the dump's racy reads are kept out of its sight on purpose).
 *
 * Usage: dump_stress [rounds]
 */
#define STRESS_NAME "dump_stress"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../support.h"
#include "weft.h"

#ifdef UNDER_TSAN
#define DEFAULT_ROUNDS 30
#define WIDTH 6
#else
#define DEFAULT_ROUNDS 2000
#define WIDTH 16
#endif

static weft_runtime *rt;
static atomic_int stop_dumping;
static atomic_long dumps_done;
static weft_sem *sem;

/* Dumps into a memory file and checks what it holds: returns weft_dump's result. */
static int dump_and_check(weft_runtime *r, int flags)
{
    int fd = memfd_create("dump", MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    int n = weft_dump(r, fd, flags);
    CHECK(n >= 0 || n == -ESHUTDOWN, "weft_dump returned %d", n);
    if (n > 0 && (flags & WEFT_DUMP_JSON)) {
        off_t len = lseek(fd, 0, SEEK_END);
        char *p = len > 0 ? mmap(NULL, (size_t)len, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
        CHECK(p != MAP_FAILED, "the dump's %lld bytes", (long long)len);
        if (p != MAP_FAILED) {
            int tasks = 0;
            for (char *q = p; (q = memmem(q, (size_t)(p + len - q), "\n{\"id\":", 7)); q += 7)
                tasks++;
            CHECK(tasks == n, "%d tasks in a dump that says %d", tasks, n);
            CHECK(len > 3 && !memcmp(p + len - 3, "]}\n", 3), "a JSON dump ends whole");
            munmap(p, (size_t)len);
        }
    }
    close(fd);
    atomic_fetch_add(&dumps_done, 1);
    return n;
}

static void *dumper(void *arg)
{
    long i = (long)(intptr_t)arg;
    while (!atomic_load(&stop_dumping))
        dump_and_check(rt, (i++ & 1) ? WEFT_DUMP_JSON : WEFT_DUMP_TEXT);
    return NULL;
}

typedef struct pair {
    weft_chan *ch;
} pair;

static int sender(void *arg)
{
    pair *p = arg;
    int v = 1;
    return weft_chan_send(p->ch, &v) == 0 ? 0 : 0;
}

static int receiver(void *arg)
{
    pair *p = arg;
    int v;
    int rc = weft_chan_recv(p->ch, &v);
    CHECK(rc == 0 || rc == -ECANCELED, "recv %d", rc);
    return 0;
}

static int leaf(void *arg)
{
    uintptr_t kind = (uintptr_t)arg;
    switch (kind % 4) {
    case 0:
        weft_yield();
        break;
    case 1:
        if (weft_sem_acquire(sem) == 0)
            weft_sem_release(sem);
        break;
    case 2:
        weft_sleep_for(1000); /* a timer, a park and a wake */
        break;
    default:
        break;
    }
    return 0;
}

static int level(void *arg)
{
    uintptr_t depth = (uintptr_t)arg;
    weft_scope *s;
    if (weft_scope_open(&s, &(weft_scope_opts){.name = "lvl",
                                               .max_concurrency = depth == 1 ? 3 : 0,
                                               .policy = WEFT_COLLECT}) != 0)
        return 0;
    pair p;
    int have_chan = weft_chan_create(&p.ch, sizeof(int), 0) == 0;
    if (have_chan) {
        weft_spawn_ex(s, receiver, &p, &(weft_spawn_opts){.name = "receiver"});
        weft_spawn_ex(s, sender, &p, &(weft_spawn_opts){.name = "sender"});
    }
    for (uintptr_t i = 0; i < WIDTH; i++)
        weft_spawn(s, leaf, (void *)i);
    if (depth > 0)
        weft_spawn(s, level, (void *)(depth - 1));
    if (depth == 2 && (uintptr_t)weft_task_id() % 3 == 0)
        weft_scope_cancel(s);
    weft_scope_join(s);
    weft_scope_release(s);
    if (have_chan)
        weft_chan_destroy(p.ch);
    return 0;
}

static int storm(void *arg)
{
    int rounds = *(int *)arg;
    weft_scope *s;
    if (weft_scope_open(&s, NULL) != 0)
        return 1;
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < 4; i++)
            weft_spawn_ex(s, level, (void *)(uintptr_t)3, &(weft_spawn_opts){.name = "storm"});
        if (r % 8 == 0) /* and a dump from inside, of the caller's own runtime */
            dump_and_check(NULL, r % 16 ? WEFT_DUMP_JSON : WEFT_DUMP_TEXT);
        weft_yield();
    }
    weft_scope_join(s);
    weft_scope_release(s);
    return 0;
}

static int parked(void *arg)
{
    return weft_event_wait(arg) == -ECANCELED ? 0 : 1;
}

int main(int argc, char **argv)
{
    alarm(600);
    int rounds = argc > 1 ? atoi(argv[1]) : DEFAULT_ROUNDS;

    /* Part 1. */
    CHECK(weft_sem_create(&sem, 2) == 0, "sem");
    CHECK(weft_runtime_start(&rt, &(weft_config){.workers = 4, .watchdog_ns = -1}) == 0, "start");
    pthread_t th[2];
    for (long i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, dumper, (void *)(intptr_t)i);
    weft_handle *h[3];
    for (int i = 0; i < 3; i++)
        CHECK(weft_submit(rt, storm, &rounds, &h[i]) == 0, "submit");
    for (int i = 0; i < 3; i++) {
        int st = -1;
        CHECK(weft_handle_wait(h[i], WEFT_NEVER, &st) == 0 && st == 0, "storm %d: %d", i, st);
        weft_handle_release(h[i]);
    }
    atomic_store(&stop_dumping, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    long part1 = atomic_load(&dumps_done);

    /* Part 2: dumps racing the shutdown of a runtime with parked tasks. */
    weft_event *ev;
    CHECK(weft_event_create(&ev) == 0, "event");
    for (int k = 0; k < 4; k++) {
        atomic_store(&stop_dumping, 0);
        weft_handle *ph[8];
        for (int i = 0; i < 8; i++)
            CHECK(weft_submit(rt, parked, ev, &ph[i]) == 0, "submit parked");
        pthread_create(&th[0], NULL, dumper, (void *)(intptr_t)k);
        long before = atomic_load(&dumps_done);
        while (atomic_load(&dumps_done) < before + 2) /* at least two dumps of it running */
            sched_yield();
        CHECK(weft_runtime_shutdown(rt) == 0, "shutdown");
        CHECK(weft_dump(rt, STDOUT_FILENO, WEFT_DUMP_JSON) == -ESHUTDOWN, "dump after shutdown");
        atomic_store(&stop_dumping, 1);
        pthread_join(th[0], NULL);
        for (int i = 0; i < 8; i++) {
            int st = 0;
            CHECK(weft_handle_wait(ph[i], WEFT_NEVER, &st) == 0 && st == 0,
                  "parked task's status %d", st);
            weft_handle_release(ph[i]);
        }
        if (k < 3)
            CHECK(weft_runtime_start(&rt, &(weft_config){.workers = 1 + k}) == 0, "start");
    }
    weft_event_destroy(ev);
    weft_sem_destroy(sem);
    printf("dump_stress: %d rounds, %ld dumps during the storms, %ld in all: %s\n", rounds, part1,
           atomic_load(&dumps_done), atomic_load(&failures) ? "FAILED" : "ok");
    return atomic_load(&failures) ? 1 : 0;
}
