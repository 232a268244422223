// SPDX-License-Identifier: MIT
/*
 * PostgreSQL through libpq on weft (benchmarks/pg_weft.c), against a real server: CTest runs
 * this suite under tools/pgcluster, which starts a private cluster on 127.0.0.1 and a free
 * port, points the PG* variables at it, and stops it by its PID at the end. Run by hand:
 *
 *     tools/pgcluster run -- build/release/tests/test_pg
 *
 * Cancellation is checked on the server's side: pg_stat_activity, read on a connection of its
 * own, must show that no cancelled query still runs there, and every connection of the pool
 * must answer its next query.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "../benchmarks/pg_weft.h"
#include "support_criterion.h"

#define SLEEP_SQL "SELECT pg_sleep(10)"
/* The cancelled queries the server still runs. */
#define RUNNING_SQL "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = $1"

static void require_server(void)
{
    if (!getenv("PGPORT"))
        cr_assert_fail("PGPORT is not set: this suite runs under tools/pgcluster (see its top)");
}

/* Connects or records why not. */
static pgw_conn *connect_or_fail(void)
{
    pgw_conn *c = NULL;
    int rc = pgw_connect("", &c);
    if (rc)
        check_fail(__FILE__, __LINE__, "connect: %d %s", rc, pgw_last_connect_error());
    return c;
}

/* The one value of a query of one row and column, as a number; LLONG_MIN if it failed. */
static long long value_of(pgw_conn *c, const char *sql, int n, const char *const *params)
{
    PGresult *r;
    int rc = pgw_query(c, sql, n, params, &r);
    if (rc) {
        check_fail(__FILE__, __LINE__, "%s: %d %s", sql, rc, pgw_conn_error(c));
        return -1;
    }
    long long v = PQntuples(r) == 1 ? atoll(PQgetvalue(r, 0, 0)) : -1;
    PQclear(r);
    return v;
}

static long long running_sleeps(pgw_conn *mon)
{
    const char *p[] = {SLEEP_SQL};
    return value_of(mon, RUNNING_SQL, 1, p);
}

/* ---- connect, parameters, prepared statements, errors ------------------------------------ */

static int connect_root(void *arg)
{
    (void)arg;
    pgw_conn *c = connect_or_fail();
    if (!c)
        return -1;
    CHECK(pgw_conn_backend_pid(c) > 0);
    CHECK_EQ(value_of(c, "SELECT 1", 0, NULL), 1);
    CHECK_EQ(pgw_conn_broken(c), 0);
    pgw_conn_close(c);

    /* Nothing listens on port 1 of the loopback: refused, with libpq's reason. */
    pgw_conn *bad = (pgw_conn *)&bad;
    CHECK_EQ(pgw_connect("host=127.0.0.1 port=1 connect_timeout=5", &bad), -ECONNREFUSED);
    CHECK(bad == NULL);
    CHECK(strstr(pgw_last_connect_error(), "127.0.0.1") != NULL);
    CHECK_EQ(pgw_connect("this is not a conninfo", &bad), -ECONNREFUSED);
    CHECK_EQ(pgw_connect(NULL, &bad), -EINVAL);
    CHECK_EQ(pgw_connect("", NULL), -EINVAL);
    return 0;
}

Test(pg, connect_and_refusals, .timeout = 60)
{
    require_server();
    cr_assert_eq(run_on(2, connect_root, NULL), 0);
    ASSERT_CHECKS();
    pgw_conn *c = (pgw_conn *)&c;
    cr_assert_eq(pgw_connect("", &c), -EPERM, "outside a task");
}

