// SPDX-License-Identifier: MIT
/*
 * A descriptor's first wait (its registration with a runtime's poller, fd.c) against the two
 * things that may happen to the descriptor at the same moment.
 *
 * close: a plain thread calls weft_close on a socket while a task makes its first weft_read of
 * it. The read must end with -EBADF, never wait for its deadline on a file that left the epoll
 * set with its close(2); and the next socket that gets the same number must be watched like any
 * other: a read of it, parked, must be woken by the byte written to it. (A registration taken
 * between weft_close's wake and its close(2) once did both: the reader waited for ever, and the
 * record stayed marked registered, so the next file with the number was never watched.)
 *
 * two runtimes: tasks of two runtimes mark the same socket at once (weft_fd_mark registers it).
 * One runtime gets it, the other's mark is refused (-EINVAL), and the descriptor is in that one
 * runtime's epoll set only: the owner's task, parked on it and woken by a byte, must resume on
 * its own runtime's worker. (Both once put it in their sets, and the other runtime's worker ran
 * the owner's task, whose stack and scopes belong to a runtime it then outlived.)
 *
 * Usage: io_close_register [rounds] [both|close|runtimes]   (default 3000 rounds and both
 * parts, of two runtimes a sixth as many; under TSan 500 rounds of two runtimes)
 * Prints one line per part; exits 0 when every check held, 1 otherwise.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define STRESS_NAME "io_close_register"
#include "../support.h"
#include "../support_task.h"
#include "weft.h"

#ifdef UNDER_TSAN
#define DEFAULT_ROUNDS 500
#else
#define DEFAULT_ROUNDS 3000
#endif
/* A round of two runtimes costs some milliseconds (foreign submissions both ways): fewer of
 * them. Before the fix a run failed within 2 to 40. */
#define RUNTIMES_SHARE 6
/* Far beyond any wait here that works: a wait that reaches it is the failure. */
#define LIMIT (5 * WEFT_SEC)

/* ---- close against a first wait ----------------------------------------------------------- */

typedef struct closing {
    atomic_int fd; /* the descriptor the closer is to close; -1: none */
    atomic_int closed, stop;
    unsigned spin; /* the closer's delay, set per round */
    long read_rc, probe_rc;
    weft__task *_Atomic prober;
    int probe_fd;
} closing;

static void *closer(void *p)
{
    closing *c = p;
    while (!atomic_load(&c->stop)) {
        int fd = atomic_exchange(&c->fd, -1);
        if (fd < 0) {
            sched_yield();
            continue;
        }
        for (volatile unsigned i = 0; i < c->spin; i++) {
        }
        weft_close(fd);
        atomic_store(&c->closed, 1);
    }
    return NULL;
}

static int first_read(void *p)
{
    closing *c = p;
    char b;
    c->read_rc = weft_read(atomic_load(&c->fd), &b, 1);
    return 0;
}

static int probe_read(void *p)
{
    closing *c = p;
    atomic_store(&c->prober, weft__task_self());
    char b;
    c->probe_rc = weft_read(c->probe_fd, &b, 1);
    return 0;
}

/* `fn(arg)` as a task of a scope with the deadline LIMIT, joined. */
static int in_scope(weft_fn fn, void *arg)
{
    weft_scope *s;
    weft_scope_opts o = {.timeout_ns = LIMIT};
    int rc = weft_scope_open(&s, &o);
    if (rc)
        return rc;
    rc = weft_spawn(s, fn, arg);
    int joined = weft_scope_close(s);
    return rc ? rc : joined;
}

typedef struct closing_run {
    closing *c;
    long rounds, done;
} closing_run;

