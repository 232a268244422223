// SPDX-License-Identifier: MIT
/*
 * weft_pg WORKLOAD THREADS — the PostgreSQL workloads of benchmarks/README.md on weft
 * (pg-add, pg-sleep, pg-cancel), against the server the PG* variables name (tools/bench
 * starts one). Prints the contract line; exits non-zero when the check fails.
 *
 * Every query is a task of one scope that takes a connection from a pg_weft pool (guarded by a
 * weft semaphore of as many tokens as connections), runs the query and gives the connection
 * back. The scope runs as many tasks at once as there are connections (max_concurrency): the
 * others wait unstarted, holding no stack, as a pool's waiters would park on its semaphore.
 * The connections are made before the interval.
 */
#include "pg_weft.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

typedef struct {
    const char *name;
    const char *sql;
    int queries;
    int conns;
    int param; /* $1 is the query's number, and the answer must be that plus one */
} workload;

static const workload workloads[] = {
    {"pg-add", "SELECT $1::int + 1", 20000, 16, 1},
    {"pg-sleep", "SELECT pg_sleep(0.005)", 2000, 64, 0},
    /* 1,000 queries in flight at once, then cancelled (see wl_cancel). */
    {"pg-cancel", "SELECT pg_sleep(10)", 1000, 1000, 0},
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

static atomic_int failed;

static void fail(const char *what, int rc, const char *msg)
{
    if (atomic_exchange(&failed, 1) == 0)
        fprintf(stderr, "weft_pg: %s: %s (%d) %s\n", what, strerror(rc < 0 ? -rc : rc), rc,
                msg ? msg : "");
}

typedef struct {
    const workload *wl;
    pgw_pool *pool;
    atomic_int done;    /* queries that answered correctly */
    atomic_int started; /* queries sent (pg-cancel) */
    atomic_int next;
    double seconds, cpu, gone_s, cancel_at;
} run;

/* ---- one query per task ---- */

static int query(void *arg)
{
    run *r = arg;
    int i = atomic_fetch_add(&r->next, 1);
    char num[16];
    snprintf(num, sizeof num, "%d", i);
    const char *p[] = {num};
    pgw_conn *c;
    int rc = pgw_pool_acquire(r->pool, &c);
    if (rc) {
        fail("acquire", rc, pgw_last_connect_error());
        return rc;
    }
    atomic_fetch_add(&r->started, 1);
    PGresult *res;
    rc = pgw_query(c, r->wl->sql, r->wl->param, p, &res);
    if (rc == 0) {
        if (!r->wl->param || atol(PQgetvalue(res, 0, 0)) == (long)i + 1)
            atomic_fetch_add(&r->done, 1);
        PQclear(res);
    } else if (rc != -ECANCELED) {
        fail("query", rc, pgw_conn_error(c));
    }
    pgw_pool_release(r->pool, c);
    return rc;
}

static int spawn_queries(run *r, weft_scope **out)
{
    atomic_store(&r->next, 0);
    /* As many running as there are connections: the others wait unstarted, without a stack,
     * rather than parked on the pool's semaphore (which they would find taken). */
    weft_scope_opts o = {.policy = WEFT_COLLECT, .max_concurrency = (unsigned)r->wl->conns};
    int rc = weft_scope_open(out, &o);
    for (int i = 0; rc == 0 && i < r->wl->queries; i++)
        rc = weft_spawn(*out, query, r);
    return rc;
}

static int wl_queries(run *r)
{
    double t0 = now_s(), c0 = cpu_s();
    weft_scope *s;
    int rc = spawn_queries(r, &s);
    int j = weft_scope_close(s);
    r->seconds = now_s() - t0;
    r->cpu = cpu_s() - c0;
    return rc ? rc : j;
}

/* ---- pg-cancel ---- */

static long running(pgw_conn *mon, const char *sql)
{
    const char *p[] = {sql};
    PGresult *res;
    int rc = pgw_query(mon,
                       "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND "
                       "query = $1",
                       1, p, &res);
    if (rc) {
        fail("pg_stat_activity", rc, pgw_conn_error(mon));
        return -1;
    }
    long n = atol(PQgetvalue(res, 0, 0));
    PQclear(res);
    return n;
}

static int again(void *arg)
{
    run *r = arg;
    pgw_conn *c;
    int rc = pgw_pool_acquire(r->pool, &c);
    if (rc)
        return rc;
    PGresult *res;
    rc = pgw_query(c, "SELECT 1", 0, NULL, &res);
    if (rc == 0) {
        atomic_fetch_add(&r->done, 1);
        PQclear(res);
    }
    pgw_pool_release(r->pool, c);
    return rc;
}

/* The watcher of pg-cancel: a task outside the sleepers' scope (a cancel reaches the scope's
 * owner too, at its own waits), on a connection of its own. */
typedef struct {
    run *r;
    weft_scope *sleepers;
    pgw_conn *mon;
    long seen; /* sleeps the server ran at once before the cancel */
} watch;

static int watcher(void *arg)
{
    watch *w = arg;
    run *r = w->r;
    double limit = now_s() + 60;
    long n = 0;
    while ((n = running(w->mon, r->wl->sql)) >= 0 && n < r->wl->queries && now_s() < limit)
        weft_yield();
    w->seen = n;
    double t0 = r->cancel_at = now_s();
    weft_scope_cancel(w->sleepers);
    while (running(w->mon, r->wl->sql) > 0 && now_s() < limit)
        weft_yield();
    r->gone_s = now_s() - t0;
    return 0;
}

/*
 * 1,000 tasks each run pg_sleep(10) on a connection of their own. Once the server shows all of
 * them running, their scope is cancelled: `seconds` runs from the cancel until a connection of
 * its own sees none of them in pg_stat_activity. Then every connection must answer a query, and
 * still be the pool's (drained, not replaced): check = those that did.
 */
static int wl_cancel(run *r)
{
    watch w = {.r = r};
    int rc = pgw_connect("", &w.mon);
    if (rc) {
        fail("connect", rc, pgw_last_connect_error());
        return rc;
    }
    weft_scope *outer;
    rc = weft_scope_open(&outer, NULL);
    if (rc)
        return rc;
    rc = spawn_queries(r, &w.sleepers);
    if (rc == 0)
        rc = weft_spawn(outer, watcher, &w);
    int j = weft_scope_close(w.sleepers);
    if (j != -ECANCELED)
        fail("join of the sleepers", j, "");
    r->seconds = now_s() - r->cancel_at;
    j = weft_scope_close(outer);
    if (rc || j)
        fail("watcher", rc ? rc : j, "");
    if (w.seen != r->wl->queries)
        fail("not all ran at once", (int)w.seen, "");
    if (pgw_pool_idle(r->pool) != (unsigned)r->wl->conns)
        fail("connections lost", (int)pgw_pool_idle(r->pool), "");
    atomic_store(&r->done, 0);
    weft_scope *s;
    rc = weft_scope_open(&s, &(weft_scope_opts){.policy = WEFT_COLLECT});
    for (int i = 0; rc == 0 && i < r->wl->conns; i++)
        rc = weft_spawn(s, again, r);
    j = weft_scope_close(s);
    if (pgw_pool_idle(r->pool) != (unsigned)r->wl->conns)
        atomic_store(&r->done, 0); /* a connection was replaced: it had not been drained */
    pgw_conn_close(w.mon);
    return rc ? rc : j;
}

static int root(void *arg)
{
    run *r = arg;
    int rc = pgw_pool_create(&r->pool, "", (unsigned)r->wl->conns);
    if (rc)
        return rc;
    rc = pgw_pool_fill(r->pool);
    if (rc)
        fail("connect", rc, "");
    if (rc == 0)
        rc = strcmp(r->wl->name, "pg-cancel") == 0 ? wl_cancel(r) : wl_queries(r);
    if (pgw_pool_destroy(r->pool) != 0)
        fail("pool destroy", -EBUSY, "");
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: weft_pg pg-add|pg-sleep|pg-cancel THREADS\n");
        return 2;
    }
    const workload *wl = NULL;
    for (size_t i = 0; i < sizeof workloads / sizeof workloads[0]; i++)
        if (strcmp(argv[1], workloads[i].name) == 0)
            wl = &workloads[i];
    int threads = atoi(argv[2]);
    if (!wl || threads < 1) {
        fprintf(stderr, "weft_pg: unknown workload or thread count\n");
        return 2;
    }
    if (!getenv("PGPORT") && !getenv("PGHOST")) {
        fprintf(stderr, "weft_pg: PGHOST/PGPORT name no server (tools/bench starts one)\n");
        return 2;
    }
    /* 1,000 connections and their cancel requests need more than the usual 1,024. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    run r = {.wl = wl};
    weft_config cfg = {.workers = (unsigned)threads};
    int rc = weft_run(&cfg, root, &r);
    if (rc && !(strcmp(wl->name, "pg-cancel") == 0 && rc == -ECANCELED))
        fail("run", rc, "");
    long check = atomic_load(&r.done);
    if (strcmp(wl->name, "pg-cancel") == 0)
        printf("%s threads=%d seconds=%.6f check=%ld conns=%d join_s=%.6f\n", wl->name, threads,
               r.gone_s, check, wl->conns, r.seconds);
    else
        printf("%s threads=%d seconds=%.6f check=%ld conns=%d client_cpu_us_per_query=%.3f\n",
               wl->name, threads, r.seconds, check, wl->conns, r.cpu * 1e6 / wl->queries);
    fflush(stdout);
    return atomic_load(&failed) || check != wl->queries ? 1 : 0;
}