static int params_root(void *arg)
{
    (void)arg;
    pgw_conn *c = connect_or_fail();
    if (!c)
        return -1;
    const char *p41[] = {"41"};
    CHECK_EQ(value_of(c, "SELECT $1::int + 1", 1, p41), 42);

    /* A parameter is a value, never SQL: quotes and semicolons come back as they went. */
    const char *evil = "O'Reilly'; DROP TABLE x; --";
    const char *pe[] = {evil};
    PGresult *r;
    CHECK_EQ(pgw_query(c, "SELECT $1::text", 1, pe, &r), 0);
    if (r) {
        CHECK(strcmp(PQgetvalue(r, 0, 0), evil) == 0);
        PQclear(r);
    }
    /* NULL is SQL NULL. */
    const char *pn[] = {NULL, "7"};
    CHECK_EQ(pgw_query(c, "SELECT $1::int IS NULL, $2::int * 6", 2, pn, &r), 0);
    if (r) {
        CHECK(strcmp(PQgetvalue(r, 0, 0), "t") == 0);
        CHECK(strcmp(PQgetvalue(r, 0, 1), "42") == 0);
        PQclear(r);
    }
    /* A result of many rows arrives whole. */
    CHECK_EQ(
        pgw_query(c, "SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g", 0, NULL, &r),
        0);
    if (r) {
        CHECK_EQ(PQntuples(r), 20000);
        CHECK_EQ(atoi(PQgetvalue(r, 19999, 0)), 20000);
        PQclear(r);
    }
    /* A parameter larger than the socket's buffer goes out in pieces while the task parks. */
    size_t big = 4 << 20;
    char *s = malloc(big + 1);
    if (s) {
        memset(s, 'y', big);
        s[big] = 0;
        const char *pb[] = {s};
        CHECK_EQ(value_of(c, "SELECT length($1::text)", 1, pb), (long long)big);
        free(s);
    }
    CHECK_EQ(pgw_query(c, "SELECT $1::int", 1, NULL, NULL), -EINVAL);
    CHECK_EQ(pgw_query(c, NULL, 0, NULL, NULL), -EINVAL);
    CHECK_EQ(pgw_query(NULL, "SELECT 1", 0, NULL, NULL), -EINVAL);
    pgw_conn_close(c);
    return 0;
}

Test(pg, parameters_are_values, .timeout = 60)
{
    require_server();
    cr_assert_eq(run_on(2, params_root, NULL), 0);
    ASSERT_CHECKS();
}

static int prepared_root(void *arg)
{
    (void)arg;
    pgw_conn *c = connect_or_fail();
    if (!c)
        return -1;
    CHECK_EQ(pgw_prepare(c, "add", "SELECT $1::int + $2::int", 2), 0);
    long long sum = 0;
    for (int i = 0; i < 200; i++) {
        char a[16], b[16];
        snprintf(a, sizeof a, "%d", i);
        snprintf(b, sizeof b, "%d", 1000);
        const char *p[] = {a, b};
        PGresult *r;
        if (pgw_exec_prepared(c, "add", 2, p, &r) == 0) {
            sum += atoll(PQgetvalue(r, 0, 0));
            PQclear(r);
        }
    }
    CHECK_EQ(sum, 199 * 200 / 2 + 200 * 1000);
    /* The same name twice, and a name never prepared: the server's errors, the connection
     * goes on. */
    CHECK_EQ(pgw_prepare(c, "add", "SELECT 1", 0), -EREMOTEIO);
    CHECK(strcmp(pgw_conn_sqlstate(c), "42P05") == 0);
    const char *p[] = {"1"};
    CHECK_EQ(pgw_exec_prepared(c, "nope", 1, p, NULL), -EREMOTEIO);
    CHECK(strcmp(pgw_conn_sqlstate(c), "26000") == 0);
    const char *q[] = {"1", "2"};
    PGresult *r;
    CHECK_EQ(pgw_exec_prepared(c, "add", 2, q, &r), 0);
    if (r) {
        CHECK_EQ(atoi(PQgetvalue(r, 0, 0)), 3);
        PQclear(r);
    }
    pgw_conn_close(c);
    return 0;
}

Test(pg, prepared_statements, .timeout = 60)
{
    require_server();
    cr_assert_eq(run_on(2, prepared_root, NULL), 0);
    ASSERT_CHECKS();
}