static int closing_root(void *p)
{
    closing_run *run = p;
    closing *c = run->c;
    uint64_t seed = 20261206;
    for (long i = 0; i < run->rounds && atomic_load(&failures) == 0; i++) {
        int sv[2];
        CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0,
              "socketpair");
        c->spin = below(&seed, 4000);
        c->read_rc = 1;
        atomic_store(&c->closed, 0);
        atomic_store(&c->fd, sv[0]); /* the closer goes now, as the read starts */
        CHECK(in_scope(first_read, c) == 0, "the first read's scope");
        while (!atomic_load(&c->closed))
            weft_yield();
        CHECK(c->read_rc == -EBADF, "round %ld: a read that weft_close raced returned %ld", i,
              c->read_rc);
        close(sv[1]);
        /* The number is the lowest free one: the next pair takes it. */
        int pv[2];
        CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pv) == 0,
              "socketpair");
        int reader = pv[0] == sv[0] ? 0 : pv[1] == sv[0] ? 1 : -1;
        if (reader >= 0) {
            c->probe_fd = pv[reader];
            c->probe_rc = 1;
            atomic_store(&c->prober, NULL);
            int peer = pv[!reader];
            weft_scope *s;
            weft_scope_opts o = {.timeout_ns = LIMIT};
            CHECK(weft_scope_open(&s, &o) == 0, "open");
            CHECK(weft_spawn(s, probe_read, c) == 0, "spawn");
            weft_time end = weft_now() + LIMIT;
            while (!support_parked(&c->prober) && weft_now() < end)
                weft_yield();
            CHECK(write(peer, "p", 1) == 1, "write");
            weft_scope_close(s);
            CHECK(c->probe_rc == 1,
                  "round %ld: a read of the next socket with number %d returned %ld (its byte "
                  "was written)",
                  i, sv[0], c->probe_rc);
        }
        weft_close(pv[0]);
        weft_close(pv[1]);
        run->done++;
    }
    return 0;
}

/* ---- two runtimes' first waits -------------------------------------------------------------- */

typedef struct pair_race {
    int x[2];
    atomic_int arrived, gate;
    long rc[2];           /* each runtime's first wait */
    pthread_t worker[2];  /* each runtime's worker */
    pthread_t resumed_on; /* the owner's reader, after its wait */
    long owner_wait;
    weft__task *_Atomic owner_reader;
    int own[2][2]; /* a socket pair registered with each runtime */
} pair_race;

typedef struct side {
    pair_race *r;
    int i;
} side;

/* Also registers a descriptor of the runtime's own, so that its idle worker sleeps in its
 * poller: a set that held the other runtime's descriptor would hand out its readiness. */
static int learn_worker(void *p)
{
    side *s = p;
    s->r->worker[s->i] = pthread_self();
    weft_fd_edges e;
    return weft_fd_mark(s->r->own[s->i][0], &e);
}

static int race_first_mark(void *p)
{
    side *s = p;
    atomic_fetch_add(&s->r->arrived, 1);
    while (!atomic_load(&s->r->gate)) {
    }
    weft_fd_edges e;
    s->r->rc[s->i] = weft_fd_mark(s->r->x[0], &e); /* registers it, or is refused */
    return 0;
}

static int owner_reads(void *p)
{
    side *s = p;
    atomic_store(&s->r->owner_reader, weft__task_self());
    s->r->owner_wait = weft_fd_wait(s->r->x[0], WEFT_READABLE, weft_now() + LIMIT);
    s->r->resumed_on = pthread_self();
    return 0;
}

static int submit_and_wait(weft_runtime *rt, weft_fn fn, void *arg)
{
    weft_handle *h;
    int rc = weft_submit(rt, fn, arg, &h);
    if (rc)
        return rc;
    int status = 0;
    rc = weft_handle_wait(h, weft_now() + 2 * LIMIT, &status);
    weft_handle_release(h);
    return rc ? rc : status;
}

