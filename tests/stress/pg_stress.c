// SPDX-License-Identifier: MIT
/*
 * pg_weft under stress, against a real server (CTest runs it under tools/pgcluster): rounds of
 * tasks sharing a small pool, each running quick and sleeping queries, while their scope is
 * cancelled or its deadline passes at a random moment, so that cancels land before a query is
 * sent, while it runs, as its result arrives and while a batch of cancels is going out.
 *
 * Checked: every query answers right or ends with the scope's code (nothing else: no lost
 * connection, no error of the server but the cancel's); at most POOL connections are out at
 * once; after each round every connection is back in the pool, idle, and the server runs none
 * of the round's queries (pg_stat_activity); at the end every pooled connection answers and the
 * pool can be destroyed. For ASan, and for TSan over the pool's lock, its batches and the
 * blocking pool's cancel requests.
 *
 * Usage: pg_stress [rounds [seed]]
 */
#define STRESS_NAME "pg_stress"
#define STRESS_SEEDED

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../benchmarks/pg_weft.h"
#include "../support.h"

#ifdef UNDER_TSAN
#define DEFAULT_ROUNDS 6
#else
#define DEFAULT_ROUNDS 30
#endif
#define POOL 6
#define TASKS 24
#define QUERIES 4
/* The sleeping query, and how the server's view of it is read. */
#define NAP_SQL "SELECT pg_sleep($1::float8 / 1000)"
#define RUNNING_SQL "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = $1"

typedef struct {
    pgw_pool *pool;
    int code; /* what a cut-off task's calls return: -ECANCELED or -ETIMEDOUT */
    uint64_t seed;
    atomic_int out, out_high;
    atomic_int answered, cut;
} round_state;

static int worker(void *arg)
{
    round_state *r = arg;
    uint64_t rng = r->seed ^ (uint64_t)weft_task_id() * 0x9e3779b97f4a7c15ull;
    for (int q = 0; q < QUERIES; q++) {
        pgw_conn *c;
        int rc = pgw_pool_acquire(r->pool, &c);
        if (rc) {
            CHECK(rc == r->code, "acquire: %d", rc);
            atomic_fetch_add(&r->cut, 1);
            return 0;
        }
        count_up_with_high(&r->out, &r->out_high);
        char n[16];
        const char *p[] = {n};
        PGresult *res = NULL;
        int sleepy = below(&rng, 3) == 0;
        unsigned v = below(&rng, 20);
        snprintf(n, sizeof n, "%u", v);
        rc = pgw_query(c, sleepy ? NAP_SQL : "SELECT $1::int + 1", 1, p, &res);
        if (rc == 0) {
            CHECK(sleepy || atol(PQgetvalue(res, 0, 0)) == (long)v + 1, "wrong answer");
            PQclear(res);
            atomic_fetch_add(&r->answered, 1);
        } else {
            CHECK(rc == r->code, "query: %d %s %s", rc, pgw_conn_sqlstate(c), pgw_conn_error(c));
            CHECK(res == NULL, "a result with an error");
            CHECK(!pgw_conn_broken(c), "cut off and closed, not drained");
        }
        atomic_fetch_sub(&r->out, 1);
        pgw_pool_release(r->pool, c);
        if (rc) {
            atomic_fetch_add(&r->cut, 1);
            return 0;
        }
    }
    return 0;
}

static long running_naps(pgw_conn *mon)
{
    const char *p[] = {NAP_SQL};
    PGresult *res;
    int rc = pgw_query(mon, RUNNING_SQL, 1, p, &res);
    CHECK(rc == 0, "pg_stat_activity: %d %s", rc, pgw_conn_error(mon));
    if (rc)
        return -1;
    long n = atol(PQgetvalue(res, 0, 0));
    PQclear(res);
    return n;
}

static int rounds = DEFAULT_ROUNDS;