static int errors_root(void *arg)
{
    (void)arg;
    pgw_conn *c = connect_or_fail();
    if (!c)
        return -1;
    static const struct {
        const char *sql, *param, *state;
    } bad[] = {
        {"SELEC 1", NULL, "42601"},           /* syntax */
        {"SELECT 1 / $1::int", "0", "22012"}, /* division by zero */
        {"SELECT $1::int", "abc", "22P02"},   /* not an integer */
        {"SELECT * FROM no_such_table", NULL, "42P01"},
        {"SELECT 1; SELECT 2", NULL, "42601"}, /* one statement per command */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *p[] = {bad[i].param};
        PGresult *r = (PGresult *)&r;
        int rc = pgw_query(c, bad[i].sql, bad[i].param ? 1 : 0, p, &r);
        CHECK_EQ(rc, -EREMOTEIO);
        CHECK(r == NULL);
        if (strcmp(pgw_conn_sqlstate(c), bad[i].state) != 0)
            check_fail(__FILE__, __LINE__, "%s: sqlstate %s, expected %s", bad[i].sql,
                       pgw_conn_sqlstate(c), bad[i].state);
        CHECK(pgw_conn_error(c)[0] != 0);
        CHECK_EQ(pgw_conn_broken(c), 0);
        /* And the connection answers the next one. */
        CHECK_EQ(value_of(c, "SELECT 5", 0, NULL), 5);
        CHECK(pgw_conn_sqlstate(c)[0] == 0);
    }
    /* An error inside a transaction leaves it aborted: the pool would close it, ROLLBACK
     * saves it. */
    CHECK_EQ(pgw_query(c, "BEGIN", 0, NULL, NULL), 0);
    CHECK_EQ(pgw_query(c, "SELEC", 0, NULL, NULL), -EREMOTEIO);
    CHECK_EQ(PQtransactionStatus(pgw_conn_pg(c)), PQTRANS_INERROR);
    CHECK_EQ(pgw_query(c, "SELECT 1", 0, NULL, NULL), -EREMOTEIO);
    CHECK(strcmp(pgw_conn_sqlstate(c), "25P02") == 0);
    CHECK_EQ(pgw_query(c, "ROLLBACK", 0, NULL, NULL), 0);
    CHECK_EQ(value_of(c, "SELECT 6", 0, NULL), 6);

    /* The server ends the connection (an administrator's pg_terminate_backend): the next
     * command says so, and the connection is closed, not retried. */
    pgw_conn *admin = connect_or_fail();
    if (admin) {
        char pid[16];
        snprintf(pid, sizeof pid, "%d", pgw_conn_backend_pid(c));
        const char *p[] = {pid};
        CHECK_EQ(pgw_query(admin, "SELECT pg_terminate_backend($1::int, 5000)", 1, p, NULL), 0);
        CHECK_EQ(pgw_query(c, "SELECT 1", 0, NULL, NULL), -ECONNRESET);
        CHECK_EQ(pgw_conn_broken(c), 1);
        CHECK_EQ(pgw_query(c, "SELECT 1", 0, NULL, NULL), -ECONNRESET);
        pgw_conn_close(admin);
    }
    pgw_conn_close(c);
    return 0;
}

Test(pg, server_errors_leave_the_connection_usable, .timeout = 60)
{
    require_server();
    cr_assert_eq(run_on(2, errors_root, NULL), 0);
    ASSERT_CHECKS();
}

/* ---- the pool and cancellation ----------------------------------------------------------- */

#define POOL 4
#define TASKS 12

typedef struct {
    pgw_pool *pool;
    atomic_int started;     /* tasks whose query was sent (they hold a connection) */
    atomic_int cancelled;   /* tasks that ended with the scope's code */
    atomic_int other;       /* tasks that ended any other way */
    atomic_int pids[TASKS]; /* backends that ran a sleep */
    int code;               /* the code the scope's cancel gives */
} sleepers;

