// SPDX-License-Identifier: MIT
/*
 * Fan-out over a pool: a user's records fetched from PostgreSQL at once, one query per task,
 * the tasks sharing a pool of 4 connections, all under one timeout.
 *
 *     pool = await asyncpg.create_pool(min_size=4, max_size=4)
 *     async with asyncio.timeout(5):
 *         async with asyncio.TaskGroup() as tg:
 *             profile = tg.create_task(pool.fetchrow("SELECT name ... WHERE id = $1", uid))
 *             orders = tg.create_task(pool.fetchrow("SELECT count(*), sum(total) ...", uid))
 *             friends = tg.create_task(pool.fetchrow("SELECT string_agg(...) ...", uid))
 *
 * The queries go through benchmarks/pg_weft.h (libpq with every wait parked on the socket;
 * benchmarks/pg_weft.md). The TaskGroup is a fail-fast scope with a timeout: a query that fails
 * cancels the others, a timeout cancels them all, and a cancelled query is cancelled on the
 * server too before its connection goes back to the pool. Three runs: twelve queries on the
 * four connections; one that fails (a division by zero) while two others are slow; one cut off
 * by the timeout. After each, a connection of its own reads pg_stat_activity: nothing cancelled
 * still runs, and every connection of the pool answers its next query.
 *
 * CTest runs it under tools/pgcluster, which starts a private server and sets the PG* variables.
 */
#include "example.h"
#include "pg_weft.h"
#include "weft.h"

#include <errno.h>
#include <string.h>

enum { POOL_SIZE = 4 };

static pgw_pool *pool;

typedef struct query {
    const char *what;
    const char *sql; /* with $1, the user's id */
    const char *uid;
    int rc;          /* what pgw_query returned */
    char answer[64]; /* the first row, its columns joined by spaces */
} query;

static int run_query(void *arg)
{
    query *q = arg;
    pgw_conn *c;
    q->rc = pgw_pool_acquire(pool, &c); /* waits for one of the 4 connections */
    if (q->rc != 0)
        return q->rc;
    PGresult *r;
    q->rc = pgw_query(c, q->sql, 1, &q->uid, &r);
    int rc = q->rc;
    if (rc == 0) {
        size_t at = 0; /* a longer answer is cut at the end of the buffer */
        for (int i = 0; i < PQnfields(r) && PQntuples(r) > 0 && at < sizeof q->answer; i++)
            at += (size_t)snprintf(q->answer + at, sizeof q->answer - at, "%s%s", i ? " " : "",
                                   PQgetvalue(r, 0, i));
        PQclear(r);
    } else if (rc == -EREMOTEIO) {
        /* Read the server's error before the connection goes back: the next task may use it. */
        const char *msg = pgw_conn_error(c);
        rc = weft_fail(rc, "%s: SQLSTATE %s: %.*s", q->what, pgw_conn_sqlstate(c),
                       (int)strcspn(msg, "\n"), msg);
    }
    /* Idle again even after a cancel (pg_weft cancelled the query on the server first). */
    pgw_pool_release(pool, c);
    return rc;
}

/* Runs the n queries at once under a timeout: 0 when all succeeded; else the first failure's
 * code and its message in `why`, or -ETIMEDOUT. */
static int fan_out(query *qs, int n, weft_time timeout, char *why, size_t why_len)
{
    weft_scope *tg;
    weft_scope_opts opts = {.name = "fan_out", .policy = WEFT_FAIL_FAST, .timeout_ns = timeout};
    int rc = weft_scope_open(&tg, &opts);
    if (rc != 0)
        return rc;
    for (int i = 0; i < n; i++) {
        qs[i].rc = -ECANCELED;
        qs[i].answer[0] = 0;
    }
    for (int i = 0; i < n && rc == 0; i++)
        rc = weft_spawn(tg, run_query, &qs[i]);
    if (rc != 0)
        weft_scope_cancel(tg); /* could not start them all: stop the ones that did */
    int joined = weft_scope_join(tg);
    why[0] = 0;
    if (weft_scope_error_count(tg) > 0)
        snprintf(why, why_len, "%s", weft_scope_error(tg, 0)->message);
    weft_scope_release(tg);
    return rc != 0 ? rc : joined;
}

/* ---- what the example checks, on a connection of its own ---- */

static pgw_conn *admin;