static int root(void *arg)
{
    (void)arg;
    uint64_t rng = run_seed;
    pgw_pool *pool;
    int rc = pgw_pool_create(&pool, "", POOL);
    CHECK(rc == 0, "pool: %d", rc);
    pgw_conn *mon;
    rc = pgw_connect("", &mon);
    CHECK(rc == 0, "connect: %d %s", rc, pgw_last_connect_error());
    if (rc)
        return rc;
    /* The connections first: a connect is slow on a loaded machine (the server starts a
     * process for it), and rounds whose cut always came before it would answer nothing. */
    rc = pgw_pool_fill(pool);
    CHECK(rc == 0, "fill: %d", rc);
    long answered = 0, cut = 0;
    unsigned window_ms = 40;
    int round = 0;
    for (; round < rounds || ((answered == 0 || cut == 0) && round < 4 * rounds); round++) {
        /* Past the rounds asked for, one kind of ending has not happened yet: the machine is
         * slower (or faster) than the window suits, so it grows (or shrinks) until both do. */
        if (round >= rounds)
            window_ms = answered == 0 ? (window_ms < 2000 ? 2 * window_ms : window_ms)
                                      : (window_ms > 2 ? window_ms / 2 : window_ms);
        round_state r = {.pool = pool, .seed = next_rand(&rng)};
        int by_deadline = below(&rng, 2);
        r.code = by_deadline ? -ETIMEDOUT : -ECANCELED;
        /* A cut within the window (0 to 40 ms in): before, during or after the queries. */
        weft_time when = (weft_time)below(&rng, window_ms) * WEFT_MSEC;
        weft_scope *s;
        weft_scope_opts o = {.policy = WEFT_COLLECT, .timeout_ns = by_deadline ? when + 1 : 0};
        rc = weft_scope_open(&s, &o);
        CHECK(rc == 0, "open: %d", rc);
        if (rc)
            break;
        for (int t = 0; t < TASKS; t++)
            CHECK(weft_spawn(s, worker, &r) == 0, "spawn");
        if (!by_deadline) {
            weft_sleep_for(when);
            weft_scope_cancel(s);
        }
        rc = weft_scope_close(s);
        CHECK(rc == 0 || rc == r.code, "join: %d", rc);
        CHECK(atomic_load(&r.out_high) <= POOL, "%d connections out at once",
              atomic_load(&r.out_high));
        CHECK(pgw_pool_idle(pool) <= POOL, "pool holds %u", pgw_pool_idle(pool));
        CHECK(running_naps(mon) == 0, "a cut-off query still runs on the server");
        answered += atomic_load(&r.answered);
        cut += atomic_load(&r.cut);
    }
    /* Every connection the pool kept answers, and none of them is out. */
    pgw_conn *held[POOL];
    int n = 0;
    for (; n < POOL; n++) {
        if (pgw_pool_acquire(pool, &held[n]) != 0)
            break;
        PGresult *res;
        CHECK(pgw_query(held[n], "SELECT 1", 0, NULL, &res) == 0, "reuse");
        PQclear(res);
    }
    CHECK(n == POOL, "took %d of %d", n, POOL);
    for (int i = 0; i < n; i++)
        pgw_pool_release(pool, held[i]);
    CHECK(pgw_pool_destroy(pool) == 0, "destroy");
    pgw_conn_close(mon);
    printf(STRESS_NAME ": %d rounds (last window %u ms), %ld queries answered, %ld tasks cut off\n",
           round, window_ms, answered, cut);
    CHECK(answered > 0 && cut > 0, "both kinds of ending happened");
    return 0;
}

int main(int argc, char **argv)
{
    if (!getenv("PGPORT")) {
        fprintf(stderr, STRESS_NAME ": PGPORT is not set: run under tools/pgcluster\n");
        return 1;
    }
    if (argc > 1)
        rounds = atoi(argv[1]);
    run_seed = argc > 2 ? strtoull(argv[2], NULL, 10) : 20261206;
    int rc = run_on(3, root, NULL);
    CHECK(rc == 0, "run: %d", rc);
    return atomic_load(&failures) ? 1 : 0;
}