static int sleeper(void *arg)
{
    sleepers *s = arg;
    pgw_conn *c;
    int rc = pgw_pool_acquire(s->pool, &c);
    if (rc == 0) {
        int i = atomic_fetch_add(&s->started, 1);
        atomic_store(&s->pids[i], pgw_conn_backend_pid(c));
        rc = pgw_query(c, SLEEP_SQL, 0, NULL, NULL);
        if (rc == s->code) {
            CHECK_EQ(pgw_conn_broken(c), 0);
            CHECK(pgw_conn_cancels_sent(c) >= 1);
            /* The server's word that it cancelled the query. */
            if (strcmp(pgw_conn_sqlstate(c), "57014") != 0)
                check_fail(__FILE__, __LINE__, "sqlstate %s after the cancel",
                           pgw_conn_sqlstate(c));
        }
        pgw_pool_release(s->pool, c);
    }
    atomic_fetch_add(rc == s->code ? &s->cancelled : &s->other, 1);
    return 0;
}

/* Runs TASKS sleepers over a pool of POOL in one scope; once the server runs POOL sleeps, the
 * scope is cancelled, or given a deadline `timeout` ahead (when `timeout` is not 0). */
static int cancel_case(weft_time timeout)
{
    sleepers s = {.code = timeout ? -ETIMEDOUT : -ECANCELED};
    REQUIRE_EQ(pgw_pool_create(&s.pool, "", POOL), 0);
    pgw_conn *mon = connect_or_fail();
    if (!mon)
        return -1;
    weft_time t0 = weft_now();
    weft_scope *sc;
    weft_scope_opts o = {.policy = WEFT_COLLECT};
    REQUIRE_EQ(weft_scope_open(&sc, &o), 0);
    for (int i = 0; i < TASKS; i++)
        CHECK_EQ(weft_spawn(sc, sleeper, &s), 0);
    /* The server's own view: POOL sleeps running (the other tasks wait for a token). */
    long long running = 0;
    while ((running = running_sleeps(mon)) < POOL && running >= 0 &&
           weft_now() - t0 < 30 * WEFT_SEC)
        weft_yield();
    CHECK_EQ(running, POOL);
    weft_time cut = weft_now();
    /* The deadline is set once the queries run, however slow a loaded machine was to start
     * them. */
    if (timeout)
        CHECK_EQ(weft_scope_set_deadline(sc, weft_now() + timeout), 0);
    else
        weft_scope_cancel(sc);
    CHECK_EQ(weft_scope_close(sc), s.code);
    weft_time took = weft_now() - cut; /* far below the 10 s the queries would run */

    /* Every call returned once the server no longer ran its query: none is left. */
    CHECK_EQ(running_sleeps(mon), 0);
    CHECK_EQ(atomic_load(&s.cancelled), TASKS);
    CHECK_EQ(atomic_load(&s.other), 0);
    CHECK_EQ(atomic_load(&s.started), POOL);
    CHECK(took < 8 * WEFT_SEC);

    /* Every connection is back in the pool, idle, and the same backend as before: drained,
     * not replaced. */
    CHECK_EQ(pgw_pool_idle(s.pool), POOL);
    pgw_conn *held[POOL];
    int n = 0;
    for (; n < POOL; n++) {
        if (pgw_pool_acquire(s.pool, &held[n]) != 0)
            break;
        CHECK_EQ(value_of(held[n], "SELECT 7", 0, NULL), 7);
        int pid = pgw_conn_backend_pid(held[n]), known = 0;
        for (int i = 0; i < POOL; i++)
            known |= atomic_load(&s.pids[i]) == pid;
        CHECK(known);
    }
    CHECK_EQ(n, POOL);
    CHECK_EQ(pgw_pool_destroy(s.pool), -EBUSY); /* connections are out */
    for (int i = 0; i < n; i++)
        pgw_pool_release(s.pool, held[i]);
    CHECK_EQ(pgw_pool_destroy(s.pool), 0);
    pgw_conn_close(mon);
    return 0;
}

static int cancel_root(void *arg)
{
    (void)arg;
    return cancel_case(0);
}

Test(pg, cancel_reaches_the_server_and_the_pool_stays_usable, .timeout = 60)
{
    require_server();
    cr_assert_eq(run_on(2, cancel_root, NULL), 0);
    ASSERT_CHECKS();
}