static long two_runtimes(long rounds)
{
    weft_runtime *rt[2];
    weft_config cfg = {.workers = 1};
    pair_race r;
    side sides[2] = {{&r, 0}, {&r, 1}};
    for (int i = 0; i < 2; i++) {
        CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, r.own[i]) == 0,
              "socketpair");
        CHECK(weft_runtime_start(&rt[i], &cfg) == 0, "start");
        CHECK(submit_and_wait(rt[i], learn_worker, &sides[i]) == 0, "learn the worker");
    }
    long done = 0;
    for (long n = 0; n < rounds && atomic_load(&failures) == 0; n++) {
        CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, r.x) == 0,
              "socketpair");
        atomic_store(&r.arrived, 0);
        atomic_store(&r.gate, 0);
        weft_handle *h[2];
        for (int i = 0; i < 2; i++)
            CHECK(weft_submit(rt[i], race_first_mark, &sides[i], &h[i]) == 0, "submit");
        while (atomic_load(&r.arrived) < 2)
            sched_yield();
        atomic_store(&r.gate, 1);
        for (int i = 0; i < 2; i++) {
            int st;
            CHECK(weft_handle_wait(h[i], weft_now() + 2 * LIMIT, &st) == 0, "wait");
            weft_handle_release(h[i]);
        }
        /* One owner; the other refused. */
        int owner = r.rc[0] == 0 ? 0 : 1;
        CHECK(r.rc[owner] == 0 && r.rc[!owner] == -EINVAL,
              "round %ld: the two first marks returned %ld and %ld", n, r.rc[0], r.rc[1]);
        if (atomic_load(&failures))
            break;
        /* The owner's task, woken by a byte, resumes on the owner's worker. */
        atomic_store(&r.owner_reader, NULL);
        r.owner_wait = 0;
        weft_handle *hr;
        CHECK(weft_submit(rt[owner], owner_reads, &sides[owner], &hr) == 0, "submit");
        weft_time end = weft_now() + LIMIT;
        while (!support_parked(&r.owner_reader) && weft_now() < end)
            sched_yield();
        CHECK(write(r.x[1], "w", 1) == 1, "write");
        int st;
        CHECK(weft_handle_wait(hr, weft_now() + 2 * LIMIT, &st) == 0, "wait");
        weft_handle_release(hr);
        CHECK(r.owner_wait == WEFT_READABLE, "round %ld: the owner's wait returned %ld", n,
              r.owner_wait);
        CHECK(pthread_equal(r.resumed_on, r.worker[owner]),
              "round %ld: the owner's task resumed on the other runtime's worker", n);
        weft_close(r.x[0]);
        close(r.x[1]);
        done++;
    }
    for (int i = 0; i < 2; i++) {
        CHECK(weft_runtime_shutdown(rt[i]) == 0, "shutdown");
        weft_close(r.own[i][0]);
        close(r.own[i][1]);
    }
    printf("io_close_register: two runtimes: %ld rounds\n", done);
    return done;
}

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? atol(argv[1]) : DEFAULT_ROUNDS;
    /* The close part races close(2) against read(2) on one descriptor on purpose, which
     * ThreadSanitizer reports as the race it is: its builds run the other part only. */
#ifdef UNDER_TSAN
    const char *part = argc > 2 ? argv[2] : "runtimes";
#else
    const char *part = argc > 2 ? argv[2] : "both";
#endif
    int close_part = strcmp(part, "runtimes") != 0, runtimes_part = strcmp(part, "close") != 0;
    if (rounds <= 0 || (!close_part && !runtimes_part) ||
        (strcmp(part, "both") && strcmp(part, "close") && strcmp(part, "runtimes"))) {
        fprintf(stderr, "usage: io_close_register [rounds > 0] [both|close|runtimes]\n");
        return 1;
    }
    if (!close_part) {
        two_runtimes(rounds);
        printf("io_close_register: %s\n", atomic_load(&failures) ? "FAILED" : "ok");
        return atomic_load(&failures) ? 1 : 0;
    }
    closing c = {.fd = -1};
    pthread_t th;
    if (pthread_create(&th, NULL, closer, &c) != 0) {
        fprintf(stderr, "io_close_register: no thread for the closer\n");
        return 1;
    }
    closing_run run = {.c = &c, .rounds = rounds};
    weft_config cfg = {.workers = 2};
    int rc = weft_run(&cfg, closing_root, &run);
    atomic_store(&c.stop, 1);
    pthread_join(th, NULL);
    CHECK(rc == 0, "weft_run returned %d", rc);
    printf("io_close_register: close: %ld rounds\n", run.done);
    if (atomic_load(&failures) == 0 && runtimes_part)
        two_runtimes(rounds / RUNTIMES_SHARE + 1);
    int failed = atomic_load(&failures);
    printf("io_close_register: %s\n", failed ? "FAILED" : "ok");
    return failed ? 1 : 0;
}