/* The first value of a query's first row, as a number; the example ends if the query fails. */
static long long number(const char *sql, const char *param)
{
    PGresult *r;
    int rc = pgw_query(admin, sql, param ? 1 : 0, &param, &r);
    if (rc != 0)
        fprintf(stderr, "%s: %s\n", sql, pgw_conn_error(admin));
    EXPECT(rc == 0 && PQntuples(r) == 1);
    long long v = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

/* The queries with pg_sleep(10) the server runs now (`state`: "active"), or has run last on
 * a connection now idle ("idle"). The pattern is a parameter: this query's own text must not
 * match it. */
static long long sleepers(const char *state)
{
    char sql[128];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM pg_stat_activity WHERE state = '%s' AND query LIKE $1", state);
    return number(sql, "%pg_sleep(10)%");
}

/* Every connection of the pool answers a query, on the same server process as at the start:
 * none was closed. Takes all four at once, so each is a different one. */
static void expect_pool_whole(const int pids[POOL_SIZE])
{
    EXPECT(pgw_pool_idle(pool) == POOL_SIZE);
    pgw_conn *c[POOL_SIZE];
    for (int i = 0; i < POOL_SIZE; i++) {
        EXPECT(pgw_pool_acquire(pool, &c[i]) == 0);
        PGresult *r;
        EXPECT(pgw_query(c[i], "SELECT pg_backend_pid()", 0, NULL, &r) == 0);
        int pid = atoi(PQgetvalue(r, 0, 0));
        PQclear(r);
        int known = 0;
        for (int j = 0; j < POOL_SIZE; j++)
            known |= pid == pids[j];
        EXPECT(known && pid == pgw_conn_backend_pid(c[i]));
    }
    for (int i = 0; i < POOL_SIZE; i++)
        pgw_pool_release(pool, c[i]);
}

#define PROFILE "SELECT name FROM fanout.users WHERE id = $1"
#define ORDERS "SELECT count(*), sum(total) FROM fanout.orders WHERE user_id = $1"
#define FRIENDS "SELECT string_agg(b::text, ',' ORDER BY b) FROM fanout.friends WHERE a = $1"
/* A profile behind a slow disk or a lock: ten seconds. */
#define SLOW_PROFILE "SELECT name FROM fanout.users, pg_sleep(10) WHERE id = $1"
/* The average refund of a user who has none: a division by zero (22012). Its pg_sleep lets the
 * queries beside it reach the server first, so that there is something to cancel there. */
#define REFUNDS                                                                                    \
    "SELECT sum(total) / count(*) FILTER (WHERE total < 0) FROM fanout.orders, pg_sleep(0.3) "     \
    "WHERE user_id = $1"

static int main_task(void *arg)
{
    (void)arg;
    int rc = pgw_connect("", &admin);
    if (rc != 0)
        fprintf(stderr, "connect: %s\n", pgw_last_connect_error());
    EXPECT(rc == 0);
    /* 100 users; user u has the orders u, u+100, ..., u+900 and the friends u+1 to u+3. Not a
     * temporary table: those are seen by the connection that made them only. */
    const char *setup[] = {
        "SET client_min_messages = warning", /* no NOTICE of the drops on stderr */
        "DROP SCHEMA IF EXISTS fanout CASCADE",
        "CREATE SCHEMA fanout",
        "CREATE TABLE fanout.users AS SELECT id, 'user ' || id AS name "
        "FROM generate_series(1, 100) id",
        "CREATE TABLE fanout.orders AS SELECT (g - 1) % 100 + 1 AS user_id, g AS total "
        "FROM generate_series(1, 1000) g",
        "CREATE TABLE fanout.friends AS SELECT a, (a + k - 1) % 100 + 1 AS b "
        "FROM generate_series(1, 100) a, generate_series(1, 3) k",
    };
    for (size_t i = 0; i < sizeof setup / sizeof setup[0]; i++) {
        if (pgw_query(admin, setup[i], 0, NULL, NULL) != 0)
            fprintf(stderr, "%s: %s\n", setup[i], pgw_conn_error(admin));
        EXPECT(pgw_conn_sqlstate(admin)[0] == 0);
    }

    EXPECT(pgw_pool_create(&pool, "", POOL_SIZE) == 0);
    EXPECT(pgw_pool_fill(pool) == 0); /* connect now rather than on the first queries */
    int pids[POOL_SIZE];
    pgw_conn *c[POOL_SIZE];
    for (int i = 0; i < POOL_SIZE; i++) {
        EXPECT(pgw_pool_acquire(pool, &c[i]) == 0);
        pids[i] = pgw_conn_backend_pid(c[i]);
    }
    for (int i = 0; i < POOL_SIZE; i++)
        pgw_pool_release(pool, c[i]);
    char why[WEFT_ERROR_MESSAGE_MAX];

    /* Users 41 to 44, three records each: twelve queries queue for the four connections. */
    query qs[12];
    const char *uids[] = {"41", "42", "43", "44"};
    for (int u = 0; u < 4; u++) {
        qs[3 * u] = (query){.what = "profile", .sql = PROFILE, .uid = uids[u]};
        qs[3 * u + 1] = (query){.what = "orders", .sql = ORDERS, .uid = uids[u]};
        qs[3 * u + 2] = (query){.what = "friends", .sql = FRIENDS, .uid = uids[u]};
    }
    weft_time t0 = weft_now();
    rc = fan_out(qs, 12, 5 * WEFT_SEC, why, sizeof why);
    printf("users 41-44: %d after %lld ms\n", rc, (long long)((weft_now() - t0) / WEFT_MSEC));
    EXPECT(rc == 0);
    for (int u = 0; u < 4; u++) {
        int id = 41 + u;
        char want[3][64];
        snprintf(want[0], sizeof want[0], "user %d", id);
        snprintf(want[1], sizeof want[1], "10 %d", 10 * id + 4500);
        snprintf(want[2], sizeof want[2], "%d,%d,%d", id + 1, id + 2, id + 3);
        for (int k = 0; k < 3; k++) {
            printf("  %d %-8s %s\n", id, qs[3 * u + k].what, qs[3 * u + k].answer);
            EXPECT(strcmp(qs[3 * u + k].answer, want[k]) == 0);
        }
    }
    expect_pool_whole(pids);

    /* User 13: the refunds fail while profile and friends are still running on the server.
     * The two are cancelled there, and the join returns in a third of a second, not ten. */
    query fail[3] = {{.what = "profile", .sql = SLOW_PROFILE, .uid = "13"},
                     {.what = "refunds", .sql = REFUNDS, .uid = "13"},
                     {.what = "friends",
                      .sql = "SELECT string_agg(b::text, ',') FROM fanout.friends, pg_sleep(10) "
                             "WHERE a = $1",
                      .uid = "13"}};
    t0 = weft_now();
    rc = fan_out(fail, 3, 5 * WEFT_SEC, why, sizeof why);
    weft_time took = weft_now() - t0;
    printf("user 13: %d after %lld ms: %s\n", rc, (long long)(took / WEFT_MSEC), why);
    EXPECT(rc == -EREMOTEIO);
    EXPECT(strcmp(why, "refunds: SQLSTATE 22012: ERROR:  division by zero") == 0);
    EXPECT(fail[0].rc == -ECANCELED && fail[2].rc == -ECANCELED);
    EXPECT(took < 3 * WEFT_SEC);
    EXPECT(sleepers("active") == 0); /* cancelled on the server, not only abandoned */
    EXPECT(sleepers("idle") == 2);   /* they did reach it, and their connections are idle */
    expect_pool_whole(pids);

    /* User 7 under a 500 ms timeout: the profile is slow; orders and friends come back in
     * time and are kept. */
    query late[3] = {{.what = "profile", .sql = SLOW_PROFILE, .uid = "7"},
                     {.what = "orders", .sql = ORDERS, .uid = "7"},
                     {.what = "friends", .sql = FRIENDS, .uid = "7"}};
    t0 = weft_now();
    rc = fan_out(late, 3, 500 * WEFT_MSEC, why, sizeof why);
    took = weft_now() - t0;
    printf("user 7: %d after %lld ms; orders %s, friends %s\n", rc, (long long)(took / WEFT_MSEC),
           late[1].answer, late[2].answer);
    EXPECT(rc == -ETIMEDOUT && why[0] == 0); /* a timeout is no failure of a query */
    EXPECT(late[0].rc == -ETIMEDOUT);
    EXPECT(strcmp(late[1].answer, "10 4570") == 0 && strcmp(late[2].answer, "8,9,10") == 0);
    EXPECT(took < 3 * WEFT_SEC);
    EXPECT(sleepers("active") == 0);
    EXPECT(sleepers("idle") == 1);
    expect_pool_whole(pids);

    EXPECT(pgw_query(admin, "DROP SCHEMA fanout CASCADE", 0, NULL, NULL) == 0);
    EXPECT(pgw_pool_destroy(pool) == 0);
    pgw_conn_close(admin);
    return 0;
}

int main(void)
{
    if (getenv("PGPORT") == NULL) {
        fprintf(stderr, "PGPORT is not set: run this example under tools/pgcluster run --\n");
        return 2;
    }
    int rc = weft_run(NULL, main_task, NULL);
    EXPECT(rc == 0);
    printf("pg_fanout: ok\n");
    return 0;
}