static int deadline_root(void *arg)
{
    (void)arg;
    return cancel_case(50 * WEFT_MSEC);
}

Test(pg, deadline_reaches_the_server_and_the_pool_stays_usable, .timeout = 60)
{
    require_server();
    cr_assert_eq(run_on(2, deadline_root, NULL), 0);
    ASSERT_CHECKS();
}

/* A connection whose query is cut off by a failure the pool must not hide: released broken,
 * it is closed, and the pool makes a new one for the next task. */
static int broken_root(void *arg)
{
    (void)arg;
    pgw_pool *p;
    REQUIRE_EQ(pgw_pool_create(&p, "", 1), 0);
    pgw_conn *c, *admin = connect_or_fail();
    if (!admin)
        return -1;
    REQUIRE_EQ(pgw_pool_acquire(p, &c), 0);
    int pid = pgw_conn_backend_pid(c);
    char s[16];
    snprintf(s, sizeof s, "%d", pid);
    const char *pp[] = {s};
    CHECK_EQ(pgw_query(admin, "SELECT pg_terminate_backend($1::int, 5000)", 1, pp, NULL), 0);
    CHECK_EQ(pgw_query(c, "SELECT 1", 0, NULL, NULL), -ECONNRESET);
    pgw_pool_release(p, c);
    CHECK_EQ(pgw_pool_idle(p), 0);
    REQUIRE_EQ(pgw_pool_acquire(p, &c), 0);
    CHECK(pgw_conn_backend_pid(c) != pid);
    CHECK_EQ(value_of(c, "SELECT 8", 0, NULL), 8);
    pgw_pool_release(p, c);
    CHECK_EQ(pgw_pool_destroy(p), 0);
    pgw_conn_close(admin);
    CHECK_EQ(pgw_pool_create(NULL, "", 1), -EINVAL);
    CHECK_EQ(pgw_pool_create(&p, "", 0), -EINVAL);
    return 0;
}

Test(pg, a_broken_connection_is_replaced, .timeout = 60)
{
    require_server();
    cr_assert_eq(run_on(2, broken_root, NULL), 0);
    ASSERT_CHECKS();
}

/* A connection of no pool sends its own cancel request (PQcancel, on the blocking pool). */
static int lone_sleeper(void *arg)
{
    pgw_conn *c = arg;
    int rc = pgw_query(c, SLEEP_SQL, 0, NULL, NULL);
    CHECK_EQ(rc, -ETIMEDOUT);
    return rc;
}

static int lone_root(void *arg)
{
    (void)arg;
    pgw_conn *c = connect_or_fail(), *mon = connect_or_fail();
    if (!c || !mon)
        return -1;
    weft_time t0 = weft_now();
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    CHECK_EQ(weft_spawn(s, lone_sleeper, c), 0);
    while (running_sleeps(mon) == 0 && weft_now() - t0 < 30 * WEFT_SEC)
        weft_yield();
    weft_time cut = weft_now();
    CHECK_EQ(weft_scope_set_deadline(s, cut + 50 * WEFT_MSEC), 0);
    CHECK_EQ(weft_scope_close(s), -ETIMEDOUT);
    CHECK(weft_now() - cut < 8 * WEFT_SEC); /* far below the 10 s the query would run */
    CHECK_EQ(running_sleeps(mon), 0);
    CHECK_EQ(pgw_conn_cancels_sent(c), 1);
    CHECK(strcmp(pgw_conn_sqlstate(c), "57014") == 0);
    CHECK_EQ(pgw_conn_broken(c), 0);
    CHECK_EQ(value_of(c, "SELECT 9", 0, NULL), 9);
    pgw_conn_close(c);
    pgw_conn_close(mon);
    return 0;
}

Test(pg, a_lone_connection_cancels_on_its_own, .timeout = 60)
{
    require_server();
    cr_assert_eq(run_on(2, lone_root, NULL), 0);
    ASSERT_CHECKS();
}
